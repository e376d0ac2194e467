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

#include <cmath>
#include <cstdint>
#include <string>

#include "backends/kit/value_desc.h"
#include "backends/ref/ref_node.h"
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
// conv2d, NCHW, cross-correlation with zero padding on both sides:
// x[n,c,h,w], w[k,c,r,s], b[k], y[n,k,p,q] with p = (h + 2 pad_h - r) / stride_h + 1, and
// y[n,k,p,q] = b[k] + sum_{c,r,s} x[n, c, p*sh - ph + r, q*sw - pw + s] * w[k,c,r,s],
// terms whose input position falls in the zero padding left out. Both backward passes walk the
// same loop nest as the forward and scatter/accumulate, so each is visibly its transpose.

struct Conv2dDims {
  int64_t n, c, h, w;        // input
  int64_t k, r, s;           // filters: out channels, kernel height, kernel width
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t p, q;              // output height, width
};

// Fills p and q from the other fields.
inline Conv2dDims make_conv2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                                   int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
  Conv2dDims d{n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, 0, 0};
  d.p = (h + 2 * pad_h - r) / stride_h + 1;
  d.q = (w + 2 * pad_w - s) / stride_w + 1;
  return d;
}

inline void conv2d_forward(const double* x, const double* w, const double* b, double* y, const Conv2dDims& d) {
  using detail::at4;
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t k = 0; k < d.k; ++k)
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          double acc = b[k];
          for (int64_t c = 0; c < d.c; ++c)
            for (int64_t r = 0; r < d.r; ++r) {
              const int64_t ih = p * d.stride_h - d.pad_h + r;
              if (ih < 0 || ih >= d.h) continue;
              for (int64_t s = 0; s < d.s; ++s) {
                const int64_t iw = q * d.stride_w - d.pad_w + s;
                if (iw < 0 || iw >= d.w) continue;
                acc += x[at4(n, c, ih, iw, d.c, d.h, d.w)] * w[at4(k, c, r, s, d.c, d.r, d.s)];
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
          for (int64_t c = 0; c < d.c; ++c)
            for (int64_t r = 0; r < d.r; ++r) {
              const int64_t ih = p * d.stride_h - d.pad_h + r;
              if (ih < 0 || ih >= d.h) continue;
              for (int64_t s = 0; s < d.s; ++s) {
                const int64_t iw = q * d.stride_w - d.pad_w + s;
                if (iw < 0 || iw >= d.w) continue;
                dL_dx[at4(n, c, ih, iw, d.c, d.h, d.w)] += g * w[at4(k, c, r, s, d.c, d.r, d.s)];
              }
            }
        }
}

inline void conv2d_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
                                   const Conv2dDims& d) {
  using detail::at4;
  detail::fill_zero(dL_dw, d.k * d.c * d.r * d.s);
  detail::fill_zero(dL_db, d.k);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t k = 0; k < d.k; ++k)
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          const double g = dL_dy[at4(n, k, p, q, d.k, d.p, d.q)];
          dL_db[k] += g;
          for (int64_t c = 0; c < d.c; ++c)
            for (int64_t r = 0; r < d.r; ++r) {
              const int64_t ih = p * d.stride_h - d.pad_h + r;
              if (ih < 0 || ih >= d.h) continue;
              for (int64_t s = 0; s < d.s; ++s) {
                const int64_t iw = q * d.stride_w - d.pad_w + s;
                if (iw < 0 || iw >= d.w) continue;
                dL_dw[at4(k, c, r, s, d.c, d.r, d.s)] += g * x[at4(n, c, ih, iw, d.c, d.h, d.w)];
              }
            }
        }
}

// The dims of a conv2d node from its x[N,C,H,W] and w[K,C,R,S] (for the backwards, dx and dw).
inline Conv2dDims conv_dims(const RefNode& node, const parity_value_desc& x, const parity_value_desc& w) {
  const parity_conv2d_params& p = node.params().conv2d;
  return make_conv2d_dims(node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3),
                          node.dim(w, 4, 0), node.dim(w, 4, 2), node.dim(w, 4, 3), p.stride_h, p.stride_w,
                          p.pad_h, p.pad_w);
}

inline void run_conv2d(const RefNode& node) {  // x, w, b -> y
  const Conv2dDims d = conv_dims(node, node.in_desc(0), node.in_desc(1));
  node.expect_numel(node.in_desc(2), d.k);
  node.expect_numel(node.out_desc(0), d.n * d.k * d.p * d.q);
  conv2d_forward(node.f_in(0), node.f_in(1), node.f_in(2), node.f_out(0), d);
}

inline void run_conv2d_bwd_data(const RefNode& node) {  // dy, w -> dx
  const Conv2dDims d = conv_dims(node, node.out_desc(0), node.in_desc(1));
  node.expect_numel(node.in_desc(0), d.n * d.k * d.p * d.q);
  conv2d_backward_data(node.f_in(0), node.f_in(1), node.f_out(0), d);
}

inline void run_conv2d_bwd_weight(const RefNode& node) {  // x, dy -> dw, db
  const Conv2dDims d = conv_dims(node, node.in_desc(0), node.out_desc(0));
  node.expect_numel(node.in_desc(1), d.n * d.k * d.p * d.q);
  node.expect_numel(node.out_desc(1), d.k);
  conv2d_backward_weight(node.f_in(0), node.f_in(1), node.f_out(0), node.f_out(1), d);
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
// maxpool2d without padding, floor division: p = (h - kernel_h) / stride_h + 1. idx holds the
// flat index h*W+w of the first maximum (row-major window order) in its (n,c) plane.

struct Maxpool2dDims {
  int64_t n, c, h, w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t p, q;
};

inline Maxpool2dDims make_maxpool2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kernel_h,
                                         int64_t kernel_w, int64_t stride_h, int64_t stride_w) {
  Maxpool2dDims d{n, c, h, w, kernel_h, kernel_w, stride_h, stride_w, 0, 0};
  d.p = (h - kernel_h) / stride_h + 1;
  d.q = (w - kernel_w) / stride_w + 1;
  return d;
}

inline void maxpool2d_forward(const double* x, double* y, int32_t* idx, const Maxpool2dDims& d) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      const double* plane = x + (n * d.c + c) * d.h * d.w;
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          int64_t best_at = (p * d.stride_h) * d.w + q * d.stride_w;
          double best = plane[best_at];
          for (int64_t r = 0; r < d.kernel_h; ++r)
            for (int64_t s = 0; s < d.kernel_w; ++s) {
              const int64_t at = (p * d.stride_h + r) * d.w + (q * d.stride_w + s);
              if (detail::replaces_max(plane[at], best)) {
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
          plane[idx[out]] += dL_dy[out];  // += : overlapping windows can pick the same element
        }
    }
}

// The dims of a maxpool2d node from its x[N,C,H,W] (for the backward, dx).
inline Maxpool2dDims pool_dims(const RefNode& node, const parity_value_desc& x) {
  const parity_maxpool2d_params& p = node.params().maxpool2d;
  return make_maxpool2d_dims(node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2), node.dim(x, 4, 3),
                             p.kernel_h, p.kernel_w, p.stride_h, p.stride_w);
}

// Pooling indices may come from the caller (an INPUT in an op-level check): each must lie in its plane.
inline void check_pool_indices(const RefNode& node, int32_t slot, const Maxpool2dDims& d) {
  const parity_value_desc& v = node.in_desc(slot);
  node.expect_numel(v, d.n * d.c * d.p * d.q);
  const int32_t* idx = node.i_in(slot);
  for (int64_t i = 0; i < d.n * d.c * d.p * d.q; ++i)
    if (idx[i] < 0 || idx[i] >= d.h * d.w)
      throw Error(ErrorKind::data, node.label() + ": index " + std::to_string(idx[i]) + " at element " +
                                       std::to_string(i) + " of value '" + v.name + "' is outside its " +
                                       std::to_string(d.h) + "x" + std::to_string(d.w) + " plane");
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
// reshape (a copy; its backward is the same copy in the other direction)

inline void reshape_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i];
}

inline void run_reshape(const RefNode& node) {
  const int64_t count = kit::numel_of(node.in_desc(0));
  node.expect_numel(node.out_desc(0), count);
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
// softmax cross-entropy over rows, mean over the batch: logits[n,k], labels[n] in [0, k). Each
// row is shifted by its maximum before exp, so logits of any magnitude neither overflow nor lose
// the label's term: -log softmax(l)[y] = log sum exp(l - m) - (l[y] - m).

struct XentDims {
  int64_t n, k;
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

}  // namespace detail

inline double softmax_xent_forward(const double* logits, const int32_t* labels, const XentDims& d) {
  double total = 0.0;
  for (int64_t n = 0; n < d.n; ++n) {
    const double* row = logits + n * d.k;
    const double m = detail::row_max(row, d.k);
    total += std::log(detail::row_sum_exp_shifted(row, d.k, m)) - (row[labels[n]] - m);
  }
  return total / static_cast<double>(d.n);
}

// dL_dlogits = (softmax(logits) - onehot(labels)) * dL_dloss / n.
inline void softmax_xent_backward(const double* logits, const int32_t* labels, double dL_dloss, double* dL_dlogits,
                                  const XentDims& d) {
  const double scale = dL_dloss / static_cast<double>(d.n);
  for (int64_t n = 0; n < d.n; ++n) {
    const double* row = logits + n * d.k;
    double* out = dL_dlogits + n * d.k;
    const double m = detail::row_max(row, d.k);
    const double sum = detail::row_sum_exp_shifted(row, d.k, m);
    for (int64_t j = 0; j < d.k; ++j) {
      const double softmax = std::exp(row[j] - m) / sum;
      const double onehot = (j == labels[n]) ? 1.0 : 0.0;
      out[j] = (softmax - onehot) * scale;
    }
  }
}

// The rows and classes of a node reading logits[N,K] (softmax cross-entropy, argmax, accuracy).
inline XentDims xent_dims(const RefNode& node, const parity_value_desc& logits) {
  return XentDims{node.dim(logits, 2, 0), node.dim(logits, 2, 1)};
}

// Run-time data the graph cannot have validated: labels must name a class.
inline void check_labels(const RefNode& node, int32_t slot, const XentDims& d) {
  const parity_value_desc& v = node.in_desc(slot);
  node.expect_numel(v, d.n);
  const int32_t* labels = node.i_in(slot);
  for (int64_t n = 0; n < d.n; ++n)
    if (labels[n] < 0 || labels[n] >= d.k)
      throw Error(ErrorKind::data, node.label() + ": label " + std::to_string(labels[n]) + " at row " +
                                       std::to_string(n) + " of value '" + v.name + "' is outside [0, " +
                                       std::to_string(d.k) + ")");
}

inline void run_softmax_xent(const RefNode& node) {  // logits, labels -> loss[1]
  const XentDims d = xent_dims(node, node.in_desc(0));
  check_labels(node, 1, d);
  node.expect_numel(node.out_desc(0), 1);
  node.f_out(0)[0] = softmax_xent_forward(node.f_in(0), node.i_in(1), d);
}

inline void run_softmax_xent_bwd(const RefNode& node) {  // logits, labels, dloss[1] -> dlogits
  const XentDims d = xent_dims(node, node.in_desc(0));
  check_labels(node, 1, d);
  node.expect_numel(node.in_desc(2), 1);
  node.expect_numel(node.out_desc(0), d.n * d.k);
  softmax_xent_backward(node.f_in(0), node.i_in(1), node.f_in(2)[0], node.f_out(0), d);
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

inline void run_add(const RefNode& node) {
  const int64_t count = kit::numel_of(node.in_desc(0));
  node.expect_numel(node.in_desc(1), count);
  node.expect_numel(node.out_desc(0), count);
  add_forward(node.f_in(0), node.f_in(1), node.f_out(0), count);
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
};
struct SgdHyper {
  double lr, momentum, weight_decay;
};

// torch.optim.Adam (no amsgrad); step is 1-based.
inline void adam_step(double* param, const double* grad, double* m, double* v, int64_t count, int64_t step,
                      const AdamHyper& h) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(h.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(h.beta2, t);
  const double step_size = h.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (int64_t i = 0; i < count; ++i) {
    const double g = grad[i] + h.weight_decay * param[i];
    m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g;
    v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
    const double denom = std::sqrt(v[i]) / bias_correction2_sqrt + h.eps;
    param[i] -= step_size * m[i] / denom;
  }
}

// torch.optim.SGD, dampening 0, no nesterov; velocity starts at 0 and is untouched when momentum is 0.
inline void sgd_step(double* param, const double* grad, double* velocity, int64_t count, const SgdHyper& h) {
  for (int64_t i = 0; i < count; ++i) {
    const double g = grad[i] + h.weight_decay * param[i];
    if (h.momentum != 0.0) {
      velocity[i] = h.momentum * velocity[i] + g;
      param[i] -= h.lr * velocity[i];
    } else {
      param[i] -= h.lr * g;
    }
  }
}

inline void run_adam_step(const RefNode& node) {  // param, grad, m, v, step[1] — updated in place
  const int64_t count = kit::numel_of(node.in_desc(0));
  for (int32_t slot = 1; slot <= 3; ++slot) node.expect_numel(node.in_desc(slot), count);
  node.expect_numel(node.in_desc(4), 1);
  const int32_t step = node.i_in(4)[0];
  if (step < 1)
    throw Error(ErrorKind::invalid_argument, node.label() + ": step " + std::to_string(step) + " in value '" +
                                                 node.in_desc(4).name + "' must be >= 1 (Adam counts steps from 1)");
  const parity_adam_params& p = node.params().adam;
  const AdamHyper h{p.lr, p.beta1, p.beta2, p.eps, p.weight_decay};
  adam_step(node.f_in(0), node.f_in(1), node.f_in(2), node.f_in(3), count, step, h);
}

inline void run_sgd_step(const RefNode& node) {  // param, grad, velocity — updated in place
  const int64_t count = kit::numel_of(node.in_desc(0));
  for (int32_t slot = 1; slot <= 2; ++slot) node.expect_numel(node.in_desc(slot), count);
  const parity_sgd_params& p = node.params().sgd;
  const SgdHyper h{p.lr, p.momentum, p.weight_decay};
  sgd_step(node.f_in(0), node.f_in(1), node.f_in(2), count, h);
}

// ---------------------------------------------------------------------------------------------
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

}  // namespace parity::ref
