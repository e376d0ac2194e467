// ops/kernels/batchnorm.h — the per-channel and per-element math of batchnorm2d that the cpu and
// native kernels share (PARITY_HD): the batch statistics from shifted sums, the running-statistics
// update of each convention, the normalisation and the backward's element. How the sums are
// reduced (fixed trees) is each backend's; what they mean is fixed here.
//
// The statistics are computed in two passes against a shift, the first pass's mean m0:
//   sum_d = sum (x - m0),  sum_d2 = sum (x - m0)^2,  delta = sum_d / n,
//   mean = m0 + delta,  M2 = sum_d2 - sum_d * delta,  biased var = M2 / n,  unbiased = M2 / (n - 1).
// x - m0 is exact when x and m0 are within a factor of two (Sterbenz), so a large common offset
// (x = 1000 + u) cancels exactly instead of in x^2 (the one-pass E[x^2] - E[x]^2 loses every
// digit of a variance 1e6 times smaller than the mean squared), and delta corrects the rounding
// of m0 to second order. The normalisation subtracts m0 and then delta, never the rounded mean.
#pragma once

#include <math.h>
#include <stdint.h>

#include "ops/kernels/hd.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

struct BatchnormStats {
  float mean;        // m0 + delta, rounded: the saved mean
  float delta;       // sum_d / n: what the normalisation subtracts after m0
  float biased_var;  // M2 / n (>= 0)
  float unbiased_var;  // M2 / (n - 1); M2 / n when n == 1 (only the ONNX convention allows n == 1, and reads the biased one)
  float invstd;      // 1 / sqrt(biased_var + eps): the saved inverse std
};

// The channel's statistics from the shift m0 and the shifted sums over its n elements.
PARITY_HD inline BatchnormStats batchnorm_stats_f32(float shift, float sum_d, float sum_d2, int64_t n, float eps) {
  const float count = static_cast<float>(n);
  BatchnormStats s;
  s.delta = sum_d / count;
  s.mean = shift + s.delta;
  float m2 = sum_d2 - sum_d * s.delta;
  if (!(m2 > 0.0f)) m2 = m2 == m2 ? 0.0f : m2;  // rounding below 0 is 0; NaN stays NaN
  s.biased_var = m2 / count;
  s.unbiased_var = n > 1 ? m2 / (count - 1.0f) : s.biased_var;
  s.invstd = 1.0f / sqrtf(s.biased_var + eps);
  return s;
}

// The running statistics after one training step, in place, by the node's convention:
// PyTorch (torch.nn.BatchNorm2d): r = momentum * batch + (1 - momentum) * r, variance unbiased;
// ONNX (BatchNormalization, training_mode=1): r = momentum * r + (1 - momentum) * batch, biased.
PARITY_HD inline void batchnorm_update_running_f32(float* running_mean, float* running_var, const BatchnormStats& s,
                                                   parity_batchnorm2d_params p) {
  if (p.convention == PARITY_BATCHNORM_ONNX) {
    *running_mean = p.momentum * *running_mean + (1.0f - p.momentum) * s.mean;
    *running_var = p.momentum * *running_var + (1.0f - p.momentum) * s.biased_var;
  } else {
    *running_mean = p.momentum * s.mean + (1.0f - p.momentum) * *running_mean;
    *running_var = p.momentum * s.unbiased_var + (1.0f - p.momentum) * *running_var;
  }
}

// EVAL's (and EVAL's backward's) inverse std from the running variance.
PARITY_HD inline float batchnorm_invstd_f32(float var, float eps) { return 1.0f / sqrtf(var + eps); }

// y of one element: ((x - shift) - delta) * invstd * gamma + beta. Training: shift m0, delta of
// batchnorm_stats_f32; evaluation: shift = running mean, delta = 0.
PARITY_HD inline float batchnorm_normalize_f32(float x, float shift, float delta, float invstd, float gamma,
                                               float beta) {
  return ((x - shift) - delta) * invstd * gamma + beta;
}

// x_hat of the backward: (x - mean) * invstd.
PARITY_HD inline float batchnorm_xhat_f32(float x, float mean, float invstd) { return (x - mean) * invstd; }

// dx of one element from the channel's sums of dy (dbeta) and dy * x_hat (dgamma) over n:
// training, gamma * invstd * (dy - dbeta / n - x_hat * dgamma / n) (the batch statistics depend
// on x); evaluation, gamma * invstd * dy.
PARITY_HD inline float batchnorm_dx_f32(float dy, float x_hat, float gamma_invstd, float mean_dy, float mean_dy_xhat,
                                        bool training) {
  return training ? gamma_invstd * ((dy - mean_dy) - x_hat * mean_dy_xhat) : gamma_invstd * dy;
}

}  // namespace kernels
}  // namespace parity
