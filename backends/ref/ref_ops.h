// backends/ref/ref_ops.h — the float64 oracle's op math: one plain nested-loop function per op,
// forward and backward, over double (and int32 for labels and indices). Shares no code with the
// backends it checks; public to the tests so that gradients can be checked by finite differences.
//
// Semantics are those of parity/plugin.h (PyTorch where a choice exists). Every function writes
// all of its outputs and assumes its arguments are consistent with the dims it is given; the
// backend validates what depends on run-time data (labels, pooling indices) before calling.
#pragma once

#include <cstdint>

namespace parity::ref {

// Conv2d, NCHW, cross-correlation with zero padding on both sides:
// x[n,c,h,w], w[k,c,r,s], b[k], y[n,k,p,q] with p = (h + 2 pad_h - r) / stride_h + 1.
struct Conv2dDims {
  int64_t n, c, h, w;        // input
  int64_t k, r, s;           // filters: out channels, kernel height, kernel width
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t p, q;              // output height, width
};
// Fills p and q from the other fields.
Conv2dDims make_conv2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                            int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w);

// Max pooling without padding, floor division: p = (h - kernel_h) / stride_h + 1.
struct Maxpool2dDims {
  int64_t n, c, h, w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t p, q;
};
Maxpool2dDims make_maxpool2d_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kernel_h,
                                  int64_t kernel_w, int64_t stride_h, int64_t stride_w);

// Linear: x[n,in], w[out,in], b[out], y[n,out] = x w^T + b.
struct LinearDims {
  int64_t n, in, out;
};

// Softmax cross-entropy over rows: logits[n,k], labels[n] in [0, k).
struct XentDims {
  int64_t n, k;
};

// Optimizer hyper-parameters in float64 (the backend widens the plan's float values exactly).
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
};
struct SgdHyper {
  double lr, momentum, weight_decay;
};

// --- conv2d ---
void conv2d_forward(const double* x, const double* w, const double* b, double* y, const Conv2dDims& d);
void conv2d_backward_data(const double* dL_dy, const double* w, double* dL_dx, const Conv2dDims& d);
void conv2d_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
                            const Conv2dDims& d);

// --- relu (elementwise over count values) ---
void relu_forward(const double* x, double* y, int64_t count);
// Takes the forward output y: dL_dx = y > 0 ? dL_dy : 0, so relu'(0) = 0.
void relu_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count);

// --- sigmoid (elementwise over count values) ---
// y = 1 / (1 + exp(-x)): exp(-x) overflows to inf for x < -709, giving 0, as torch.sigmoid.
void sigmoid_forward(const double* x, double* y, int64_t count);
// Takes the forward output y: dL_dx = dL_dy * y * (1 - y).
void sigmoid_backward(const double* y, const double* dL_dy, double* dL_dx, int64_t count);

// --- maxpool2d ---
// idx holds the flat index h*W+w of the first maximum (row-major window order) in its (n,c) plane.
void maxpool2d_forward(const double* x, double* y, int32_t* idx, const Maxpool2dDims& d);
void maxpool2d_backward(const double* dL_dy, const int32_t* idx, double* dL_dx, const Maxpool2dDims& d);

// --- reshape (a copy; its backward is the same copy in the other direction) ---
void reshape_forward(const double* x, double* y, int64_t count);

// --- linear ---
void linear_forward(const double* x, const double* w, const double* b, double* y, const LinearDims& d);
void linear_backward_data(const double* dL_dy, const double* w, double* dL_dx, const LinearDims& d);
void linear_backward_weight(const double* x, const double* dL_dy, double* dL_dw, double* dL_db,
                            const LinearDims& d);

// --- softmax cross-entropy, mean over the batch ---
double softmax_xent_forward(const double* logits, const int32_t* labels, const XentDims& d);
// dL_dlogits = (softmax(logits) - onehot(labels)) * dL_dloss / n.
void softmax_xent_backward(const double* logits, const int32_t* labels, double dL_dloss, double* dL_dlogits,
                           const XentDims& d);

// --- metrics ---
// idx[i] = first column holding the maximum of row i of x[rows, cols].
void argmax_rows(const double* x, int32_t* idx, int64_t rows, int64_t cols);
// Number of rows whose first argmax equals the label.
double accuracy_count(const double* logits, const int32_t* labels, const XentDims& d);

// --- add (gradient accumulation) ---
void add_forward(const double* a, const double* b, double* c, int64_t count);

// --- fill (the autodiff seed dL/dL = 1): every element of y set to value ---
void fill_forward(double* y, int64_t count, double value);

// --- optimizer steps, updating param and state in place ---
// torch.optim.Adam (no amsgrad); step is 1-based.
void adam_step(double* param, const double* grad, double* m, double* v, int64_t count, int64_t step,
               const AdamHyper& h);
// torch.optim.SGD, dampening 0, no nesterov; velocity starts at 0 and is untouched when momentum is 0.
void sgd_step(double* param, const double* grad, double* velocity, int64_t count, const SgdHyper& h);

}  // namespace parity::ref
