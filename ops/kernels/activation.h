// ops/kernels/activation.h — element math of relu, sigmoid, tanh, leaky_relu, gelu, hardtanh and
// their gradients (PyTorch semantics).
#pragma once

#include <math.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

// relu(x) = max(x, 0); NaN propagates as in torch.relu (NaN <= 0 is false), and -0 becomes +0.
PARITY_HD inline float relu_f32(float x) { return x <= 0.0f ? 0.0f : x; }

// The gradient of relu given the forward *output* y: relu'(0) = 0, so only y > 0 passes dy.
PARITY_HD inline float relu_bwd_f32(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

// sigmoid(x) = 1 / (1 + exp(-x)), as torch.sigmoid: -inf gives 0, +inf gives 1 (exp(-x) reaches
// inf or 0, never NaN), NaN propagates.
PARITY_HD inline float sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }

// The gradient of sigmoid given the forward *output* y: dx = dy * y * (1 - y).
PARITY_HD inline float sigmoid_bwd_f32(float y, float dy) { return dy * (y * (1.0f - y)); }

// tanh(x) as torch.tanh: saturates to +-1, NaN propagates.
PARITY_HD inline float tanh_f32(float x) { return tanhf(x); }

// The gradient of tanh given the forward *output* y: dx = dy * (1 - y^2), computed as
// (1 - y) * (1 + y): 1 - y is exact for y in [0.5, 1] (and 1 + y for y in [-1, -0.5]), so a
// saturated y loses nothing to the cancellation 1 - y*y would suffer, and no multiply-add can be
// contracted, so every backend rounds alike.
PARITY_HD inline float tanh_bwd_f32(float y, float dy) { return dy * ((1.0f - y) * (1.0f + y)); }

// leaky_relu(x) = x > 0 ? x : x * negative_slope, as torch: NaN and -0 take the slope branch
// (NaN stays NaN, -0 stays -0).
PARITY_HD inline float leaky_relu_f32(float x, float negative_slope) { return x > 0.0f ? x : x * negative_slope; }

// The gradient of leaky_relu given the forward *input* x, as torch's leaky_relu_backward:
// x > 0 ? dy : dy * negative_slope, so at x == 0 (and NaN) the slope branch.
PARITY_HD inline float leaky_relu_bwd_f32(float x, float dy, float negative_slope) {
  return x > 0.0f ? dy : dy * negative_slope;
}

// gelu(x) = x * Phi(x), Phi the standard normal CDF, the erf form (torch's approximate='none').
// Phi(x) = erfc(-x / sqrt 2) / 2 equals (1 + erf(x / sqrt 2)) / 2 but keeps its relative
// accuracy for negative x, where 1 + erf cancels. NaN propagates; -inf gives NaN as in torch.
constexpr float kGeluSqrtHalf = 0.70710678118654752440f;     // 1 / sqrt(2)
constexpr float kGeluInvSqrt2Pi = 0.39894228040143267794f;   // 1 / sqrt(2 pi)
PARITY_HD inline float gelu_cdf_f32(float x) { return 0.5f * erfcf(-x * kGeluSqrtHalf); }
PARITY_HD inline float gelu_f32(float x) { return x * gelu_cdf_f32(x); }

// The gradient of gelu given the forward *input* x: dx = dy * (Phi(x) + x * phi(x)),
// phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
PARITY_HD inline float gelu_bwd_f32(float x, float dy) {
  const float pdf = kGeluInvSqrt2Pi * expf(-0.5f * x * x);
  return dy * (gelu_cdf_f32(x) + x * pdf);
}

// hardtanh(x) = min(max(x, min_val), max_val), as torch: NaN propagates.
PARITY_HD inline float hardtanh_f32(float x, float min_val, float max_val) {
  return x < min_val ? min_val : (x > max_val ? max_val : x);
}

// The gradient of hardtanh given the forward *input* x, as torch's hardtanh_backward: dy only
// strictly inside (min_val, max_val); 0 at x == min_val and x == max_val; NaN passes dy.
PARITY_HD inline float hardtanh_bwd_f32(float x, float dy, float min_val, float max_val) {
  return (x <= min_val || x >= max_val) ? 0.0f : dy;
}

}  // namespace kernels
}  // namespace parity
