// model/random_batch.h — the one random batch of a model: images and labels drawn from a seed by
// util/synthetic_batch.h, the bytes the bench, `parity check` and the LibTorch peer all use.
#pragma once

#include <cstdint>

#include "parity/model.h"
#include "parity/tensor.h"

namespace parity {

struct ImageBatch {
  Tensor x;  // f32 [n, C, H, W], uniform in [0, 1)
  Tensor y;  // i32 [n], labels in [0, classes)
};

// Batch number `index` of `n` images for `spec` under `seed`.
ImageBatch random_batch(const ModelSpec& spec, int64_t n, uint64_t seed, int64_t index = 0);

}  // namespace parity
