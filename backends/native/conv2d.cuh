// backends/native/conv2d.cuh — conv2d forward and backward (kernels and host code, `run_<name>`)
// as im2col + the tiled GEMM, one GEMM per group (rows of group g: its C/G channels' block of
// col, its K/G filters):
// forward y[n] = w[K, CRS] col[n] + b; backward data dcol[n] = w^T dy[n], then col2im;
// backward weight dw = sum_n dy[n] col[n]^T (one accumulating GEMM per image, in image order)
// and db (when the node has it) by the per-channel block reduction. Dilation and asymmetric
// padding live in the window (kernels::Conv2dWindow) the index math reads. The im2col / col2im index math is
// ops/kernels/conv_geometry.h's; col2im gives each thread one input plane, so no two threads
// add into one element and the sum order is fixed.
#pragma once

#include "backends/native/elementwise.cuh"
#include "backends/native/gemm.cuh"
#include "backends/native/native_node.h"
#include "backends/native/reduce.cuh"
#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace native {

struct ConvShape {
  int64_t n, c, h, w, k, r, s, p, q;
  kernels::Conv2dWindow window;
  int64_t groups() const { return window.groups; }
  int64_t crs_group() const { return c / window.groups * r * s; }  // a weight row: C/G * R * S
  int64_t k_group() const { return k / window.groups; }
  // Floats of the workspace (im2col columns for the whole batch) the conv2d ops need.
  int64_t workspace_floats() const { return n * c * r * s * p * q; }
};

// x [N,C,H,W] (the forward input or dx) and w [K,C,R,S] (the weight or dw) fix the shape; y
// (the output or dy) must have N*K*P*Q elements.
inline ConvShape conv_shape(const NativeNode& node) {
  const parity_op op = node.desc().op;
  const bool bwd_data = op == PARITY_OP_CONV2D_BWD_DATA, bwd_weight = op == PARITY_OP_CONV2D_BWD_WEIGHT;
  const parity_value_desc& x = bwd_data ? node.out(0) : node.in(0);
  const parity_value_desc& w = bwd_weight ? node.out(0) : node.in(1);
  ConvShape s{node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3), node.dim(w, 4, 0),
              node.dim(w, 4, 2), node.dim(w, 4, 3), 0, 0, kernels::conv2d_window(node.desc().params.conv2d)};
  const parity_conv2d_params& cp = node.desc().params.conv2d;
  if (cp.stride_h < 1 || cp.stride_w < 1 || cp.pad_h < 0 || cp.pad_w < 0 || s.window.pad_bottom < 0 ||
      s.window.pad_right < 0 || cp.dilation_h < 0 || cp.dilation_w < 0 || cp.groups < 0)
    node.fail(PARITY_STATUS_SHAPE,
              msg(node.label(), ": stride must be > 0, padding >= 0, dilation and groups >= 0 (0 reads as 1)"));
  if (s.c % s.groups() != 0 || s.k % s.groups() != 0 || node.dim(w, 4, 1) != s.c / s.groups())
    node.fail(PARITY_STATUS_SHAPE, msg(node.label(), ": groups ", s.groups(), " must divide C ", s.c, " and K ", s.k,
                                       ", and the weight be [K, C/groups, R, S]"));
  s.p = kernels::conv2d_output_h(s.window, s.h, s.r);
  s.q = kernels::conv2d_output_w(s.window, s.w, s.s);
  if (s.p < 1 || s.q < 1)
    node.fail(PARITY_STATUS_SHAPE, msg(node.label(), ": the dilated kernel is larger than the padded input"));
  const parity_value_desc& y = op == PARITY_OP_CONV2D ? node.out(0) : node.in(bwd_data ? 0 : 1);
  node.expect_numel(y, s.n * s.k * s.p * s.q);
  return s;
}

namespace PARITY_NATIVE_NS {

// One thread per row (n, c, r, s) of the batch's column matrices col[N][C*R*S][P*Q].
PK_GLOBAL void im2col_nchw_f32(const float* x, float* col, ConvShape s) {
  const int64_t rows = s.n * s.c * s.r * s.s;
  for (int64_t row = grid_first(); row < rows; row += grid_stride()) {
    const int64_t nc = row / (s.r * s.s), rs = row % (s.r * s.s);
    kernels::im2col_row_nchw_f32(x + nc * s.h * s.w, s.h, s.w, rs / s.s, rs % s.s, s.window, s.p, s.q,
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
        kernels::col2im_row_add_nchw_f32(col + (nc * s.r * s.s + r * s.s + t) * s.p * s.q, s.h, s.w, r, t, s.window,
                                         s.p, s.q, plane);
  }
}

inline void im2col(const float* x, float* col, const ConvShape& s) {
  PK_LAUNCH(im2col_nchw_f32, element_grid(s.n * s.c * s.r * s.s), pk::dim3(kElementBlock), x, col, s);
}

// b may be null (no bias).
inline void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                           float* col) {
  im2col(x, col, s);
  const int64_t crs = s.c * s.r * s.s, wcrs = s.crs_group(), kg = s.k_group(), pq = s.p * s.q;
  for (int64_t gi = 0; gi < s.groups(); ++gi) {  // every image at once, one group at a time
    GemmArgs g{w + gi * kg * wcrs, wcrs, 1, 0, col + gi * wcrs * pq, pq, 1, crs * pq, y + gi * kg * pq, pq,
               s.k * pq, b ? b + gi * kg : nullptr, 1, 0, kg, pq, wcrs, 0};
    gemm(g, s.n);
  }
}

inline void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* dcol) {
  const int64_t crs = s.c * s.r * s.s, wcrs = s.crs_group(), kg = s.k_group(), pq = s.p * s.q;
  for (int64_t gi = 0; gi < s.groups(); ++gi) {
    GemmArgs g{w + gi * kg * wcrs, 1, wcrs, 0, dy + gi * kg * pq, pq, 1, s.k * pq, dcol + gi * wcrs * pq, pq,
               crs * pq, nullptr, 0, 0, wcrs, pq, kg, 0};
    gemm(g, s.n);
  }
  PK_LAUNCH(col2im_nchw_f32, element_grid(s.n * s.c), pk::dim3(kElementBlock), dcol, dx, s);
}

// db may be null (no bias).
inline void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db, const ConvShape& s,
                                   float* col) {
  im2col(x, col, s);
  const int64_t crs = s.c * s.r * s.s, wcrs = s.crs_group(), kg = s.k_group(), pq = s.p * s.q;
  // N >= 1 (every backend's plan check refuses a dimension < 1): image 0's GEMM writes all of dw.
  for (int64_t n = 0; n < s.n; ++n) {
    // The groups as the GEMM's batch: group gi's filters, its rows of col, its block of dw.
    GemmArgs g{dy + n * s.k * pq, pq, 1, kg * pq, col + n * crs * pq, 1, pq, wcrs * pq, dw, wcrs, kg * wcrs,
               nullptr, 0, 0, kg, wcrs, pq, n > 0 ? 1 : 0};
    gemm(g, s.groups());
  }
  if (db) sum_per_channel(dy, db, s.k, s.n, s.k * pq, pq, pq);
}

// x, w[, b] -> y.
inline void run_conv2d(const NativeNode& node) {
  const ConvShape s = conv_shape(node);
  node.need_workspace(s.workspace_floats());
  if (node.sizing()) return;
  const bool bias = node.desc().num_inputs == 3;
  if (bias) node.expect_numel(node.in(2), s.k);
  const float *x = node.f32_in(0), *w = node.f32_in(1), *b = bias ? node.f32_in(2) : nullptr;
  float* y = node.f32_out(0);
  if (node.launching()) conv2d_forward(x, w, b, y, s, node.workspace());
}

// dy, w -> dx.
inline void run_conv2d_bwd_data(const NativeNode& node) {
  const ConvShape s = conv_shape(node);
  node.need_workspace(s.workspace_floats());
  if (node.sizing()) return;
  const float *dy = node.f32_in(0), *w = node.f32_in(1);
  float* dx = node.f32_out(0);
  if (node.launching()) conv2d_backward_data(dy, w, dx, s, node.workspace());
}

// x, dy -> dw[, db].
inline void run_conv2d_bwd_weight(const NativeNode& node) {
  const ConvShape s = conv_shape(node);
  node.need_workspace(s.workspace_floats());
  if (node.sizing()) return;
  const bool bias = node.desc().num_outputs == 2;
  if (bias) node.expect_numel(node.out(1), s.k);
  const float *x = node.f32_in(0), *dy = node.f32_in(1);
  float *dw = node.f32_out(0), *db = bias ? node.f32_out(1) : nullptr;
  if (node.launching()) conv2d_backward_weight(x, dy, dw, db, s, node.workspace());
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
