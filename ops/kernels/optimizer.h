// ops/kernels/optimizer.h — per-element updates of Adam and SGD, written as the single-tensor
// (non-foreach, non-fused) code paths of torch.optim.Adam and torch.optim.SGD compute them,
// including their operation order, so that float32 results track PyTorch closely.
#pragma once

#include <math.h>
#include <stdint.h>

#include "ops/kernels/hd.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

// torch.lerp's CPU formula: start + weight * (end - start), evaluated from the nearer end.
PARITY_HD inline float lerp_f32(float start, float end, float weight) {
  return fabsf(weight) < 0.5f ? start + weight * (end - start) : end - (end - start) * (1.0f - weight);
}

// lr / (1 - beta1^t), computed in double as Python does, for the 1-based step t.
PARITY_HD inline float adam_step_size(parity_adam_params hp, int32_t t) {
  return static_cast<float>(static_cast<double>(hp.lr) / (1.0 - pow(static_cast<double>(hp.beta1), t)));
}

// sqrt(1 - beta2^t), computed in double as Python does, for the 1-based step t.
PARITY_HD inline float adam_bias_correction2_sqrt(parity_adam_params hp, int32_t t) {
  return static_cast<float>(sqrt(1.0 - pow(static_cast<double>(hp.beta2), t)));
}

// One Adam element, with step_size and bias_correction2_sqrt from the two functions above:
//   g += wd * p;  m = lerp(m, g, 1 - b1);  v = v * b2 + (1 - b2) * g * g;
//   p += (-step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
// which is p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) up to rounding.
PARITY_HD inline void adam_update_element(float* p, float g, float* m, float* v, parity_adam_params hp,
                                          float step_size, float bias_correction2_sqrt) {
  if (hp.weight_decay != 0.0f) g = g + hp.weight_decay * *p;
  const float one_minus_beta1 = static_cast<float>(1.0 - static_cast<double>(hp.beta1));
  const float one_minus_beta2 = static_cast<float>(1.0 - static_cast<double>(hp.beta2));
  *m = lerp_f32(*m, g, one_minus_beta1);
  *v = *v * hp.beta2 + one_minus_beta2 * g * g;
  const float denom = sqrtf(*v) / bias_correction2_sqrt + hp.eps;
  *p = *p + (-step_size * *m) / denom;
}

// One SGD element (dampening 0, no Nesterov); the velocity starts at zero, so the first step's
// v = momentum * 0 + g equals torch's v = g:
//   g += wd * p;  if momentum != 0 { v = momentum * v + g; g = v; }  p += -lr * g
PARITY_HD inline void sgd_update_element(float* p, float g, float* velocity, parity_sgd_params hp) {
  if (hp.weight_decay != 0.0f) g = g + hp.weight_decay * *p;
  if (hp.momentum != 0.0f) {
    *velocity = *velocity * hp.momentum + g;
    g = *velocity;
  }
  *p = *p + (-hp.lr) * g;
}

}  // namespace kernels
}  // namespace parity
