// ops/kernels/philox.h — Philox4x32-10 (Salmon et al., SC'11; Random123's known answers) and
// FNV-1a stream names, as plain functions that host and device code share: the one definition
// behind util/counter_rng.h (weight init, shuffling) and the dropout masks of every backend.
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

struct PhiloxBlock {
  uint32_t word[4];
};

// One Philox4x32-10 block: 10 rounds over the 128-bit counter (c0..c3) with the 64-bit key (k0, k1).
PARITY_HD inline PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                           uint32_t k1) {
  const uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  PhiloxBlock b;
  b.word[0] = c0;
  b.word[1] = c1;
  b.word[2] = c2;
  b.word[3] = c3;
  return b;
}

// FNV-1a 64 of a name: a stable id for a stream ("init.conv1.weight") or a node.
PARITY_HD inline constexpr uint64_t fnv1a64(const char* text, uint64_t length) {
  uint64_t hash = 14695981039346656037ull;
  for (uint64_t i = 0; i < length; ++i) {
    hash ^= static_cast<unsigned char>(text[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace kernels
}  // namespace parity
