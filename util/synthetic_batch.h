// util/synthetic_batch.h — the counter-based batch generator behind every random batch of
// parity (model/random_batch.h) and of the LibTorch peer (header only, no dependencies, so the
// peer needs no library of parity): x uniform in [0, 1), labels in [0, classes).
#pragma once

#include <cstdint>

namespace parity {

// SplitMix64 of (seed, stream, index): a pure function, so any element can be recomputed.
inline uint64_t synthetic_bits(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Batch number `batch` of `n` images of `chw` floats each: x[n*chw] in [0, 1) (multiples of
// 2^-24, exact in float), y[n] in [0, classes).
inline void synthetic_batch(uint64_t seed, int64_t batch, int64_t n, int64_t chw, int32_t classes, float* x,
                            int32_t* y) {
  const uint64_t x_stream = 2 * static_cast<uint64_t>(batch), y_stream = x_stream + 1;
  for (int64_t i = 0; i < n * chw; ++i)
    x[i] = static_cast<float>(synthetic_bits(seed, x_stream, static_cast<uint64_t>(i)) >> 40) * 0x1p-24f;
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<int32_t>(synthetic_bits(seed, y_stream, static_cast<uint64_t>(i)) % static_cast<uint64_t>(classes));
}

// Batches the model cases cycle through (both sides): enough to defeat any caching of one input.
constexpr int64_t kSyntheticBatches = 4;

}  // namespace parity
