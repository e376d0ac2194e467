// backends/native/reduce.cuh — block reductions over fixed trees (pk::block_sum and a max that
// propagates NaN), and the bias-gradient kernel built on them: one block per output channel,
// no atomics, so the result is the same every run at a given warp size.
#pragma once

#include <stdint.h>

#include "backends/native/launch_shape.cuh"
#include "ops/kernels/reduce.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// The maximum over a 1-D block, NaN winning (kernels::max_propagate_nan_f32); every thread gets it.
PK_DEVICE float block_max_f32(float v, float* scratch) {
  for (int offset = pk::kWarpSize / 2; offset > 0; offset /= 2)
    v = kernels::max_propagate_nan_f32(v, PK_SHFL_XOR(v, offset));
  if (pk::lane() == 0) scratch[pk::warp_id()] = v;
  PK_SYNC();
  const int warps = pk::block_dim_x() / pk::kWarpSize;
  if (pk::warp_id() == 0) {
    float m = scratch[pk::lane() < warps ? pk::lane() : 0];
    for (int offset = pk::kWarpSize / 2; offset > 0; offset /= 2)
      m = kernels::max_propagate_nan_f32(m, PK_SHFL_XOR(m, offset));
    if (pk::lane() == 0) scratch[0] = m;
  }
  PK_SYNC();
  v = scratch[0];
  PK_SYNC();
  return v;
}

// out[o] = sum over i < outer, j < inner of src[i*outer_stride + o*channel_stride + j]:
// the bias gradient of conv2d (inner = P*Q) and of linear (inner = 1).
PK_GLOBAL void sum_per_channel_f32(const float* src, float* out, int64_t outer, int64_t outer_stride,
                                   int64_t channel_stride, int64_t inner) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t o = pk::block_x();
  float partial = 0.0f;
  for (int64_t e = pk::thread_x(); e < outer * inner; e += pk::block_dim_x())
    partial += src[(e / inner) * outer_stride + o * channel_stride + e % inner];
  const float total = pk::block_sum(partial, scratch);
  if (pk::thread_x() == 0) out[o] = total;
}

inline void sum_per_channel(const float* src, float* out, int64_t channels, int64_t outer, int64_t outer_stride,
                            int64_t channel_stride, int64_t inner) {
  if (channels == 0) return;
  PK_LAUNCH(sum_per_channel_f32, pk::dim3(static_cast<unsigned>(channels)), pk::dim3(kElementBlock), src, out, outer,
            outer_stride, channel_stride, inner);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
