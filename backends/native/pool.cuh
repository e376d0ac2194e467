// backends/native/pool.cuh — pooling, kernels and host code (`run_<name>`), with the window math
// of ops/kernels/pool.h: maxpool2d forward (one thread per output: first maximum, NaN
// propagates, argmax index h*W+w in its plane, -1 and 0 for a window with no input element) and
// avgpool2d forward (one thread per output: row-major window sum over the divisor); their
// backwards as gathers: one thread per input element adds, in row-major output order, the dy of
// every window whose argmax is that element (maxpool) or dy / divisor of every window holding it
// (avgpool), so overlapping windows need no atomics. global_avgpool: one thread per plane
// (row-major sum over H*W), its backward one thread per input element.
#pragma once

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "ops/kernels/pool.h"

namespace parity {
namespace native {

struct PoolShape {
  int64_t n, c, h, w, p, q;
  kernels::PoolWindow window;
  bool count_include_pad;  // avgpool2d
};

// x [N,C,H,W] (the forward input or dx) fixes the shape; y (the output or dy) must have
// N*C*P*Q elements. Refuses params no rule would have let through (a plan from elsewhere).
inline PoolShape pool_shape(const NativeNode& node, const parity_value_desc& x, const parity_value_desc& y,
                            const kernels::PoolWindow& win, bool count_include_pad) {
  PoolShape s{node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3), 0, 0, win, count_include_pad};
  for (const kernels::PoolAxis& a : {win.h, win.w})
    if (a.kernel < 1 || a.stride < 1 || a.pad < 0 || a.dilation < 1)
      node.fail(PARITY_STATUS_INVALID_ARGUMENT,
                msg(node.label(), ": pooling window kernel ", a.kernel, " stride ", a.stride, " pad ", a.pad, " dilation ",
                    a.dilation, " (kernel, stride, dilation must be >= 1, pad >= 0)"));
  if (kernels::pool_span(win.h) > s.h + 2 * win.h.pad || kernels::pool_span(win.w) > s.w + 2 * win.w.pad)
    node.fail(PARITY_STATUS_SHAPE, msg(node.label(), ": the window is larger than the padded input ", s.h, "x", s.w));
  s.p = kernels::pool_output_size(s.h, win.h);
  s.q = kernels::pool_output_size(s.w, win.w);
  node.expect_numel(y, s.n * s.c * s.p * s.q);
  return s;
}

inline PoolShape maxpool_shape(const NativeNode& node, const parity_value_desc& x, const parity_value_desc& y) {
  return pool_shape(node, x, y, kernels::pool_window(node.desc().params.maxpool2d), false);
}
inline PoolShape avgpool_shape(const NativeNode& node, const parity_value_desc& x, const parity_value_desc& y) {
  const parity_avgpool2d_params& p = node.desc().params.avgpool2d;
  return pool_shape(node, x, y, kernels::pool_window(p), p.count_include_pad != 0);
}

namespace PARITY_NATIVE_NS {

PK_GLOBAL void maxpool2d_nchw_f32(const float* x, float* y, int32_t* idx, PoolShape s) {
  const int64_t outputs = s.n * s.c * s.p * s.q;
  for (int64_t o = grid_first(); o < outputs; o += grid_stride()) {
    const int64_t plane = o / (s.p * s.q), pq = o % (s.p * s.q);
    kernels::maxpool2d_padded_window_nchw_f32(x + plane * s.h * s.w, s.h, s.w, pq / s.q, pq % s.q, s.window, &y[o],
                                              &idx[o]);
  }
}

PK_GLOBAL void maxpool2d_bwd_nchw_f32(const float* dy, const int32_t* idx, float* dx, PoolShape s) {
  const int64_t inputs = s.n * s.c * s.h * s.w;
  for (int64_t e = grid_first(); e < inputs; e += grid_stride()) {
    const int64_t plane = e / (s.h * s.w), hw = e % (s.h * s.w);
    dx[e] = kernels::maxpool2d_bwd_element_nchw_f32(dy + plane * s.p * s.q, idx + plane * s.p * s.q, s.w, s.p, s.q,
                                                    hw / s.w, hw % s.w, s.window);
  }
}

PK_GLOBAL void avgpool2d_nchw_f32(const float* x, float* y, PoolShape s) {
  const int64_t outputs = s.n * s.c * s.p * s.q;
  for (int64_t o = grid_first(); o < outputs; o += grid_stride()) {
    const int64_t plane = o / (s.p * s.q), pq = o % (s.p * s.q);
    y[o] = kernels::avgpool2d_window_nchw_f32(x + plane * s.h * s.w, s.h, s.w, pq / s.q, pq % s.q, s.window,
                                              s.count_include_pad);
  }
}

PK_GLOBAL void avgpool2d_bwd_nchw_f32(const float* dy, float* dx, PoolShape s) {
  const int64_t inputs = s.n * s.c * s.h * s.w;
  for (int64_t e = grid_first(); e < inputs; e += grid_stride()) {
    const int64_t plane = e / (s.h * s.w), hw = e % (s.h * s.w);
    dx[e] = kernels::avgpool2d_bwd_element_nchw_f32(dy + plane * s.p * s.q, s.h, s.w, s.p, s.q, hw / s.w, hw % s.w,
                                                    s.window, s.count_include_pad);
  }
}

PK_GLOBAL void global_avgpool_nchw_f32(const float* x, float* y, int64_t planes, int64_t plane_size) {
  for (int64_t plane = grid_first(); plane < planes; plane += grid_stride())
    y[plane] = kernels::global_avgpool_plane_f32(x + plane * plane_size, plane_size);
}

PK_GLOBAL void global_avgpool_bwd_nchw_f32(const float* dy, float* dx, int64_t planes, int64_t plane_size) {
  const float count = static_cast<float>(plane_size);
  for (int64_t e = grid_first(); e < planes * plane_size; e += grid_stride()) dx[e] = dy[e / plane_size] / count;
}

// x -> y, idx.
inline void run_maxpool2d(const NativeNode& node) {
  if (node.sizing()) return;  // no workspace
  const PoolShape s = maxpool_shape(node, node.in(0), node.out(0));
  node.expect_numel(node.out(1), s.n * s.c * s.p * s.q);
  const float* x = node.f32_in(0);
  float* y = node.f32_out(0);
  int32_t* idx = node.i32_out(1);
  if (node.launching())
    PK_LAUNCH(maxpool2d_nchw_f32, element_grid(s.n * s.c * s.p * s.q), pk::dim3(kElementBlock), x, y, idx, s);
}

// dy, idx -> dx; every index must name an element of its plane or be -1 (checked when the host has them).
inline void run_maxpool2d_bwd(const NativeNode& node) {
  if (node.sizing()) return;
  const PoolShape s = maxpool_shape(node, node.out(0), node.in(0));
  node.expect_numel(node.in(1), s.n * s.c * s.p * s.q);
  const int32_t* idx = node.i32_in(1);
  if (const int32_t* host = node.host_i32_in(1))
    for (int64_t i = 0; i < s.n * s.c * s.p * s.q; ++i)
      if (host[i] < -1 || host[i] >= s.h * s.w)
        node.fail(PARITY_STATUS_DATA, msg(node.label(), ": index ", host[i], " at element ", i, " is outside its ",
                                          s.h, "x", s.w, " plane and not -1"));
  const float* dy = node.f32_in(0);
  float* dx = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(maxpool2d_bwd_nchw_f32, element_grid(s.n * s.c * s.h * s.w), pk::dim3(kElementBlock), dy, idx, dx, s);
}

// x -> y.
inline void run_avgpool2d(const NativeNode& node) {
  if (node.sizing()) return;
  const PoolShape s = avgpool_shape(node, node.in(0), node.out(0));
  const float* x = node.f32_in(0);
  float* y = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(avgpool2d_nchw_f32, element_grid(s.n * s.c * s.p * s.q), pk::dim3(kElementBlock), x, y, s);
}

// dy -> dx.
inline void run_avgpool2d_bwd(const NativeNode& node) {
  if (node.sizing()) return;
  const PoolShape s = avgpool_shape(node, node.out(0), node.in(0));
  const float* dy = node.f32_in(0);
  float* dx = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(avgpool2d_bwd_nchw_f32, element_grid(s.n * s.c * s.h * s.w), pk::dim3(kElementBlock), dy, dx, s);
}

// x [N,C,H,W] -> y [N,C,1,1].
inline void run_global_avgpool(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc& x = node.in(0);
  const int64_t planes = node.dim(x, 4, 0) * node.dim(x, 4, 1), plane_size = node.dim(x, 4, 2) * node.dim(x, 4, 3);
  node.expect_numel(node.out(0), planes);
  const float* xs = node.f32_in(0);
  float* y = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(global_avgpool_nchw_f32, element_grid(planes), pk::dim3(kElementBlock), xs, y, planes, plane_size);
}

// dy [N,C,1,1] -> dx [N,C,H,W].
inline void run_global_avgpool_bwd(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc& dx = node.out(0);
  const int64_t planes = node.dim(dx, 4, 0) * node.dim(dx, 4, 1), plane_size = node.dim(dx, 4, 2) * node.dim(dx, 4, 3);
  node.expect_numel(node.in(0), planes);
  const float* dy = node.f32_in(0);
  float* out = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(global_avgpool_bwd_nchw_f32, element_grid(planes * plane_size), pk::dim3(kElementBlock), dy, out, planes,
              plane_size);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
