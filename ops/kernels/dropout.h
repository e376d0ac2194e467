// ops/kernels/dropout.h — the dropout mask as a pure function of (params, step, sample, element)
// (parity_dropout_params in plugin.h), shared by the cpu and native kernels and the LibTorch peer.
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"
#include "ops/kernels/philox.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

// What a kept element is multiplied by: torch's noise.div_(1 - p) on a float32 tensor.
PARITY_HD inline float dropout_scale(parity_dropout_params p) {
  return 1.0f / static_cast<float>(1.0 - static_cast<double>(p.p));
}

// The four uniform draws of elements 4q .. 4q+3 of global sample `sample` at `step`.
PARITY_HD inline PhiloxBlock dropout_block(parity_dropout_params p, int32_t step, int64_t sample, int64_t quad) {
  return philox4x32_10(static_cast<uint32_t>(quad), static_cast<uint32_t>(sample), static_cast<uint32_t>(step),
                       p.node_key, p.seed_lo, p.seed_hi);
}

// Whether draw `word` keeps its element: its top 24 bits as a fraction in [0, 1) against p.
PARITY_HD inline bool dropout_keeps(parity_dropout_params p, uint32_t word) {
  return static_cast<float>(word >> 8) * 0x1p-24f >= p.p;
}

// The mask value (0 or dropout_scale) of element `element` of local sample `n`.
PARITY_HD inline float dropout_mask(parity_dropout_params p, int32_t step, int64_t n, int64_t element) {
  const PhiloxBlock b = dropout_block(p, step, p.first_sample + n, element / 4);
  return dropout_keeps(p, b.word[element % 4]) ? dropout_scale(p) : 0.0f;
}

// y = x * mask over `per_sample` elements of local sample n (x may be dy: the backward is the
// same product).
PARITY_HD inline void dropout_sample_f32(const float* x, float* y, int64_t per_sample, parity_dropout_params p,
                                         int32_t step, int64_t n) {
  const float scale = dropout_scale(p);
  for (int64_t quad = 0; quad * 4 < per_sample; ++quad) {
    const PhiloxBlock b = dropout_block(p, step, p.first_sample + n, quad);
    for (int k = 0; k < 4 && quad * 4 + k < per_sample; ++k) {
      const int64_t e = quad * 4 + k;
      y[e] = x[e] * (dropout_keeps(p, b.word[k]) ? scale : 0.0f);
    }
  }
}

}  // namespace kernels
}  // namespace parity
