// ops/kernels/softmax_xent.h — row math of softmax cross-entropy: a numerically stable
// log-sum-exp, the per-row loss term and the per-element gradient (PyTorch semantics).
#pragma once

#include <math.h>
#include <stdint.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

// The largest logit of a row; NaN propagates so a NaN row gives a NaN loss.
PARITY_HD inline float row_max_f32(const float* row, int64_t k) {
  float m = row[0];
  for (int64_t i = 1; i < k; ++i) {
    const float v = row[i];
    if (v > m || v != v) m = v;
  }
  return m;
}

// log(sum_i exp(row[i] - row_max)): the log-sum-exp shifted by the row maximum, so no exp overflows.
PARITY_HD inline float row_log_sum_exp_shifted_f32(const float* row, int64_t k, float row_max) {
  float sum = 0.0f;
  for (int64_t i = 0; i < k; ++i) sum += expf(row[i] - row_max);
  return logf(sum);
}

// -log softmax(row)[label] = -((row[label] - row_max) - lse_shifted).
PARITY_HD inline float xent_loss_term_f32(float logit_label, float row_max, float lse_shifted) {
  return -((logit_label - row_max) - lse_shifted);
}

// d loss / d logit for one element: (softmax - onehot) * scale, where scale = dloss / N
// (the loss is the mean over the batch).
PARITY_HD inline float xent_grad_element_f32(float logit, float row_max, float lse_shifted, bool is_label,
                                             float scale) {
  const float p = expf((logit - row_max) - lse_shifted);
  return (p - (is_label ? 1.0f : 0.0f)) * scale;
}

}  // namespace kernels
}  // namespace parity
