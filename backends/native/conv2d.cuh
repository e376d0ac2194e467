// backends/native/conv2d.cuh — conv2d forward and backward as im2col + the tiled GEMM:
// forward y[n] = w[K, CRS] col[n] + b; backward data dcol[n] = w^T dy[n], then col2im;
// backward weight dw = sum_n dy[n] col[n]^T (one accumulating GEMM per image, in image order)
// and db by the per-channel block reduction. The im2col / col2im index math is
// ops/kernels/conv_geometry.h's; col2im gives each thread one input plane, so no two threads
// add into one element and the sum order is fixed.
#pragma once

#include "backends/native/elementwise.cuh"
#include "backends/native/gemm.cuh"
#include "backends/native/native_ops.h"
#include "backends/native/reduce.cuh"
#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// One thread per row (n, c, r, s) of the batch's column matrices col[N][C*R*S][P*Q].
PK_GLOBAL void im2col_nchw_f32(const float* x, float* col, ConvShape s) {
  const int64_t rows = s.n * s.c * s.r * s.s;
  for (int64_t row = grid_first(); row < rows; row += grid_stride()) {
    const int64_t nc = row / (s.r * s.s), rs = row % (s.r * s.s);
    kernels::im2col_row_nchw_f32(x + nc * s.h * s.w, s.h, s.w, rs / s.s, rs % s.s, s.params, s.p, s.q,
                                 col + row * s.p * s.q);
  }
}

// One thread per input plane (n, c): zeroes it, then adds its R*S column rows in (r, s) order.
PK_GLOBAL void col2im_nchw_f32(const float* col, float* dx, ConvShape s) {
  for (int64_t nc = grid_first(); nc < s.n * s.c; nc += grid_stride()) {
    float* plane = dx + nc * s.h * s.w;
    for (int64_t i = 0; i < s.h * s.w; ++i) plane[i] = 0.0f;
    for (int64_t r = 0; r < s.r; ++r)
      for (int64_t t = 0; t < s.s; ++t)
        kernels::col2im_row_add_nchw_f32(col + (nc * s.r * s.s + r * s.s + t) * s.p * s.q, s.h, s.w, r, t, s.params,
                                         s.p, s.q, plane);
  }
}

inline void im2col(const float* x, float* col, const ConvShape& s) {
  PK_LAUNCH(im2col_nchw_f32, element_grid(s.n * s.c * s.r * s.s), pk::dim3(kElementBlock), x, col, s);
}

inline void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                           float* col) {
  im2col(x, col, s);
  const int64_t crs = s.c * s.r * s.s, pq = s.p * s.q;
  GemmArgs g{w, crs, 1, 0, col, pq, 1, crs * pq, y, pq, s.k * pq, b, 1, 0, s.k, pq, crs, 0};
  gemm(g, s.n);
}

inline void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* dcol) {
  const int64_t crs = s.c * s.r * s.s, pq = s.p * s.q;
  GemmArgs g{w, 1, crs, 0, dy, pq, 1, s.k * pq, dcol, pq, crs * pq, nullptr, 0, 0, crs, pq, s.k, 0};
  gemm(g, s.n);
  PK_LAUNCH(col2im_nchw_f32, element_grid(s.n * s.c), pk::dim3(kElementBlock), dcol, dx, s);
}

inline void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db, const ConvShape& s,
                                   float* col) {
  im2col(x, col, s);
  const int64_t crs = s.c * s.r * s.s, pq = s.p * s.q;
  if (s.n == 0) {  // an empty batch has zero gradient
    PK_LAUNCH(fill_f32, element_grid(s.k * crs), pk::dim3(kElementBlock), dw, s.k * crs, 0.0f);
  }
  for (int64_t n = 0; n < s.n; ++n) {
    GemmArgs g{dy + n * s.k * pq, pq, 1, 0, col + n * crs * pq, 1, pq, 0, dw, crs, 0, nullptr, 0, 0,
               s.k, crs, pq, n > 0 ? 1 : 0};
    gemm(g, 1);
  }
  sum_per_channel(dy, db, s.k, s.n, s.k * pq, pq, pq);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
