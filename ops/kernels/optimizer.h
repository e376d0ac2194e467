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

// The learning rate of the 1-based step t under `schedule` (parity_lr_schedule in plugin.h), in
// double as torch.optim.lr_scheduler computes it in Python.
PARITY_HD inline double scheduled_lr(double lr, parity_lr_schedule schedule, int32_t t) {
  int64_t i = static_cast<int64_t>(t) - 1;
  if (schedule.warmup_steps > 0) {
    if (i < schedule.warmup_steps) {
      const double f = schedule.warmup_start_factor;
      return lr * (f + (1.0 - f) * static_cast<double>(i) / static_cast<double>(schedule.warmup_steps));
    }
    i -= schedule.warmup_steps;
  }
  if (schedule.kind == PARITY_LR_STEP)
    return lr * pow(static_cast<double>(schedule.gamma), static_cast<double>(i / schedule.step_size));
  if (schedule.kind == PARITY_LR_COSINE) {
    const double pi = 3.14159265358979323846;
    const double min_lr = schedule.min_lr;
    return min_lr + (lr - min_lr) * (1.0 + cos(pi * static_cast<double>(i) / schedule.total_steps)) / 2.0;
  }
  return lr;
}

// lr_t / (1 - beta1^t), computed in double as Python does, for the 1-based step t.
PARITY_HD inline float adam_step_size(parity_adam_params hp, int32_t t) {
  return static_cast<float>(scheduled_lr(hp.lr, hp.schedule, t) / (1.0 - pow(static_cast<double>(hp.beta1), t)));
}

// AdamW's decay factor 1 - lr_t * wd of step t (torch: param.mul_(1 - lr * weight_decay), a
// Python float rounded to float32); 1 for Adam, whose decay is L2 on the gradient instead.
PARITY_HD inline float adamw_decay_factor(parity_adam_params hp, int32_t t) {
  if (!hp.decoupled_weight_decay) return 1.0f;
  return static_cast<float>(1.0 - scheduled_lr(hp.lr, hp.schedule, t) * static_cast<double>(hp.weight_decay));
}

// sqrt(1 - beta2^t), computed in double as Python does, for the 1-based step t.
PARITY_HD inline float adam_bias_correction2_sqrt(parity_adam_params hp, int32_t t) {
  return static_cast<float>(sqrt(1.0 - pow(static_cast<double>(hp.beta2), t)));
}

// One Adam element, with step_size, bias_correction2_sqrt and decay_factor from the functions
// above:
//   Adam: g += wd * p;  AdamW: p *= decay_factor;
//   m = lerp(m, g, 1 - b1);  v = v * b2 + (1 - b2) * g * g;
//   p += (-step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
// which is p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) up to rounding.
PARITY_HD inline void adam_update_element(float* p, float g, float* m, float* v, parity_adam_params hp,
                                          float step_size, float bias_correction2_sqrt, float decay_factor) {
  if (hp.decoupled_weight_decay) {
    *p = *p * decay_factor;
  } else if (hp.weight_decay != 0.0f) {
    g = g + hp.weight_decay * *p;
  }
  const float one_minus_beta1 = static_cast<float>(1.0 - static_cast<double>(hp.beta1));
  const float one_minus_beta2 = static_cast<float>(1.0 - static_cast<double>(hp.beta2));
  *m = lerp_f32(*m, g, one_minus_beta1);
  *v = *v * hp.beta2 + one_minus_beta2 * g * g;
  const float denom = sqrtf(*v) / bias_correction2_sqrt + hp.eps;
  *p = *p + (-step_size * *m) / denom;
}

// lr_t of SGD's 1-based step t, rounded to float32 as torch's add_(d_p, alpha=-lr) does.
PARITY_HD inline float sgd_lr(parity_sgd_params hp, int32_t t) {
  return static_cast<float>(scheduled_lr(hp.lr, hp.schedule, t));
}

// One SGD element (dampening 0) with lr = sgd_lr(hp, t); the velocity starts at zero, so the
// first step's v = momentum * 0 + g equals torch's v = g:
//   g += wd * p;  if momentum != 0 { v = momentum * v + g; g = nesterov ? g + momentum * v : v; }
//   p += -lr * g
PARITY_HD inline void sgd_update_element(float* p, float g, float* velocity, parity_sgd_params hp, float lr) {
  if (hp.weight_decay != 0.0f) g = g + hp.weight_decay * *p;
  if (hp.momentum != 0.0f) {
    *velocity = *velocity * hp.momentum + g;
    g = hp.nesterov ? g + hp.momentum * *velocity : *velocity;
  }
  *p = *p + (-lr) * g;
}

}  // namespace kernels
}  // namespace parity
