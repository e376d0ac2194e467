// util/counter_rng.h — Philox4x32-10 counter-based RNG: the one source of randomness (weight init, shuffling).
//
// A counter-based generator is a pure function of (key, counter), so any number in any
// stream can be recomputed without replaying the ones before it: a run resumed at epoch e
// draws exactly what an uninterrupted run drew, on every machine and every backend.
// Philox4x32-10 is the generator of Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3" (SC'11), bit-compatible with Random123 and its known-answer vectors.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "ops/kernels/philox.h"

namespace parity {

// One Philox4x32-10 block: 10 rounds over a 128-bit counter with a 64-bit key.
inline std::array<uint32_t, 4> philox4x32(const std::array<uint32_t, 4>& counter,
                                          const std::array<uint32_t, 2>& key) {
  const kernels::PhiloxBlock b = kernels::philox4x32_10(counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
  return {b.word[0], b.word[1], b.word[2], b.word[3]};
}

// The block for number `index` of stream `stream` under `seed`: counter = (index, stream),
// key = seed. Distinct (stream, index) pairs never share a block.
inline std::array<uint32_t, 4> random_block(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox4x32({static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                     static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

inline uint32_t random_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  return random_block(seed, stream, index)[0];
}

inline uint64_t random_u64(uint64_t seed, uint64_t stream, uint64_t index) {
  const auto block = random_block(seed, stream, index);
  return (uint64_t{block[1]} << 32) | block[0];
}

// Uniform in [lo, hi) from the top 24 bits of random_u32. The arithmetic is exact in double
// (a 24-bit float times a 24-bit fraction) so FMA contraction or x87 cannot change the
// result; a sum that rounds up to hi is pulled back to the largest float below hi.
inline float uniform_float(uint64_t seed, uint64_t stream, uint64_t index, float lo, float hi) {
  const float unit = static_cast<float>(random_u32(seed, stream, index) >> 8) * 0x1p-24f;  // [0, 1)
  const float span = hi - lo;
  const double value = static_cast<double>(lo) + static_cast<double>(span) * static_cast<double>(unit);
  float result = static_cast<float>(value);
  if (result >= hi && hi > lo) result = std::nextafter(hi, lo);
  return result;
}

// A stable 64-bit id for a named stream ("init.conv1.weight", "epoch_order"): FNV-1a 64.
inline constexpr uint64_t stream_id(std::string_view name) { return kernels::fnv1a64(name.data(), name.size()); }

}  // namespace parity
