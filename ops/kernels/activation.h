// ops/kernels/activation.h — element math of relu and its gradient (PyTorch semantics).
#pragma once

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

// relu(x) = max(x, 0); NaN propagates as in torch.relu (NaN <= 0 is false), and -0 becomes +0.
PARITY_HD inline float relu_f32(float x) { return x <= 0.0f ? 0.0f : x; }

// The gradient of relu given the forward *output* y: relu'(0) = 0, so only y > 0 passes dy.
PARITY_HD inline float relu_bwd_f32(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

}  // namespace kernels
}  // namespace parity
