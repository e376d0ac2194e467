// backends/native/dropout.cuh — dropout and its backward, kernels and host code (`run_<name>`,
// native_node.h): one thread per four elements of a sample, the four sharing one Philox block
// (ops/kernels/dropout.h: the mask every backend draws); the backward draws it again.
#pragma once

#include <stdint.h>

#include "backends/native/elementwise.cuh"
#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "ops/kernels/dropout.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// x (or dy) [samples, per_sample] -> y (or dx): thread q takes elements 4k .. 4k+3 of sample
// q / quads, k = q % quads.
PK_GLOBAL void dropout_f32(const float* x, float* y, const int32_t* step, int64_t samples, int64_t per_sample,
                           parity_dropout_params p) {
  const int64_t quads = (per_sample + 3) / 4;
  const float scale = kernels::dropout_scale(p);
  const int32_t t = step[0];
  for (int64_t q = grid_first(); q < samples * quads; q += grid_stride()) {
    const int64_t n = q / quads, k = q % quads;
    const kernels::PhiloxBlock b = kernels::dropout_block(p, t, p.first_sample + n, k);
    for (int w = 0; w < 4 && k * 4 + w < per_sample; ++w) {
      const int64_t e = n * per_sample + k * 4 + w;
      y[e] = x[e] * (kernels::dropout_keeps(p, b.word[w]) ? scale : 0.0f);
    }
  }
}

// x (or dy), step[1] i32 >= 1 -> y (or dx) of x's size.
inline void run_dropout_either(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc& x = node.in(0);
  const int64_t count = numel_of(x);
  node.expect_numel(node.out(0), count);
  const int64_t samples = node.dim(x, x.rank, 0);
  const int32_t* step = step_count_in(node, 1, "steps count from 1");
  const float* in = node.f32_in(0);
  float* out = node.f32_out(0);
  const int64_t per_sample = samples > 0 ? count / samples : 0;
  const parity_dropout_params p = node.desc().params.dropout;
  if (node.launching())
    PK_LAUNCH(dropout_f32, element_grid(samples * ((per_sample + 3) / 4)), pk::dim3(kElementBlock), in, out, step,
              samples, per_sample, p);
}

inline void run_dropout(const NativeNode& node) { run_dropout_either(node); }
inline void run_dropout_bwd(const NativeNode& node) { run_dropout_either(node); }

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
