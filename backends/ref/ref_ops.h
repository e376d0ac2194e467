// backends/ref/ref_ops.h — the float64 oracle's ops, each in one place: its math as the textbook
// nested loop over double (int32 for labels and indices), backward next to forward, and its
// run_<name>(const RefNode&) that checks a node's shapes and calls that math. Adding an op to ref
// is adding its run_<name> here (ref_backend.cpp's switch is generated from PARITY_OP_LIST).
// Shares no code with the backends it checks; the math is public to the tests so that gradients
// can be checked by finite differences.
//
// Semantics are those of parity/plugin.h (PyTorch where a choice exists). Every math function
// writes all of its outputs and assumes its arguments are consistent with the dims it is given;
// run_<name> validates the shapes and what depends on run-time data (labels, pooling indices).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "backends/kit/value_desc.h"
#include "backends/ref/ref_node.h"
#include "util/counter_rng.h"
#include "parity/error.h"

namespace parity::ref {

namespace detail {

// Flat offsets of the NCHW and KCRS tensors, spelled out once so the loops read like the formulas.
inline int64_t at4(int64_t i0, int64_t i1, int64_t i2, int64_t i3, int64_t d1, int64_t d2, int64_t d3) {
  return ((i0 * d1 + i1) * d2 + i2) * d3 + i3;
}

inline void fill_zero(double* p, int64_t count) {
  for (int64_t i = 0; i < count; ++i) p[i] = 0.0;
}

// Whether `v` replaces `best` as a window's or row's maximum: strictly greater keeps the first
// maximum (PyTorch); a NaN wins over a number so that NaN propagates, and the first NaN is kept.
inline bool replaces_max(double v, double best) {
  return v > best || (std::isnan(v) && !std::isnan(best));
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// conv2d, NCHW, cross-correlation with zero padding, in groups, dilated:
// x[n,c,h,w], w[k,c/G,r,s], b[k] (optional), y[n,k,p,q] with
// p = (h + pad_h + pad_bottom - dilation_h (r - 1) - 1) / stride_h + 1 (q likewise), and
// y[n,k,p,q] = b[k] + sum_{j<c/G,r,s} x[n, g c/G + j, p*sh - ph + r*dh, q*sw - pw + s*dw] * w[k,j,r,s]
// where g = k / (k/G) is the filter's group; terms whose input position falls in the zero
// padding are left out. Both backward passes walk the same loop nest as the forward and
// scatter/accumulate, so each is visibly its transpose.

struct Conv2dDims {
  int64_t n, c, h, w;        // input
  int64_t k, r, s;           // filters: out channels, kernel height, kernel width
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;      // top, left
  int64_t p, q;              // output height, width
  int64_t pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  int64_t cg() const { return c / groups; }  // input channels per group (the weight's dim 1)
  int64_t kg() const { return k / groups; }  // filters per group
};

// Fills p and q from the other fields.
inline Conv2dDims make_conv2d_dims_general(Conv2dDims d) {
  d.p = (d.h + d.pad_h + d.pad_bottom - d.dilation_h * (d.r - 1) - 1) / d.stride_h + 1;
  d.q = (d.w + d.pad_w + d.pad_right - d.dilation_w * (d.s - 1) - 1) / d.stride_w + 1;
  return d;
}

// Symmetric padding, no dilation, one group.
inline Conv2dDims make_conv2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                                   int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
  return make_conv2d_dims_general(Conv2dDims{n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, 0, 0, pad_h, pad_w});
}

// `b` may be null (no bias).
inline void conv2d_forward(const double* x, const double* w, const double* b, double* y, const Conv2dDims& d) {
  using detail::at4;
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t k = 0; k < d.k; ++k)
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          double acc = b ? b[k] : 0.0;
          for (int64_t j = 0; j < d.cg(); ++j) {
            const int64_t c = k / d.kg() * d.cg() + j;
            for (int64_t r = 0; r < d.r; ++r) {
              const int64_t ih = p * d.stride_h - d.pad_h + r * d.dilation_h;
              if (ih < 0 || ih >= d.h) continue;
              for (int64_t s = 0; s < d.s; ++s) {
                const int64_t iw = q * d.stride_w - d.pad_w + s * d.dilation_w;
                if (iw < 0 || iw >= d.w) continue;
                acc += x[at4(n, c, ih, iw, d.c, d.h, d.w)] * w[at4(k, j, r, s, d.cg(), d.r, d.s)];
              }
            }
          }
          y[at4(n, k, p, q, d.k, d.p, d.q)] = acc;
        }
}

inline void conv2d_backward_data(const double* dL_dy, const double* w, double* dL_dx, const Conv2dDims& d) {
  using detail::at4;
  detail::fill_zero(dL_dx, d.n * d.c * d.h * d.w);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t k = 0; k < d.k; ++k)
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          const double g = dL_dy[at4(n, k, p, q, d.k, d.p, d.q)];
          for (int64_t j = 0; j < d.cg(); ++j) {
            const int64_t c = k / d.kg() * d.cg() + j;
            for (int64_t r = 0; r < d.r; ++r) {
              const int64_t ih = p * d.stride_h - d.pad_h + r * d.dilation_h;
              if (ih < 0 || ih >= d.h) continue;
              for (int64_t s = 0; s < d.s; ++s) {
                const int64_t iw = q * d.stride_w - d.pad_w + s * d.dilation_w;
                if (iw < 0 || iw >= d.w) continue;
                dL_dx[at4(n, c, ih, iw, d.c, d.h, d.w)] += g * w[at4(k, j, r, s, d.cg(), d.r, d.s)];
              }
            }
          }
        }
}

// `dL_db` may be null (no bias).
inline void conv2d_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
                                   const Conv2dDims& d) {
  using detail::at4;
  detail::fill_zero(dL_dw, d.k * d.cg() * d.r * d.s);
  if (dL_db) detail::fill_zero(dL_db, d.k);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t k = 0; k < d.k; ++k)
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          const double g = dL_dy[at4(n, k, p, q, d.k, d.p, d.q)];
          if (dL_db) dL_db[k] += g;
          for (int64_t j = 0; j < d.cg(); ++j) {
            const int64_t c = k / d.kg() * d.cg() + j;
            for (int64_t r = 0; r < d.r; ++r) {
              const int64_t ih = p * d.stride_h - d.pad_h + r * d.dilation_h;
              if (ih < 0 || ih >= d.h) continue;
              for (int64_t s = 0; s < d.s; ++s) {
                const int64_t iw = q * d.stride_w - d.pad_w + s * d.dilation_w;
                if (iw < 0 || iw >= d.w) continue;
                dL_dw[at4(k, j, r, s, d.cg(), d.r, d.s)] += g * x[at4(n, c, ih, iw, d.c, d.h, d.w)];
              }
            }
          }
        }
}

// The dims of a conv2d node from its x[N,C,H,W] and w[K,C/G,R,S] (for the backwards, dx and
// dw). ref reads the ABI 5 defaults itself (0 reads as 1; end padding = begin unless given):
// it shares no code with the backends it checks.
inline Conv2dDims conv_dims(const RefNode& node, const parity_value_desc& x, const parity_value_desc& w) {
  const parity_conv2d_params& p = node.params().conv2d;
  Conv2dDims d{node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3), node.dim(w, 4, 0),
               node.dim(w, 4, 2), node.dim(w, 4, 3), p.stride_h, p.stride_w, p.pad_h, p.pad_w, 0, 0};
  d.pad_bottom = p.pad_end_given ? p.pad_bottom : p.pad_h;
  d.pad_right = p.pad_end_given ? p.pad_right : p.pad_w;
  d.dilation_h = p.dilation_h > 0 ? p.dilation_h : 1;
  d.dilation_w = p.dilation_w > 0 ? p.dilation_w : 1;
  d.groups = p.groups > 0 ? p.groups : 1;
  if (d.stride_h < 1 || d.stride_w < 1 || d.pad_h < 0 || d.pad_w < 0 || d.pad_bottom < 0 || d.pad_right < 0 ||
      p.dilation_h < 0 || p.dilation_w < 0 || p.groups < 0)
    throw Error(ErrorKind::shape, node.label() + ": stride must be > 0, padding >= 0, dilation and groups >= 0 (0 reads as 1)");
  if (d.c % d.groups != 0 || d.k % d.groups != 0 || node.dim(w, 4, 1) != d.c / d.groups)
    throw Error(ErrorKind::shape, node.label() + ": groups must divide C and K, and the weight must be [K, C/groups, R, S]");
  d = make_conv2d_dims_general(d);
  if (d.p < 1 || d.q < 1) throw Error(ErrorKind::shape, node.label() + ": the dilated kernel is larger than the padded input");
  return d;
}

inline void run_conv2d(const RefNode& node) {  // x, w[, b] -> y
  const Conv2dDims d = conv_dims(node, node.in_desc(0), node.in_desc(1));
  const bool bias = node.desc().num_inputs == 3;
  if (bias) node.expect_numel(node.in_desc(2), d.k);
  node.expect_numel(node.out_desc(0), d.n * d.k * d.p * d.q);
  conv2d_forward(node.f_in(0), node.f_in(1), bias ? node.f_in(2) : nullptr, node.f_out(0), d);
}

inline void run_conv2d_bwd_data(const RefNode& node) {  // dy, w -> dx
  const Conv2dDims d = conv_dims(node, node.out_desc(0), node.in_desc(1));
  node.expect_numel(node.in_desc(0), d.n * d.k * d.p * d.q);
  conv2d_backward_data(node.f_in(0), node.f_in(1), node.f_out(0), d);
}

inline void run_conv2d_bwd_weight(const RefNode& node) {  // x, dy -> dw[, db]
  const Conv2dDims d = conv_dims(node, node.in_desc(0), node.out_desc(0));
  const bool bias = node.desc().num_outputs == 2;
  node.expect_numel(node.in_desc(1), d.n * d.k * d.p * d.q);
  if (bias) node.expect_numel(node.out_desc(1), d.k);
  conv2d_backward_weight(node.f_in(0), node.f_in(1), node.f_out(0), bias ? node.f_out(1) : nullptr, d);
}

// ---------------------------------------------------------------------------------------------
// relu (elementwise over count values)

inline void relu_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = std::isnan(x[i]) ? x[i] : (x[i] > 0.0 ? x[i] : 0.0);
}

// Takes the forward output y: dL_dx = y > 0 ? dL_dy : 0, so relu'(0) = 0.
inline void relu_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = y[i] > 0.0 ? dL_dy[i] : 0.0;
}

inline void run_relu(const RefNode& node) { relu_forward(node.f_in(0), node.f_out(0), node.elementwise_count(1)); }

inline void run_relu_bwd(const RefNode& node) {  // y, dy -> dx
  relu_backward(node.f_in(0), node.f_in(1), node.f_out(0), node.elementwise_count(2));
}

// ---------------------------------------------------------------------------------------------
// sigmoid (elementwise over count values)

// y = 1 / (1 + exp(-x)): exp(-x) overflows to inf for x < -709, giving 0, as torch.sigmoid.
inline void sigmoid_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = 1.0 / (1.0 + std::exp(-x[i]));
}

// Takes the forward output y: dL_dx = dL_dy * y * (1 - y).
inline void sigmoid_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = dL_dy[i] * y[i] * (1.0 - y[i]);
}

inline void run_sigmoid(const RefNode& node) {
  sigmoid_forward(node.f_in(0), node.f_out(0), node.elementwise_count(1));
}

inline void run_sigmoid_bwd(const RefNode& node) {  // y, dy -> dx
  sigmoid_backward(node.f_in(0), node.f_in(1), node.f_out(0), node.elementwise_count(2));
}

// ---------------------------------------------------------------------------------------------
// tanh, leaky_relu, gelu, hardtanh (elementwise over count values; PyTorch's semantics, the
// float32 forms in ops/kernels/activation.h). Params are float32 and widen exactly.

inline void tanh_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = std::tanh(x[i]);
}

// Takes the forward output y: dL_dx = dL_dy * (1 - y^2).
inline void tanh_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = dL_dy[i] * (1.0 - y[i] * y[i]);
}

inline void run_tanh(const RefNode& node) { tanh_forward(node.f_in(0), node.f_out(0), node.elementwise_count(1)); }

inline void run_tanh_bwd(const RefNode& node) {  // y, dy -> dx
  tanh_backward(node.f_in(0), node.f_in(1), node.f_out(0), node.elementwise_count(2));
}

// y = x > 0 ? x : x * slope (NaN takes the slope branch and stays NaN).
inline void leaky_relu_forward(const double* x, double* y, int64_t count, double slope) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] > 0.0 ? x[i] : x[i] * slope;
}

// Takes the forward input x: dL_dx = x > 0 ? dL_dy : dL_dy * slope, so x == 0 takes the slope (torch).
inline void leaky_relu_backward(const double* x, const double* dL_dy, double* dL_dx, int64_t count, double slope) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = x[i] > 0.0 ? dL_dy[i] : dL_dy[i] * slope;
}

inline void run_leaky_relu(const RefNode& node) {
  leaky_relu_forward(node.f_in(0), node.f_out(0), node.elementwise_count(1), node.params().leaky_relu.negative_slope);
}

inline void run_leaky_relu_bwd(const RefNode& node) {  // x, dy -> dx
  leaky_relu_backward(node.f_in(0), node.f_in(1), node.f_out(0), node.elementwise_count(2),
                      node.params().leaky_relu.negative_slope);
}

// Dropout (parity_dropout_params in plugin.h): element e of local sample n is kept when the
// top 24 bits of word e % 4 of the Philox block at counter (e / 4, first_sample + n, step,
// node_key), key (seed_lo, seed_hi), as a fraction of 2^24, are >= p; kept elements are scaled
// by torch's float32 noise value 1.0f / float(1 - p). x may be dy: the backward is the same product.
inline void dropout_apply(const double* x, double* y, int64_t samples, int64_t per_sample,
                          const parity_dropout_params& p, int32_t step) {
  const double scale = static_cast<double>(1.0f / static_cast<float>(1.0 - double(p.p)));
  for (int64_t n = 0; n < samples; ++n)
    for (int64_t e = 0; e < per_sample; ++e) {
      const std::array<uint32_t, 4> block =
          philox4x32({static_cast<uint32_t>(e / 4), static_cast<uint32_t>(p.first_sample + n),
                      static_cast<uint32_t>(step), p.node_key},
                     {p.seed_lo, p.seed_hi});
      const double fraction = double(block[static_cast<size_t>(e % 4)] >> 8) / 16777216.0;
      y[n * per_sample + e] = fraction >= double(p.p) ? x[n * per_sample + e] * scale : x[n * per_sample + e] * 0.0;
    }
}

inline void run_dropout_either(const RefNode& node) {  // x (or dy), step[1] -> y (or dx)
  const parity_value_desc& x = node.in_desc(0);
  const int64_t count = kit::numel_of(x);
  node.expect_numel(node.out_desc(0), count);
  node.expect_numel(node.in_desc(1), 1);
  const int32_t step = node.i_in(1)[0];
  if (step < 1)
    throw Error(ErrorKind::invalid_argument, node.label() + ": step " + std::to_string(step) + " in value '" +
                                                 node.in_desc(1).name + "' must be >= 1 (steps count from 1)");
  const int64_t samples = x.dims[0];
  dropout_apply(node.f_in(0), node.f_out(0), samples, samples > 0 ? count / samples : 0, node.params().dropout, step);
}

inline void run_dropout(const RefNode& node) { run_dropout_either(node); }
inline void run_dropout_bwd(const RefNode& node) { run_dropout_either(node); }

// y = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (the erf form, torch's approximate='none').
inline double gelu_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

inline void gelu_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] * gelu_cdf(x[i]);
}

// Takes the forward input x: dL_dx = dL_dy * (Phi(x) + x * phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi).
inline void gelu_backward(const double* x, const double* dL_dy, double* dL_dx, int64_t count) {
  const double inv_sqrt_2pi = 1.0 / std::sqrt(2.0 * 3.14159265358979323846);
  for (int64_t i = 0; i < count; ++i)
    dL_dx[i] = dL_dy[i] * (gelu_cdf(x[i]) + x[i] * inv_sqrt_2pi * std::exp(-0.5 * x[i] * x[i]));
}

inline void run_gelu(const RefNode& node) { gelu_forward(node.f_in(0), node.f_out(0), node.elementwise_count(1)); }

inline void run_gelu_bwd(const RefNode& node) {  // x, dy -> dx
  gelu_backward(node.f_in(0), node.f_in(1), node.f_out(0), node.elementwise_count(2));
}

// y = min(max(x, lo), hi), NaN propagated.
inline void hardtanh_forward(const double* x, double* y, int64_t count, double lo, double hi) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

// Takes the forward input x: dL_dy passes only strictly inside (lo, hi), 0 at x == lo and
// x == hi, as torch's hardtanh_backward (NaN passes).
inline void hardtanh_backward(const double* x, const double* dL_dy, double* dL_dx, int64_t count, double lo,
                              double hi) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = (x[i] <= lo || x[i] >= hi) ? 0.0 : dL_dy[i];
}

inline void run_hardtanh(const RefNode& node) {
  const parity_hardtanh_params& p = node.params().hardtanh;
  hardtanh_forward(node.f_in(0), node.f_out(0), node.elementwise_count(1), p.min_val, p.max_val);
}

inline void run_hardtanh_bwd(const RefNode& node) {  // x, dy -> dx
  const parity_hardtanh_params& p = node.params().hardtanh;
  hardtanh_backward(node.f_in(0), node.f_in(1), node.f_out(0), node.elementwise_count(2), p.min_val, p.max_val);
}

// ---------------------------------------------------------------------------------------------
// Pooling windows as PyTorch places them: window o of an axis starts at o*stride - pad and
// takes `kernel` taps `dilation` apart; the output extent is floor or (ceil_mode) ceil of
// (in + 2 pad - dilation (kernel - 1) - 1) / stride, + 1, less the last window if ceil_mode
// would start it at or after in + pad. Taps outside [0, in) are padding. Written here apart
// from ops/kernels/pool.h, which the backends under test share.

struct PoolAxisDims {
  int64_t in, kernel, stride, pad, dilation, out;
};

inline PoolAxisDims make_pool_axis(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                                   bool ceil_mode) {
  PoolAxisDims a{in, kernel, stride, pad, dilation, 0};
  const int64_t room = in + 2 * pad - dilation * (kernel - 1) - 1;
  a.out = room < 0 ? 0 : (ceil_mode ? (room + stride - 1) / stride : room / stride) + 1;
  if (ceil_mode && a.out > 0 && (a.out - 1) * stride >= in + pad) --a.out;
  return a;
}

// Input coordinate of tap t of window o, or -1 where it is padding.
inline int64_t pool_tap(const PoolAxisDims& a, int64_t o, int64_t t) {
  const int64_t i = o * a.stride - a.pad + t * a.dilation;
  return i >= 0 && i < a.in ? i : -1;
}

// ---------------------------------------------------------------------------------------------
// maxpool2d: idx holds the flat index h*W+w of the first maximum (row-major tap order; NaN
// always replaces) in its (n,c) plane; a window with no tap inside the input gives 0 and -1.

struct Maxpool2dDims {
  int64_t n, c, h, w;
  PoolAxisDims rows, cols;
  int64_t p, q;
};

inline Maxpool2dDims make_maxpool2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kernel_h,
                                         int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h = 0,
                                         int64_t pad_w = 0, int64_t dilation_h = 1, int64_t dilation_w = 1,
                                         bool ceil_mode = false) {
  Maxpool2dDims d{n, c, h, w, make_pool_axis(h, kernel_h, stride_h, pad_h, dilation_h, ceil_mode),
                  make_pool_axis(w, kernel_w, stride_w, pad_w, dilation_w, ceil_mode), 0, 0};
  d.p = d.rows.out;
  d.q = d.cols.out;
  return d;
}

inline void maxpool2d_forward(const double* x, double* y, int32_t* idx, const Maxpool2dDims& d) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      const double* plane = x + (n * d.c + c) * d.h * d.w;
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          int64_t best_at = -1;
          double best = 0.0;
          for (int64_t r = 0; r < d.rows.kernel; ++r)
            for (int64_t s = 0; s < d.cols.kernel; ++s) {
              const int64_t h = pool_tap(d.rows, p, r), w = pool_tap(d.cols, q, s);
              if (h < 0 || w < 0) continue;
              const int64_t at = h * d.w + w;
              if (best_at < 0 || detail::replaces_max(plane[at], best)) {
                best = plane[at];
                best_at = at;
              }
            }
          const int64_t out = detail::at4(n, c, p, q, d.c, d.p, d.q);
          y[out] = best;
          idx[out] = static_cast<int32_t>(best_at);
        }
    }
}

inline void maxpool2d_backward(const double* dL_dy, const int32_t* idx, double* dL_dx, const Maxpool2dDims& d) {
  detail::fill_zero(dL_dx, d.n * d.c * d.h * d.w);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      double* plane = dL_dx + (n * d.c + c) * d.h * d.w;
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          const int64_t out = detail::at4(n, c, p, q, d.c, d.p, d.q);
          if (idx[out] >= 0) plane[idx[out]] += dL_dy[out];  // += : overlapping windows can pick the same element
        }
    }
}

// The dims of a maxpool2d node from its x[N,C,H,W] (for the backward, dx); dilation 0 reads as 1.
inline Maxpool2dDims pool_dims(const RefNode& node, const parity_value_desc& x) {
  const parity_maxpool2d_params& p = node.params().maxpool2d;
  return make_maxpool2d_dims(node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3), p.kernel_h,
                             p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                             p.dilation_h == 0 ? 1 : p.dilation_h, p.dilation_w == 0 ? 1 : p.dilation_w,
                             p.ceil_mode != 0);
}

// Pooling indices may come from the caller (an INPUT in an op-level check): each must lie in
// its plane, or be -1 (a window with no input element).
inline void check_pool_indices(const RefNode& node, int32_t slot, const Maxpool2dDims& d) {
  const parity_value_desc& v = node.in_desc(slot);
  node.expect_numel(v, d.n * d.c * d.p * d.q);
  const int32_t* idx = node.i_in(slot);
  for (int64_t i = 0; i < d.n * d.c * d.p * d.q; ++i)
    if (idx[i] < -1 || idx[i] >= d.h * d.w)
      throw Error(ErrorKind::data, node.label() + ": index " + std::to_string(idx[i]) + " at element " +
                                       std::to_string(i) + " of value '" + v.name + "' is outside its " +
                                       std::to_string(d.h) + "x" + std::to_string(d.w) + " plane (and not -1)");
}

inline void run_maxpool2d(const RefNode& node) {  // x -> y, idx
  const Maxpool2dDims d = pool_dims(node, node.in_desc(0));
  node.expect_numel(node.out_desc(0), d.n * d.c * d.p * d.q);
  node.expect_numel(node.out_desc(1), d.n * d.c * d.p * d.q);
  maxpool2d_forward(node.f_in(0), node.f_out(0), node.i_out(1), d);
}

inline void run_maxpool2d_bwd(const RefNode& node) {  // dy, idx -> dx
  const Maxpool2dDims d = pool_dims(node, node.out_desc(0));
  node.expect_numel(node.in_desc(0), d.n * d.c * d.p * d.q);
  check_pool_indices(node, 1, d);
  maxpool2d_backward(node.f_in(0), node.i_in(1), node.f_out(0), d);
}

// ---------------------------------------------------------------------------------------------
// avgpool2d (torch.nn.functional.avg_pool2d): each output is the sum of its window's input
// elements over a divisor: with count_include_pad, the window's extent clipped to the padded
// input [-pad, in + pad) per axis (ceil_mode's overhang not counted); without, the number of
// input elements. A divisor of 0 (no input element, padding excluded) gives 0. The backward adds
// dy / divisor to every input element of the window. global_avgpool is the one window H x W.

struct Avgpool2dDims {
  int64_t n, c, h, w;
  PoolAxisDims rows, cols;
  bool count_include_pad;
  int64_t p, q;
};

inline Avgpool2dDims make_avgpool2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kernel_h,
                                         int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                                         int64_t pad_w, bool ceil_mode, bool count_include_pad) {
  Avgpool2dDims d{n, c, h, w, make_pool_axis(h, kernel_h, stride_h, pad_h, 1, ceil_mode),
                  make_pool_axis(w, kernel_w, stride_w, pad_w, 1, ceil_mode), count_include_pad, 0, 0};
  d.p = d.rows.out;
  d.q = d.cols.out;
  return d;
}

// The divisor's factor along one axis for window o.
inline int64_t avgpool_axis_count(const PoolAxisDims& a, int64_t o, bool count_include_pad) {
  int64_t count = 0;
  for (int64_t t = 0; t < a.kernel; ++t) {
    const int64_t i = o * a.stride - a.pad + t;
    count += count_include_pad ? (i < a.in + a.pad ? 1 : 0) : (pool_tap(a, o, t) >= 0 ? 1 : 0);
  }
  return count;
}

inline double avgpool_divisor(const Avgpool2dDims& d, int64_t p, int64_t q) {
  return double(avgpool_axis_count(d.rows, p, d.count_include_pad) * avgpool_axis_count(d.cols, q, d.count_include_pad));
}

inline void avgpool2d_forward(const double* x, double* y, const Avgpool2dDims& d) {
  for (int64_t plane = 0; plane < d.n * d.c; ++plane)
    for (int64_t p = 0; p < d.p; ++p)
      for (int64_t q = 0; q < d.q; ++q) {
        double sum = 0.0;
        for (int64_t r = 0; r < d.rows.kernel; ++r)
          for (int64_t s = 0; s < d.cols.kernel; ++s) {
            const int64_t h = pool_tap(d.rows, p, r), w = pool_tap(d.cols, q, s);
            if (h >= 0 && w >= 0) sum += x[(plane * d.h + h) * d.w + w];
          }
        const double divisor = avgpool_divisor(d, p, q);
        y[(plane * d.p + p) * d.q + q] = divisor == 0.0 ? 0.0 : sum / divisor;
      }
}

inline void avgpool2d_backward(const double* dL_dy, double* dL_dx, const Avgpool2dDims& d) {
  detail::fill_zero(dL_dx, d.n * d.c * d.h * d.w);
  for (int64_t plane = 0; plane < d.n * d.c; ++plane)
    for (int64_t p = 0; p < d.p; ++p)
      for (int64_t q = 0; q < d.q; ++q) {
        const double divisor = avgpool_divisor(d, p, q);
        if (divisor == 0.0) continue;  // no input element to reach
        const double g = dL_dy[(plane * d.p + p) * d.q + q] / divisor;
        for (int64_t r = 0; r < d.rows.kernel; ++r)
          for (int64_t s = 0; s < d.cols.kernel; ++s) {
            const int64_t h = pool_tap(d.rows, p, r), w = pool_tap(d.cols, q, s);
            if (h >= 0 && w >= 0) dL_dx[(plane * d.h + h) * d.w + w] += g;
          }
      }
}

inline Avgpool2dDims avgpool_dims(const RefNode& node, const parity_value_desc& x) {
  const parity_avgpool2d_params& p = node.params().avgpool2d;
  return make_avgpool2d_dims(node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3), p.kernel_h,
                             p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.ceil_mode != 0,
                             p.count_include_pad != 0);
}

inline void run_avgpool2d(const RefNode& node) {  // x -> y
  const Avgpool2dDims d = avgpool_dims(node, node.in_desc(0));
  node.expect_numel(node.out_desc(0), d.n * d.c * d.p * d.q);
  avgpool2d_forward(node.f_in(0), node.f_out(0), d);
}

inline void run_avgpool2d_bwd(const RefNode& node) {  // dy -> dx
  const Avgpool2dDims d = avgpool_dims(node, node.out_desc(0));
  node.expect_numel(node.in_desc(0), d.n * d.c * d.p * d.q);
  avgpool2d_backward(node.f_in(0), node.f_out(0), d);
}

inline void global_avgpool_forward(const double* x, double* y, int64_t planes, int64_t plane_size) {
  for (int64_t plane = 0; plane < planes; ++plane) {
    double sum = 0.0;
    for (int64_t i = 0; i < plane_size; ++i) sum += x[plane * plane_size + i];
    y[plane] = sum / double(plane_size);
  }
}

inline void global_avgpool_backward(const double* dL_dy, double* dL_dx, int64_t planes, int64_t plane_size) {
  for (int64_t plane = 0; plane < planes; ++plane)
    for (int64_t i = 0; i < plane_size; ++i) dL_dx[plane * plane_size + i] = dL_dy[plane] / double(plane_size);
}

inline void run_global_avgpool(const RefNode& node) {  // x[N,C,H,W] -> y[N,C,1,1]
  const parity_value_desc& x = node.in_desc(0);
  const int64_t planes = node.dim(x, 4, 0) * node.dim(x, 4, 1), plane_size = node.dim(x, 4, 2) * node.dim(x, 4, 3);
  node.expect_numel(node.out_desc(0), planes);
  global_avgpool_forward(node.f_in(0), node.f_out(0), planes, plane_size);
}

inline void run_global_avgpool_bwd(const RefNode& node) {  // dy[N,C,1,1] -> dx[N,C,H,W]
  const parity_value_desc& dx = node.out_desc(0);
  const int64_t planes = node.dim(dx, 4, 0) * node.dim(dx, 4, 1), plane_size = node.dim(dx, 4, 2) * node.dim(dx, 4, 3);
  node.expect_numel(node.in_desc(0), planes);
  global_avgpool_backward(node.f_in(0), node.f_out(0), planes, plane_size);
}

// ---------------------------------------------------------------------------------------------
// reshape (a copy; its backward is the same copy in the other direction)

inline void reshape_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i];
}

inline void run_reshape(const RefNode& node) {
  const int64_t count = kit::numel_of(node.in_desc(0));
  node.expect_numel(node.out_desc(0), count);
  const parity_dtype dtype = node.in_desc(0).dtype;
  if (is_half(dtype)) {  // bf16 and f16 (ABI 9) move as bits
    std::copy_n(node.h_in(0, dtype), count, node.h_out(0, dtype));
    return;
  }
  reshape_forward(node.f_in(0), node.f_out(0), count);
}

// ---------------------------------------------------------------------------------------------
// linear: x[n,in], w[out,in], b[out], y[n,out] = x w^T + b, that is y[n,o] = b[o] + sum_i x[n,i] w[o,i]

struct LinearDims {
  int64_t n, in, out;
};

inline void linear_forward(const double* x, const double* w, const double* b, double* y, const LinearDims& d) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t o = 0; o < d.out; ++o) {
      double acc = b[o];
      for (int64_t i = 0; i < d.in; ++i) acc += x[n * d.in + i] * w[o * d.in + i];
      y[n * d.out + o] = acc;
    }
}

inline void linear_backward_data(const double* dL_dy, const double* w, double* dL_dx, const LinearDims& d) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.in; ++i) {
      double acc = 0.0;
      for (int64_t o = 0; o < d.out; ++o) acc += dL_dy[n * d.out + o] * w[o * d.in + i];
      dL_dx[n * d.in + i] = acc;
    }
}

inline void linear_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
                                   const LinearDims& d) {
  for (int64_t o = 0; o < d.out; ++o) {
    double acc_b = 0.0;
    for (int64_t n = 0; n < d.n; ++n) acc_b += dL_dy[n * d.out + o];
    dL_db[o] = acc_b;
    for (int64_t i = 0; i < d.in; ++i) {
      double acc = 0.0;
      for (int64_t n = 0; n < d.n; ++n) acc += dL_dy[n * d.out + o] * x[n * d.in + i];
      dL_dw[o * d.in + i] = acc;
    }
  }
}

// Linear dims from the weight [O,I]; the batch is whatever x holds of rows of I.
inline LinearDims linear_dims(const RefNode& node, const parity_value_desc& rows_of_in, const parity_value_desc& w) {
  LinearDims d{0, node.dim(w, 2, 1), node.dim(w, 2, 0)};
  d.n = d.in > 0 ? kit::numel_of(rows_of_in) / d.in : 0;
  node.expect_numel(rows_of_in, d.n * d.in);
  return d;
}

inline void run_linear(const RefNode& node) {  // x, w, b -> y
  const LinearDims d = linear_dims(node, node.in_desc(0), node.in_desc(1));
  node.expect_numel(node.in_desc(2), d.out);
  node.expect_numel(node.out_desc(0), d.n * d.out);
  linear_forward(node.f_in(0), node.f_in(1), node.f_in(2), node.f_out(0), d);
}

inline void run_linear_bwd_data(const RefNode& node) {  // dy, w -> dx
  const LinearDims d = linear_dims(node, node.out_desc(0), node.in_desc(1));
  node.expect_numel(node.in_desc(0), d.n * d.out);
  linear_backward_data(node.f_in(0), node.f_in(1), node.f_out(0), d);
}

inline void run_linear_bwd_weight(const RefNode& node) {  // x, dy -> dw, db
  const LinearDims d = linear_dims(node, node.in_desc(0), node.out_desc(0));
  node.expect_numel(node.in_desc(1), d.n * d.out);
  node.expect_numel(node.out_desc(1), d.out);
  linear_backward_weight(node.f_in(0), node.f_in(1), node.f_out(0), node.f_out(1), d);
}

// ---------------------------------------------------------------------------------------------
// softmax cross-entropy over rows as torch's cross_entropy: logits[n,k], labels[n] in [0, k) or
// the ignore_index; the mean over the rows not ignored, their sum, or each row's term (none).
// Each row is shifted by its maximum before exp, so logits of any magnitude neither overflow nor
// lose the label's term: -log softmax(l)[y] = log sum exp(l - m) - (l[y] - m).

struct XentDims {
  int64_t n, k;
};

// How the rows' terms become the loss (parity_softmax_xent_params, read here without the shared
// kernel math). The defaults are ABI 6's loss: the mean over every row.
struct XentLoss {
  enum class Reduction { mean, sum, none } reduction = Reduction::mean;
  bool has_ignore_index = false;
  int32_t ignore_index = 0;
  bool ignores(int32_t label) const { return has_ignore_index && label == ignore_index; }
};

namespace detail {

inline double row_max(const double* row, int64_t k) {
  double m = row[0];
  for (int64_t j = 1; j < k; ++j)
    if (replaces_max(row[j], m)) m = row[j];
  return m;
}

inline double row_sum_exp_shifted(const double* row, int64_t k, double m) {
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j) sum += std::exp(row[j] - m);
  return sum;
}

inline int64_t rows_counted(const int32_t* labels, const XentDims& d, const XentLoss& how) {
  int64_t counted = 0;
  for (int64_t n = 0; n < d.n; ++n)
    if (!how.ignores(labels[n])) ++counted;
  return counted;
}

}  // namespace detail

// loss: one value (mean, sum) or d.n (none). An ignored row's term is 0, its logits unread; the
// mean over no row is 0 / 0 = NaN, as torch's.
inline void softmax_xent_forward(const double* logits, const int32_t* labels, const XentDims& d, const XentLoss& how,
                                 double* loss) {
  double total = 0.0;
  for (int64_t n = 0; n < d.n; ++n) {
    double term = 0.0;
    if (!how.ignores(labels[n])) {
      const double* row = logits + n * d.k;
      const double m = detail::row_max(row, d.k);
      term = std::log(detail::row_sum_exp_shifted(row, d.k, m)) - (row[labels[n]] - m);
    }
    if (how.reduction == XentLoss::Reduction::none) loss[n] = term;
    total += term;
  }
  if (how.reduction == XentLoss::Reduction::sum) loss[0] = total;
  if (how.reduction == XentLoss::Reduction::mean)
    loss[0] = total / static_cast<double>(detail::rows_counted(labels, d, how));
}

// dL_dlogits = (softmax(logits) - onehot(labels)) * s_n with dL_dloss one value (mean: s_n =
// dL_dloss / rows counted; sum: dL_dloss) or d.n (none: dL_dloss[n]); s_n = 0 for an ignored row,
// so its gradient is 0 (NaN where its softmax is NaN, as torch's).
inline void softmax_xent_backward(const double* logits, const int32_t* labels, const double* dL_dloss,
                                  double* dL_dlogits, const XentDims& d, const XentLoss& how) {
  const double counted = static_cast<double>(detail::rows_counted(labels, d, how));
  for (int64_t n = 0; n < d.n; ++n) {
    const bool ignored = how.ignores(labels[n]);
    double scale = 0.0;
    if (!ignored) {
      switch (how.reduction) {
        case XentLoss::Reduction::mean: scale = dL_dloss[0] / counted; break;
        case XentLoss::Reduction::sum: scale = dL_dloss[0]; break;
        case XentLoss::Reduction::none: scale = dL_dloss[n]; break;
      }
    }
    const double* row = logits + n * d.k;
    double* out = dL_dlogits + n * d.k;
    const double m = detail::row_max(row, d.k);
    const double sum = detail::row_sum_exp_shifted(row, d.k, m);
    for (int64_t j = 0; j < d.k; ++j) {
      const double softmax = std::exp(row[j] - m) / sum;
      const double onehot = (!ignored && j == labels[n]) ? 1.0 : 0.0;
      out[j] = (softmax - onehot) * scale;
    }
  }
}

// The rows and classes of a node reading logits[N,K] (softmax cross-entropy, argmax, accuracy).
inline XentDims xent_dims(const RefNode& node, const parity_value_desc& logits) {
  return XentDims{node.dim(logits, 2, 0), node.dim(logits, 2, 1)};
}

// A SOFTMAX_XENT(_BWD) node's params; a reduction outside the three is a plan the graph would
// not have built.
inline XentLoss xent_loss(const RefNode& node) {
  const parity_softmax_xent_params& p = node.params().softmax_xent;
  XentLoss how;
  switch (p.reduction) {
    case PARITY_REDUCTION_MEAN: how.reduction = XentLoss::Reduction::mean; break;
    case PARITY_REDUCTION_SUM: how.reduction = XentLoss::Reduction::sum; break;
    case PARITY_REDUCTION_NONE: how.reduction = XentLoss::Reduction::none; break;
    default:
      throw Error(ErrorKind::invalid_argument, node.label() + ": reduction " + std::to_string(p.reduction) +
                                                   " is none of 0 (mean), 1 (sum), 2 (none)");
  }
  how.has_ignore_index = p.has_ignore_index != 0;
  how.ignore_index = p.ignore_index;
  return how;
}

// The loss's element count: 1, or N for reduction none.
inline int64_t xent_loss_numel(const XentLoss& how, const XentDims& d) {
  return how.reduction == XentLoss::Reduction::none ? d.n : 1;
}

// Run-time data the graph cannot have validated: labels must name a class, or be the ignore_index.
inline void check_labels(const RefNode& node, int32_t slot, const XentDims& d, const XentLoss& how = XentLoss{}) {
  const parity_value_desc& v = node.in_desc(slot);
  node.expect_numel(v, d.n);
  const int32_t* labels = node.i_in(slot);
  for (int64_t n = 0; n < d.n; ++n)
    if (!how.ignores(labels[n]) && (labels[n] < 0 || labels[n] >= d.k))
      throw Error(ErrorKind::data, node.label() + ": label " + std::to_string(labels[n]) + " at row " +
                                       std::to_string(n) + " of value '" + v.name + "' is outside [0, " +
                                       std::to_string(d.k) + ")" +
                                       (how.has_ignore_index ? " and is not the ignore_index " +
                                                                   std::to_string(how.ignore_index)
                                                             : std::string()));
}

inline void run_softmax_xent(const RefNode& node) {  // logits, labels -> loss[1] (none: [N])
  const XentDims d = xent_dims(node, node.in_desc(0));
  const XentLoss how = xent_loss(node);
  check_labels(node, 1, d, how);
  node.expect_numel(node.out_desc(0), xent_loss_numel(how, d));
  softmax_xent_forward(node.f_in(0), node.i_in(1), d, how, node.f_out(0));
}

inline void run_softmax_xent_bwd(const RefNode& node) {  // logits, labels, dloss[1] (none: [N]) -> dlogits
  const XentDims d = xent_dims(node, node.in_desc(0));
  const XentLoss how = xent_loss(node);
  check_labels(node, 1, d, how);
  node.expect_numel(node.in_desc(2), xent_loss_numel(how, d));
  node.expect_numel(node.out_desc(0), d.n * d.k);
  softmax_xent_backward(node.f_in(0), node.i_in(1), node.f_in(2), node.f_out(0), d, how);
}

// ---------------------------------------------------------------------------------------------
// metrics

// idx[i] = first column holding the maximum of row i of x[rows, cols].
inline void argmax_rows(const double* x, int32_t* idx, int64_t rows, int64_t cols) {
  for (int64_t n = 0; n < rows; ++n) {
    const double* row = x + n * cols;
    int64_t best_at = 0;
    for (int64_t j = 1; j < cols; ++j)
      if (detail::replaces_max(row[j], row[best_at])) best_at = j;
    idx[n] = static_cast<int32_t>(best_at);
  }
}

// Number of rows whose first argmax equals the label.
inline double accuracy_count(const double* logits, const int32_t* labels, const XentDims& d) {
  double correct = 0.0;
  for (int64_t n = 0; n < d.n; ++n) {
    int32_t predicted = 0;
    argmax_rows(logits + n * d.k, &predicted, 1, d.k);
    if (predicted == labels[n]) correct += 1.0;
  }
  return correct;
}

inline void run_argmax(const RefNode& node) {  // x[N,K] -> idx[N]
  const XentDims d = xent_dims(node, node.in_desc(0));
  node.expect_numel(node.out_desc(0), d.n);
  argmax_rows(node.f_in(0), node.i_out(0), d.n, d.k);
}

inline void run_accuracy(const RefNode& node) {  // logits, labels -> correct[1]
  const XentDims d = xent_dims(node, node.in_desc(0));
  check_labels(node, 1, d);
  node.expect_numel(node.out_desc(0), 1);
  node.f_out(0)[0] = accuracy_count(node.f_in(0), node.i_in(1), d);
}

// ---------------------------------------------------------------------------------------------
// add (gradient accumulation)

inline void add_forward(const double* a, const double* b, double* c, int64_t count) {
  for (int64_t i = 0; i < count; ++i) c[i] = a[i] + b[i];
}

// The broadcast of a and b (one rank; each dim the output's or 1) onto c: for every element of c,
// its row-major multi-index read back into a's and b's offsets (0 along a broadcast dim).
template <class Combine>
void broadcast_binary(const RefNode& node, Combine combine) {
  const parity_value_desc& a = node.in_desc(0);
  const parity_value_desc& b = node.in_desc(1);
  const parity_value_desc& c = node.out_desc(0);
  if (a.rank != c.rank || b.rank != c.rank)
    throw Error(ErrorKind::internal, node.label() + ": operands " + kit::shape_str(a.rank, a.dims) + " and " +
                                         kit::shape_str(b.rank, b.dims) + " differ in rank from the output " +
                                         kit::shape_str(c.rank, c.dims));
  for (int32_t d = 0; d < c.rank; ++d)
    if ((a.dims[d] != c.dims[d] && a.dims[d] != 1) || (b.dims[d] != c.dims[d] && b.dims[d] != 1))
      throw Error(ErrorKind::internal, node.label() + ": operands " + kit::shape_str(a.rank, a.dims) + " and " +
                                           kit::shape_str(b.rank, b.dims) + " do not broadcast to " +
                                           kit::shape_str(c.rank, c.dims));
  const double* x = node.f_in(0);
  const double* y = node.f_in(1);
  double* out = node.f_out(0);
  const int64_t count = kit::numel_of(c);
  std::vector<int64_t> index(static_cast<size_t>(c.rank));
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i;
    for (int32_t d = c.rank - 1; d >= 0; --d) {
      index[static_cast<size_t>(d)] = rest % c.dims[d];
      rest /= c.dims[d];
    }
    int64_t offset_a = 0, offset_b = 0;
    for (int32_t d = 0; d < c.rank; ++d) {
      offset_a = offset_a * a.dims[d] + (a.dims[d] == 1 ? 0 : index[static_cast<size_t>(d)]);
      offset_b = offset_b * b.dims[d] + (b.dims[d] == 1 ? 0 : index[static_cast<size_t>(d)]);
    }
    out[i] = combine(x[offset_a], y[offset_b]);
  }
}

inline void run_add(const RefNode& node) {
  const int64_t count = kit::numel_of(node.in_desc(0));
  if (kit::numel_of(node.in_desc(1)) == count && kit::numel_of(node.out_desc(0)) == count) {
    add_forward(node.f_in(0), node.f_in(1), node.f_out(0), count);  // equal shapes (ranks may differ)
    return;
  }
  broadcast_binary(node, [](double a, double b) { return a + b; });
}

inline void run_mul(const RefNode& node) {  // a * b, broadcasting; the float64 product of floats is exact
  broadcast_binary(node, [](double a, double b) { return a * b; });
}

// x -> y summed over params.reduce_sum.dims (kept, size 1): each term added into its output.
inline void run_reduce_sum(const RefNode& node) {
  const parity_value_desc& x = node.in_desc(0);
  const parity_value_desc& y = node.out_desc(0);
  const uint32_t dims = node.params().reduce_sum.dims;
  if (y.rank != x.rank || dims == 0 || (dims >> x.rank) != 0)
    throw Error(ErrorKind::internal, node.label() + ": dims mask " + std::to_string(dims) + " does not reduce " +
                                         kit::shape_str(x.rank, x.dims) + " to " + kit::shape_str(y.rank, y.dims));
  for (int32_t d = 0; d < x.rank; ++d)
    if (y.dims[d] != (((dims >> d) & 1u) ? 1 : x.dims[d]))
      throw Error(ErrorKind::internal, node.label() + ": output " + kit::shape_str(y.rank, y.dims) +
                                           " is not the input " + kit::shape_str(x.rank, x.dims) + " with dims " +
                                           std::to_string(dims) + " summed");
  const double* in = node.f_in(0);
  double* out = node.f_out(0);
  std::fill(out, out + kit::numel_of(y), 0.0);
  const int64_t count = kit::numel_of(x);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i, offset = 0, scale = 1;
    for (int32_t d = x.rank - 1; d >= 0; --d) {
      const int64_t k = rest % x.dims[d];
      rest /= x.dims[d];
      offset += (((dims >> d) & 1u) ? 0 : k) * scale;
      scale *= y.dims[d];
    }
    out[offset] += in[i];
  }
}

// sumsq[1] -> coef[1] = min(1, max_norm / (sqrt(sumsq) + 1e-6)), torch.nn.utils.clip_grad_norm_'s
// factor (a NaN stays NaN).
inline void run_clip_coef(const RefNode& node) {
  node.expect_numel(node.in_desc(0), 1);
  node.expect_numel(node.out_desc(0), 1);
  const double coef = double(node.params().clip_coef.max_norm) / (std::sqrt(node.f_in(0)[0]) + 1e-6);
  node.f_out(0)[0] = coef > 1.0 ? 1.0 : coef;
}

// ---------------------------------------------------------------------------------------------
// fill (the autodiff seed dL/dL = 1): every element of y set to value

inline void fill_forward(double* y, int64_t count, double value) {
  for (int64_t i = 0; i < count; ++i) y[i] = value;
}

inline void run_fill(const RefNode& node) {  // -> y, every element the (float) value widened exactly
  fill_forward(node.f_out(0), kit::numel_of(node.out_desc(0)), node.params().fill.value);
}

// ---------------------------------------------------------------------------------------------
// optimizer steps, updating param and state in place, in the order of operations of torch.optim
// (single-tensor, non-fused path). Hyper-parameters in float64 (the plan's float values widened exactly).

struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;  // AdamW
};
struct SgdHyper {
  double lr, momentum, weight_decay;
  bool nesterov;
};

// torch.optim.lr_scheduler, stepped once per optimizer step: the lr of the 1-based step t
// (parity_lr_schedule in plugin.h: LinearLR warmup, then StepLR or CosineAnnealingLR's closed form).
inline double lr_at_step(double lr, const parity_lr_schedule& s, int64_t step) {
  int64_t k = step - 1;
  if (s.warmup_steps > 0) {
    if (k < s.warmup_steps) {
      const double f = s.warmup_start_factor;
      return lr * (f + (1.0 - f) * double(k) / double(s.warmup_steps));
    }
    k -= s.warmup_steps;
  }
  switch (s.kind) {
    case PARITY_LR_STEP: return lr * std::pow(double(s.gamma), double(k / s.step_size));
    case PARITY_LR_COSINE:
      return double(s.min_lr) + (lr - double(s.min_lr)) * (1.0 + std::cos(M_PI * double(k) / double(s.total_steps))) / 2.0;
    default: return lr;
  }
}

// torch.optim.Adam / AdamW (no amsgrad); step is 1-based, lr already scheduled.
inline void adam_step(double* param, const double* grad, double* m, double* v, int64_t count, int64_t step,
                      const AdamHyper& h) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(h.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(h.beta2, t);
  const double step_size = h.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (int64_t i = 0; i < count; ++i) {
    double g = grad[i];
    if (h.decoupled)
      param[i] *= 1.0 - h.lr * h.weight_decay;
    else
      g += h.weight_decay * param[i];
    m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g;
    v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
    const double denom = std::sqrt(v[i]) / bias_correction2_sqrt + h.eps;
    param[i] -= step_size * m[i] / denom;
  }
}

// torch.optim.SGD, dampening 0, Nesterov optional; velocity starts at 0 and is untouched when
// momentum is 0; lr already scheduled.
inline void sgd_step(double* param, const double* grad, double* velocity, int64_t count, const SgdHyper& h) {
  for (int64_t i = 0; i < count; ++i) {
    const double g = grad[i] + h.weight_decay * param[i];
    if (h.momentum != 0.0) {
      velocity[i] = h.momentum * velocity[i] + g;
      param[i] -= h.lr * (h.nesterov ? g + h.momentum * velocity[i] : velocity[i]);
    } else {
      param[i] -= h.lr * g;
    }
  }
}

inline int32_t optimizer_step_of(const RefNode& node, int32_t slot, const char* counts) {
  node.expect_numel(node.in_desc(slot), 1);
  const int32_t step = node.i_in(slot)[0];
  if (step < 1)
    throw Error(ErrorKind::invalid_argument, node.label() + ": step " + std::to_string(step) + " in value '" +
                                                 node.in_desc(slot).name + "' must be >= 1 (" + counts + ")");
  return step;
}

inline void run_adam_step(const RefNode& node) {  // param, grad, m, v, step[1] — updated in place
  const int64_t count = kit::numel_of(node.in_desc(0));
  for (int32_t slot = 1; slot <= 3; ++slot) node.expect_numel(node.in_desc(slot), count);
  const int32_t step = optimizer_step_of(node, 4, "Adam counts steps from 1");
  const parity_adam_params& p = node.params().adam;
  const AdamHyper h{lr_at_step(p.lr, p.schedule, step), p.beta1, p.beta2, p.eps, p.weight_decay,
                    p.decoupled_weight_decay != 0};
  adam_step(node.f_in(0), node.f_in(1), node.f_in(2), node.f_in(3), count, step, h);
}

inline void run_sgd_step(const RefNode& node) {  // param, grad, velocity, step[1] — updated in place
  const int64_t count = kit::numel_of(node.in_desc(0));
  for (int32_t slot = 1; slot <= 2; ++slot) node.expect_numel(node.in_desc(slot), count);
  const int32_t step = optimizer_step_of(node, 3, "the schedule counts steps from 1");
  const parity_sgd_params& p = node.params().sgd;
  const SgdHyper h{lr_at_step(p.lr, p.schedule, step), p.momentum, p.weight_decay, p.nesterov != 0};
  sgd_step(node.f_in(0), node.f_in(1), node.f_in(2), count, h);
}

// ---------------------------------------------------------------------------------------------
// batchnorm2d: per channel c over its n = N*H*W elements of x[N,C,H,W]. Two-pass statistics in
// float64 (the mean, then the squared deviations from it); the running statistics in place.

struct BatchnormDims {
  int64_t n, c, hw;  // batch, channels, H*W
  int64_t count() const { return n * hw; }
  int64_t at(int64_t b, int64_t ch, int64_t i) const { return (b * c + ch) * hw + i; }
};

struct BatchnormHyper {
  double eps, momentum;
  bool onnx;  // the ONNX convention (parity_batchnorm_convention)
};

// y, the batch mean and the inverse std (1 / sqrt(biased var + eps)) per channel, and the
// running statistics by the convention: PyTorch r = m * batch + (1 - m) r with the unbiased
// variance; ONNX r = m r + (1 - m) batch with the biased one.
inline void batchnorm_train_forward(const double* x, const double* gamma, const double* beta, double* running_mean,
                                    double* running_var, double* y, double* saved_mean, double* saved_invstd,
                                    const BatchnormDims& d, const BatchnormHyper& h) {
  const double count = static_cast<double>(d.count());
  for (int64_t ch = 0; ch < d.c; ++ch) {
    double sum = 0.0;
    for (int64_t b = 0; b < d.n; ++b)
      for (int64_t i = 0; i < d.hw; ++i) sum += x[d.at(b, ch, i)];
    const double mean = sum / count;
    double m2 = 0.0;
    for (int64_t b = 0; b < d.n; ++b)
      for (int64_t i = 0; i < d.hw; ++i) m2 += (x[d.at(b, ch, i)] - mean) * (x[d.at(b, ch, i)] - mean);
    const double var = m2 / count;
    const double invstd = 1.0 / std::sqrt(var + h.eps);
    for (int64_t b = 0; b < d.n; ++b)
      for (int64_t i = 0; i < d.hw; ++i)
        y[d.at(b, ch, i)] = (x[d.at(b, ch, i)] - mean) * invstd * gamma[ch] + beta[ch];
    saved_mean[ch] = mean;
    saved_invstd[ch] = invstd;
    if (h.onnx) {
      running_mean[ch] = h.momentum * running_mean[ch] + (1.0 - h.momentum) * mean;
      running_var[ch] = h.momentum * running_var[ch] + (1.0 - h.momentum) * var;
    } else {
      running_mean[ch] = h.momentum * mean + (1.0 - h.momentum) * running_mean[ch];
      running_var[ch] = h.momentum * (m2 / (count - 1.0)) + (1.0 - h.momentum) * running_var[ch];
    }
  }
}

inline void batchnorm_eval_forward(const double* x, const double* gamma, const double* beta, const double* running_mean,
                                   const double* running_var, double* y, const BatchnormDims& d, double eps) {
  for (int64_t ch = 0; ch < d.c; ++ch) {
    const double invstd = 1.0 / std::sqrt(running_var[ch] + eps);
    for (int64_t b = 0; b < d.n; ++b)
      for (int64_t i = 0; i < d.hw; ++i)
        y[d.at(b, ch, i)] = (x[d.at(b, ch, i)] - running_mean[ch]) * invstd * gamma[ch] + beta[ch];
  }
}

// training: mean, stat = the saved mean and inverse std, and x_hat's statistics depend on x:
//   dx = gamma invstd (dy - mean(dy) - x_hat mean(dy x_hat));
// evaluation: mean, stat = the running mean and variance (constants): dx = gamma invstd dy.
// dgamma = sum dy x_hat, dbeta = sum dy either way.
inline void batchnorm_backward(const double* x, const double* dy, const double* gamma, const double* mean,
                               const double* stat, double* dx, double* dgamma, double* dbeta, const BatchnormDims& d,
                               bool training, double eps) {
  const double count = static_cast<double>(d.count());
  for (int64_t ch = 0; ch < d.c; ++ch) {
    const double invstd = training ? stat[ch] : 1.0 / std::sqrt(stat[ch] + eps);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t b = 0; b < d.n; ++b)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t at = d.at(b, ch, i);
        sum_dy += dy[at];
        sum_dy_xhat += dy[at] * (x[at] - mean[ch]) * invstd;
      }
    for (int64_t b = 0; b < d.n; ++b)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t at = d.at(b, ch, i);
        const double x_hat = (x[at] - mean[ch]) * invstd;
        dx[at] = training ? gamma[ch] * invstd * (dy[at] - sum_dy / count - x_hat * sum_dy_xhat / count)
                          : gamma[ch] * invstd * dy[at];
      }
    dgamma[ch] = sum_dy_xhat;
    dbeta[ch] = sum_dy;
  }
}

// x [N,C,H,W] (input 0) and the [C] operands `channel_inputs` (input slots) and outputs.
inline BatchnormDims batchnorm_dims(const RefNode& node, std::initializer_list<int32_t> channel_inputs,
                                    std::initializer_list<int32_t> channel_outputs) {
  const parity_value_desc& x = node.in_desc(0);
  const BatchnormDims d{node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2) * node.dim(x, 4, 3)};
  for (int32_t slot : channel_inputs) node.expect_numel(node.in_desc(slot), d.c);
  for (int32_t slot : channel_outputs) node.expect_numel(node.out_desc(slot), d.c);
  return d;
}

inline void run_batchnorm2d_train(const RefNode& node) {  // x, gamma, beta, running_mean, running_var -> y, mean, invstd
  const BatchnormDims d = batchnorm_dims(node, {1, 2, 3, 4}, {1, 2});
  node.expect_numel(node.out_desc(0), d.n * d.c * d.hw);
  const parity_batchnorm2d_params& p = node.params().batchnorm2d;
  if (p.convention != PARITY_BATCHNORM_ONNX && d.count() < 2)
    throw Error(ErrorKind::invalid_argument, node.label() + ": training needs more than 1 value per channel (N*H*W = " +
                                                 std::to_string(d.count()) + ") for the unbiased running variance");
  batchnorm_train_forward(node.f_in(0), node.f_in(1), node.f_in(2), node.f_in(3), node.f_in(4), node.f_out(0),
                          node.f_out(1), node.f_out(2), d,
                          BatchnormHyper{p.eps, p.momentum, p.convention == PARITY_BATCHNORM_ONNX});
}

inline void run_batchnorm2d_eval(const RefNode& node) {  // x, gamma, beta, running_mean, running_var -> y
  const BatchnormDims d = batchnorm_dims(node, {1, 2, 3, 4}, {});
  node.expect_numel(node.out_desc(0), d.n * d.c * d.hw);
  batchnorm_eval_forward(node.f_in(0), node.f_in(1), node.f_in(2), node.f_in(3), node.f_in(4), node.f_out(0), d,
                         node.params().batchnorm2d.eps);
}

inline void run_batchnorm2d_bwd(const RefNode& node) {  // x, dy, gamma, mean, stat -> dx, dgamma, dbeta
  const BatchnormDims d = batchnorm_dims(node, {2, 3, 4}, {1, 2});
  node.expect_numel(node.in_desc(1), d.n * d.c * d.hw);
  node.expect_numel(node.out_desc(0), d.n * d.c * d.hw);
  const parity_batchnorm2d_params& p = node.params().batchnorm2d;
  batchnorm_backward(node.f_in(0), node.f_in(1), node.f_in(2), node.f_in(3), node.f_in(4), node.f_out(0),
                     node.f_out(1), node.f_out(2), d, p.training != 0, p.eps);
}

// softmax and log_softmax over one dim, seen as lanes: outer * inner lanes of k elements, `inner`
// apart (dims before the dim, the dim, dims after). The maximum is subtracted first, as torch
// does; a lane of -inf only gives NaN (torch too).

struct LaneDims {
  int64_t outer, k, inner;
};

// The lanes of a SOFTMAX-family node's value v: params.softmax.dim (has_dim == 0: 1), negative
// counting from the end, must name one of v's dims.
inline LaneDims softmax_lanes(const RefNode& node, const parity_value_desc& v) {
  const parity_softmax_params& p = node.params().softmax;
  const int32_t wanted = p.has_dim ? p.dim : 1;
  const int32_t dim = wanted < 0 ? wanted + v.rank : wanted;
  if (dim < 0 || dim >= v.rank)
    throw Error(ErrorKind::shape, node.label() + ": dim " + std::to_string(wanted) + " is outside the " +
                                      std::to_string(v.rank) + " dims of value '" + v.name + "'");
  LaneDims l{1, v.dims[dim], 1};
  for (int32_t i = 0; i < dim; ++i) l.outer *= v.dims[i];
  for (int32_t i = dim + 1; i < v.rank; ++i) l.inner *= v.dims[i];
  return l;
}

// y = softmax(x) (log: log_softmax(x)) along each lane.
inline void softmax_forward(const double* x, double* y, const LaneDims& d, bool log) {
  for (int64_t o = 0; o < d.outer; ++o)
    for (int64_t j = 0; j < d.inner; ++j) {
      const int64_t base = o * d.k * d.inner + j;
      double m = x[base];
      for (int64_t i = 1; i < d.k; ++i) {
        const double v = x[base + i * d.inner];
        if (v > m || std::isnan(v)) m = v;
      }
      double sum = 0.0;
      for (int64_t i = 0; i < d.k; ++i) sum += std::exp(x[base + i * d.inner] - m);
      const double lse = std::log(sum);
      for (int64_t i = 0; i < d.k; ++i) {
        const double z = x[base + i * d.inner] - m;
        y[base + i * d.inner] = log ? z - lse : std::exp(z - lse);
      }
    }
}

// From the forward output y: softmax: dL_dx = y * (dL_dy - sum(dL_dy * y));
// log_softmax: dL_dx = dL_dy - exp(y) * sum(dL_dy), sums along the lane.
inline void softmax_backward(const double* y, const double* dL_dy, double* dL_dx, const LaneDims& d, bool log) {
  for (int64_t o = 0; o < d.outer; ++o)
    for (int64_t j = 0; j < d.inner; ++j) {
      const int64_t base = o * d.k * d.inner + j;
      double sum = 0.0;
      for (int64_t i = 0; i < d.k; ++i) {
        const int64_t e = base + i * d.inner;
        sum += log ? dL_dy[e] : dL_dy[e] * y[e];
      }
      for (int64_t i = 0; i < d.k; ++i) {
        const int64_t e = base + i * d.inner;
        dL_dx[e] = log ? dL_dy[e] - std::exp(y[e]) * sum : y[e] * (dL_dy[e] - sum);
      }
    }
}

inline void run_softmax_family_forward(const RefNode& node, bool log) {
  node.elementwise_count(1);
  softmax_forward(node.f_in(0), node.f_out(0), softmax_lanes(node, node.in_desc(0)), log);
}

inline void run_softmax_family_backward(const RefNode& node, bool log) {  // y, dy -> dx
  node.elementwise_count(2);
  softmax_backward(node.f_in(0), node.f_in(1), node.f_out(0), softmax_lanes(node, node.in_desc(0)), log);
}

inline void run_softmax(const RefNode& node) { run_softmax_family_forward(node, false); }
inline void run_log_softmax(const RefNode& node) { run_softmax_family_forward(node, true); }
inline void run_softmax_bwd(const RefNode& node) { run_softmax_family_backward(node, false); }
inline void run_log_softmax_bwd(const RefNode& node) { run_softmax_family_backward(node, true); }

// ---------------------------------------------------------------------------------------------
// concat along dim 1 and its backward, SLICE: a value of dims [N, C, rest...] is N blocks of
// C * rest contiguous elements; dim 1 picks `C` rows of `rest` within each block.

// The elements after dim 1 of v (1 for [N,F]).
inline int64_t elements_after_dim1(const parity_value_desc& v) {
  int64_t rest = 1;
  for (int32_t i = 2; i < v.rank; ++i) rest *= v.dims[i];
  return rest;
}

// y[n, offset + c, ...] = x[n, c, ...] for c < channels; y has y_channels along dim 1.
inline void copy_into_dim1(const double* x, double* y, int64_t batch, int64_t channels, int64_t offset,
                           int64_t y_channels, int64_t rest) {
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t r = 0; r < rest; ++r) y[(n * y_channels + offset + c) * rest + r] = x[(n * channels + c) * rest + r];
}

// y[n, c, ...] = x[n, start + c, ...] for c < length; x has x_channels along dim 1.
inline void copy_from_dim1(const double* x, double* y, int64_t batch, int64_t x_channels, int64_t start,
                           int64_t length, int64_t rest) {
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c = 0; c < length; ++c)
      for (int64_t r = 0; r < rest; ++r) y[(n * length + c) * rest + r] = x[(n * x_channels + start + c) * rest + r];
}

inline void run_concat(const RefNode& node) {  // x_0 .. x_{k-1} -> y
  const parity_value_desc& y = node.out_desc(0);
  if (y.rank < 2) throw Error(ErrorKind::internal, node.label() + ": output '" + y.name + "' must have rank >= 2");
  const int64_t batch = y.dims[0], rest = elements_after_dim1(y);
  int64_t offset = 0;
  for (int32_t i = 0; i < node.desc().num_inputs; ++i) {
    const parity_value_desc& x = node.in_desc(i);
    const int64_t channels = x.rank >= 2 ? x.dims[1] : 0;
    node.expect_numel(x, batch * channels * rest);
    if (offset + channels > y.dims[1])
      throw Error(ErrorKind::internal, node.label() + ": the inputs hold more than the output's dim 1");
    copy_into_dim1(node.f_in(i), node.f_out(0), batch, channels, offset, y.dims[1], rest);
    offset += channels;
  }
  if (offset != y.dims[1])
    throw Error(ErrorKind::internal, node.label() + ": the inputs' dim 1 sum to " + std::to_string(offset) +
                                         ", the output's is " + std::to_string(y.dims[1]));
}

inline void run_slice(const RefNode& node) {  // x -> y = x[:, start : start + length]
  const parity_value_desc& x = node.in_desc(0);
  const parity_slice_params& p = node.params().slice;
  if (x.rank < 2 || p.start < 0 || p.length < 1 || int64_t{p.start} + p.length > x.dims[1])
    throw Error(ErrorKind::shape, node.label() + ": start " + std::to_string(p.start) + " and length " +
                                      std::to_string(p.length) + " do not lie inside dim 1 of value '" + x.name + "' " +
                                      kit::shape_str(x.rank, x.dims));
  const int64_t rest = elements_after_dim1(x);
  node.expect_numel(node.out_desc(0), x.dims[0] * p.length * rest);
  copy_from_dim1(node.f_in(0), node.f_out(0), x.dims[0], x.dims[1], p.start, p.length, rest);
}

// ---------------------------------------------------------------------------------------------
// cast (ABI 9): y = x in params.cast.dtype, between f32, bf16 and f16, by arithmetic on doubles
// (ref shares no code with ops/kernels/half.h, which the backends use): the value is rounded to
// the format's grid with nearbyint (round to nearest even, the default FP mode), then its bits
// are assembled from exponent and significand. An f32 value is its float first (ref's double
// rounded to float32: what the value is as its dtype). NaNs follow plugin.h's bit rules, the
// only part defined on bits rather than values.

namespace detail {

struct HalfFormat {
  int mantissa_bits;  // stored significand bits: 7 (bf16), 10 (f16)
  int min_exponent;   // of the smallest normal: -126, -14
  double max_finite;  // 0x1.FEp127, 65504
};
constexpr HalfFormat kBf16{7, -126, 0x1.FEp127};
constexpr HalfFormat kF16{10, -14, 65504.0};

inline const HalfFormat& format_of(parity_dtype dtype) { return dtype == PARITY_BF16 ? kBf16 : kF16; }

// A finite v rounded to the format's values (subnormals included), ties to even; beyond the
// largest finite value by half an ulp or more (the tie goes to the even 2^(emax+1)): infinity.
inline double round_to_format(double v, const HalfFormat& f) {
  if (v == 0.0) return v;
  const double a = std::fabs(v);
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): the leading bit's exponent is e - 1
  const double ulp = std::ldexp(1.0, std::max(e - 1, f.min_exponent) - f.mantissa_bits);
  double r = std::nearbyint(a / ulp) * ulp;  // a / ulp and r * ulp are exact (powers of two)
  if (r > f.max_finite) r = HUGE_VAL;
  return std::copysign(r, v);
}

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float float_of_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The bits of value r, already on the format's grid (or infinite), with the sign of r.
inline uint16_t half_bits_of(double r, parity_dtype dtype) {
  if (dtype == PARITY_BF16) return static_cast<uint16_t>(float_bits(static_cast<float>(r)) >> 16);  // exact
  const uint16_t sign = std::signbit(r) ? 0x8000 : 0;
  const double a = std::fabs(r);
  if (std::isinf(a)) return sign | 0x7C00;
  if (a < 0x1p-14) return static_cast<uint16_t>(sign | static_cast<uint16_t>(a * 0x1p24));  // subnormal units
  int e = 0;
  std::frexp(a, &e);
  const auto significand = static_cast<uint16_t>(std::ldexp(a, 11 - e));  // in [1024, 2048)
  return static_cast<uint16_t>(sign | (e - 1 + 15) << 10 | (significand - 1024));
}

// A NaN given by its float32 bits, in the half dtype: quiet, sign and top payload bits kept.
inline uint16_t half_nan_bits(uint32_t x, parity_dtype dtype) {
  if (dtype == PARITY_BF16) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  return static_cast<uint16_t>(((x >> 16) & 0x8000u) | 0x7E00u | ((x >> 13) & 0x03FFu));
}

// A half value as a float (exact). An f16 NaN becomes a quiet f32 NaN with its payload; a bf16
// value is its bits shifted (plugin.h).
inline float float_of_half(uint16_t h, parity_dtype dtype) {
  if (dtype == PARITY_BF16) return float_of_bits(static_cast<uint32_t>(h) << 16);
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  if (exponent == 0x1F)
    return float_of_bits(sign | 0x7F800000u | (mantissa ? 0x00400000u | static_cast<uint32_t>(mantissa) << 13 : 0u));
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
  return static_cast<float>(sign ? -magnitude : magnitude);
}

inline uint16_t float_to_half(float x, parity_dtype dtype) {
  if (std::isnan(x)) return half_nan_bits(float_bits(x), dtype);
  return half_bits_of(round_to_format(static_cast<double>(x), format_of(dtype)), dtype);
}

// A float64 result rounded once to the half dtype (the ops that run in bf16 or f16 compute in
// float64 on the widened values and round here); a NaN keeps its sign as plugin.h's NaN rules say.
inline uint16_t double_to_half(double v, parity_dtype dtype) {
  if (std::isnan(v)) return half_nan_bits(float_bits(static_cast<float>(v)), dtype);
  if (std::isinf(v)) return half_bits_of(v, dtype);
  return half_bits_of(round_to_format(v, format_of(dtype)), dtype);
}

}  // namespace detail

inline void run_cast(const RefNode& node) {
  const parity_value_desc& x = node.in_desc(0);
  const parity_value_desc& y = node.out_desc(0);
  const int64_t count = kit::numel_of(x);
  node.expect_numel(y, count);
  if (node.params().cast.dtype != static_cast<int32_t>(y.dtype))
    throw Error(ErrorKind::internal, node.label() + ": params.cast.dtype " + std::to_string(node.params().cast.dtype) +
                                         " is not y's dtype " + kit::dtype_name(y.dtype));
  if (x.dtype == y.dtype) {  // the identity is a copy: ref's double, or the bits
    if (x.dtype == PARITY_F32) std::copy_n(node.f_in(0), count, node.f_out(0));
    else std::copy_n(node.h_in(0, x.dtype), count, node.h_out(0, y.dtype));
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    const float v = x.dtype == PARITY_F32 ? static_cast<float>(node.f_in(0)[i])
                                          : detail::float_of_half(node.h_in(0, x.dtype)[i], x.dtype);
    if (y.dtype == PARITY_F32) node.f_out(0)[i] = static_cast<double>(v);
    else node.h_out(0, y.dtype)[i] = detail::float_to_half(v, y.dtype);
  }
}

}  // namespace parity::ref
