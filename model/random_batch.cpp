// model/random_batch.cpp — a model's random batch, shaped by its ModelSpec.
#include "model/random_batch.h"

#include "util/synthetic_batch.h"

namespace parity {

ImageBatch random_batch(const ModelSpec& spec, int64_t n, uint64_t seed, int64_t index) {
  ImageBatch b{Tensor(Shape{n, spec.channels, spec.height, spec.width}, DType::f32), Tensor(Shape{n}, DType::i32)};
  const int64_t chw = int64_t{spec.channels} * spec.height * spec.width;
  synthetic_batch(seed, index, n, chw, spec.num_classes, b.x.f32(), b.y.i32());
  return b;
}

}  // namespace parity
