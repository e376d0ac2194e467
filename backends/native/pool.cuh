// backends/native/pool.cuh — maxpool2d forward (one thread per output, window math from
// ops/kernels/pool.h: first maximum, NaN propagates, argmax index h*W+w in its plane) and
// backward as a gather: one thread per input element adds, in row-major output order, the dy
// of every window whose argmax is that element, so overlapping windows need no atomics.
#pragma once

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_ops.h"
#include "ops/kernels/pool.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

PK_GLOBAL void maxpool2d_nchw_f32(const float* x, float* y, int32_t* idx, PoolShape s) {
  const int64_t outputs = s.n * s.c * s.p * s.q;
  for (int64_t o = grid_first(); o < outputs; o += grid_stride()) {
    const int64_t plane = o / (s.p * s.q), pq = o % (s.p * s.q);
    kernels::maxpool2d_window_nchw_f32(x + plane * s.h * s.w, s.w, (pq / s.q) * s.params.stride_h,
                                       (pq % s.q) * s.params.stride_w, s.params.kernel_h, s.params.kernel_w, &y[o],
                                       &idx[o]);
  }
}

// The output positions [*first, *last] along one axis whose windows contain input coordinate i.
PK_DEVICE void pool_windows_containing(int64_t i, int64_t window, int64_t stride, int64_t out, int64_t* first,
                                       int64_t* last) {
  const int64_t lo = i - window + 1;
  *first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  *last = i / stride < out - 1 ? i / stride : out - 1;
}

PK_GLOBAL void maxpool2d_bwd_nchw_f32(const float* dy, const int32_t* idx, float* dx, PoolShape s) {
  const int64_t inputs = s.n * s.c * s.h * s.w;
  for (int64_t e = grid_first(); e < inputs; e += grid_stride()) {
    const int64_t plane = e / (s.h * s.w), hw = e % (s.h * s.w);
    int64_t p0, p1, q0, q1;
    pool_windows_containing(hw / s.w, s.params.kernel_h, s.params.stride_h, s.p, &p0, &p1);
    pool_windows_containing(hw % s.w, s.params.kernel_w, s.params.stride_w, s.q, &q0, &q1);
    const float* dy_plane = dy + plane * s.p * s.q;
    const int32_t* idx_plane = idx + plane * s.p * s.q;
    float sum = 0.0f;
    for (int64_t p = p0; p <= p1; ++p)
      for (int64_t q = q0; q <= q1; ++q)
        if (idx_plane[p * s.q + q] == hw) sum += dy_plane[p * s.q + q];
    dx[e] = sum;
  }
}

inline void maxpool2d_forward(const float* x, float* y, int32_t* idx, const PoolShape& s) {
  PK_LAUNCH(maxpool2d_nchw_f32, element_grid(s.n * s.c * s.p * s.q), pk::dim3(kElementBlock), x, y, idx, s);
}

inline void maxpool2d_backward(const float* dy, const int32_t* idx, float* dx, const PoolShape& s) {
  PK_LAUNCH(maxpool2d_bwd_nchw_f32, element_grid(s.n * s.c * s.h * s.w), pk::dim3(kElementBlock), dy, idx, dx, s);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
