// ops/kernels/activation.h — element math of relu, sigmoid and their gradients (PyTorch semantics).
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

}  // namespace kernels
}  // namespace parity
