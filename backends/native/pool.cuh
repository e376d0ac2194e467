// backends/native/pool.cuh — maxpool2d, kernels and host code (`run_<name>`): forward (one
// thread per output, window math from ops/kernels/pool.h: first maximum, NaN propagates, argmax
// index h*W+w in its plane) and backward as a gather: one thread per input element adds, in
// row-major output order, the dy of every window whose argmax is that element, so overlapping
// windows need no atomics.
#pragma once

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "ops/kernels/pool.h"

namespace parity {
namespace native {

struct PoolShape {
  int64_t n, c, h, w, p, q;
  parity_maxpool2d_params params;
};

// x [N,C,H,W] (the forward input or dx) fixes the shape; y (the output or dy) must have N*C*P*Q elements.
inline PoolShape pool_shape(const NativeNode& node, const parity_value_desc& x, const parity_value_desc& y) {
  PoolShape s{node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3), 0, 0,
              node.desc().params.maxpool2d};
  s.p = kernels::pool2d_output_size(s.h, s.params.kernel_h, s.params.stride_h);
  s.q = kernels::pool2d_output_size(s.w, s.params.kernel_w, s.params.stride_w);
  node.expect_numel(y, s.n * s.c * s.p * s.q);
  return s;
}

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

// x -> y, idx.
inline void run_maxpool2d(const NativeNode& node) {
  if (node.sizing()) return;  // no workspace
  const PoolShape s = pool_shape(node, node.in(0), node.out(0));
  node.expect_numel(node.out(1), s.n * s.c * s.p * s.q);
  const float* x = node.f32_in(0);
  float* y = node.f32_out(0);
  int32_t* idx = node.i32_out(1);
  if (node.launching())
    PK_LAUNCH(maxpool2d_nchw_f32, element_grid(s.n * s.c * s.p * s.q), pk::dim3(kElementBlock), x, y, idx, s);
}

// dy, idx -> dx; every index must name an element of its plane (checked when the host has them).
inline void run_maxpool2d_bwd(const NativeNode& node) {
  if (node.sizing()) return;
  const PoolShape s = pool_shape(node, node.out(0), node.in(0));
  node.expect_numel(node.in(1), s.n * s.c * s.p * s.q);
  const int32_t* idx = node.i32_in(1);
  if (const int32_t* host = node.host_i32_in(1))
    for (int64_t i = 0; i < s.n * s.c * s.p * s.q; ++i)
      if (host[i] < 0 || host[i] >= s.h * s.w)
        node.fail(PARITY_STATUS_DATA, msg(node.label(), ": index ", host[i], " at element ", i, " is outside its ",
                                          s.h, "x", s.w, " plane"));
  const float* dy = node.f32_in(0);
  float* dx = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(maxpool2d_bwd_nchw_f32, element_grid(s.n * s.c * s.h * s.w), pk::dim3(kElementBlock), dy, idx, dx, s);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
