// backends/ref/ref_ops.cpp — the float64 oracle's op math: each op written as the textbook
// nested loop, backward next to forward, with no blocking, vectorisation or shared kernels.
#include "backends/ref/ref_ops.h"

#include <cmath>

namespace parity::ref {

namespace {

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

}  // namespace

Conv2dDims make_conv2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                            int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
  Conv2dDims d{n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, 0, 0};
  d.p = (h + 2 * pad_h - r) / stride_h + 1;
  d.q = (w + 2 * pad_w - s) / stride_w + 1;
  return d;
}

Maxpool2dDims make_maxpool2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kernel_h,
                                  int64_t kernel_w, int64_t stride_h, int64_t stride_w) {
  Maxpool2dDims d{n, c, h, w, kernel_h, kernel_w, stride_h, stride_w, 0, 0};
  d.p = (h - kernel_h) / stride_h + 1;
  d.q = (w - kernel_w) / stride_w + 1;
  return d;
}

// ---------------------------------------------------------------------------------------------
// conv2d: y[n,k,p,q] = b[k] + sum_{c,r,s} x[n, c, p*sh - ph + r, q*sw - pw + s] * w[k,c,r,s],
// terms whose input position falls in the zero padding left out. Both backward passes walk the
// same loop nest as the forward and scatter/accumulate, so each is visibly its transpose.

void conv2d_forward(const double* x, const double* w, const double* b, double* y, const Conv2dDims& d) {
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

void conv2d_backward_data(const double* dL_dy, const double* w, double* dL_dx, const Conv2dDims& d) {
  fill_zero(dL_dx, d.n * d.c * d.h * d.w);
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

void conv2d_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
                            const Conv2dDims& d) {
  fill_zero(dL_dw, d.k * d.c * d.r * d.s);
  fill_zero(dL_db, d.k);
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

// ---------------------------------------------------------------------------------------------
// relu

void relu_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = std::isnan(x[i]) ? x[i] : (x[i] > 0.0 ? x[i] : 0.0);
}

void relu_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = y[i] > 0.0 ? dL_dy[i] : 0.0;
}

// ---------------------------------------------------------------------------------------------
// sigmoid

void sigmoid_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = 1.0 / (1.0 + std::exp(-x[i]));
}

void sigmoid_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dL_dx[i] = dL_dy[i] * y[i] * (1.0 - y[i]);
}

// ---------------------------------------------------------------------------------------------
// maxpool2d

void maxpool2d_forward(const double* x, double* y, int32_t* idx, const Maxpool2dDims& d) {
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
              if (replaces_max(plane[at], best)) {
                best = plane[at];
                best_at = at;
              }
            }
          const int64_t out = at4(n, c, p, q, d.c, d.p, d.q);
          y[out] = best;
          idx[out] = static_cast<int32_t>(best_at);
        }
    }
}

void maxpool2d_backward(const double* dL_dy, const int32_t* idx, double* dL_dx, const Maxpool2dDims& d) {
  fill_zero(dL_dx, d.n * d.c * d.h * d.w);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      double* plane = dL_dx + (n * d.c + c) * d.h * d.w;
      for (int64_t p = 0; p < d.p; ++p)
        for (int64_t q = 0; q < d.q; ++q) {
          const int64_t out = at4(n, c, p, q, d.c, d.p, d.q);
          plane[idx[out]] += dL_dy[out];  // += : overlapping windows can pick the same element
        }
    }
}

// ---------------------------------------------------------------------------------------------
// reshape

void reshape_forward(const double* x, double* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i];
}

// ---------------------------------------------------------------------------------------------
// linear: y[n,o] = b[o] + sum_i x[n,i] w[o,i]

void linear_forward(const double* x, const double* w, const double* b, double* y, const LinearDims& d) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t o = 0; o < d.out; ++o) {
      double acc = b[o];
      for (int64_t i = 0; i < d.in; ++i) acc += x[n * d.in + i] * w[o * d.in + i];
      y[n * d.out + o] = acc;
    }
}

void linear_backward_data(const double* dL_dy, const double* w, double* dL_dx, const LinearDims& d) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.in; ++i) {
      double acc = 0.0;
      for (int64_t o = 0; o < d.out; ++o) acc += dL_dy[n * d.out + o] * w[o * d.in + i];
      dL_dx[n * d.in + i] = acc;
    }
}

void linear_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
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

// ---------------------------------------------------------------------------------------------
// softmax cross-entropy. Each row is shifted by its maximum before exp, so logits of any
// magnitude neither overflow nor lose the label's term: -log softmax(l)[y] = log sum exp(l - m) - (l[y] - m).

namespace {

double row_max(const double* row, int64_t k) {
  double m = row[0];
  for (int64_t j = 1; j < k; ++j)
    if (replaces_max(row[j], m)) m = row[j];
  return m;
}

double row_sum_exp_shifted(const double* row, int64_t k, double m) {
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j) sum += std::exp(row[j] - m);
  return sum;
}

}  // namespace

double softmax_xent_forward(const double* logits, const int32_t* labels, const XentDims& d) {
  double total = 0.0;
  for (int64_t n = 0; n < d.n; ++n) {
    const double* row = logits + n * d.k;
    const double m = row_max(row, d.k);
    total += std::log(row_sum_exp_shifted(row, d.k, m)) - (row[labels[n]] - m);
  }
  return total / static_cast<double>(d.n);
}

void softmax_xent_backward(const double* logits, const int32_t* labels, double dL_dloss, double* dL_dlogits,
                           const XentDims& d) {
  const double scale = dL_dloss / static_cast<double>(d.n);
  for (int64_t n = 0; n < d.n; ++n) {
    const double* row = logits + n * d.k;
    double* out = dL_dlogits + n * d.k;
    const double m = row_max(row, d.k);
    const double sum = row_sum_exp_shifted(row, d.k, m);
    for (int64_t j = 0; j < d.k; ++j) {
      const double softmax = std::exp(row[j] - m) / sum;
      const double onehot = (j == labels[n]) ? 1.0 : 0.0;
      out[j] = (softmax - onehot) * scale;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// metrics

void argmax_rows(const double* x, int32_t* idx, int64_t rows, int64_t cols) {
  for (int64_t n = 0; n < rows; ++n) {
    const double* row = x + n * cols;
    int64_t best_at = 0;
    for (int64_t j = 1; j < cols; ++j)
      if (replaces_max(row[j], row[best_at])) best_at = j;
    idx[n] = static_cast<int32_t>(best_at);
  }
}

double accuracy_count(const double* logits, const int32_t* labels, const XentDims& d) {
  double correct = 0.0;
  for (int64_t n = 0; n < d.n; ++n) {
    int32_t predicted = 0;
    argmax_rows(logits + n * d.k, &predicted, 1, d.k);
    if (predicted == labels[n]) correct += 1.0;
  }
  return correct;
}

// ---------------------------------------------------------------------------------------------
// add

void add_forward(const double* a, const double* b, double* c, int64_t count) {
  for (int64_t i = 0; i < count; ++i) c[i] = a[i] + b[i];
}

// ---------------------------------------------------------------------------------------------
// fill

void fill_forward(double* y, int64_t count, double value) {
  for (int64_t i = 0; i < count; ++i) y[i] = value;
}

// ---------------------------------------------------------------------------------------------
// optimizers, in the order of operations of torch.optim (single-tensor, non-fused path)

void adam_step(double* param, const double* grad, double* m, double* v, int64_t count, int64_t step,
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

void sgd_step(double* param, const double* grad, double* velocity, int64_t count, const SgdHyper& h) {
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

}  // namespace parity::ref
