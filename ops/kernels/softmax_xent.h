// ops/kernels/softmax_xent.h — row math of softmax cross-entropy: a numerically stable
// log-sum-exp, the per-row loss term and the per-element gradient, and how a row's label takes
// part under parity_softmax_xent_params (ignore_index; ABI 7), as torch's cross_entropy.
#pragma once

#include <math.h>
#include <stdint.h>

#include "ops/kernels/hd.h"
#include "parity/plugin.h"

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

// d loss / d logit for one element: (softmax - onehot) * scale, where scale is the row's
// (xent_row_scale_f32: dloss / rows counted for the mean, dloss for the sum, dloss[n] for none).
PARITY_HD inline float xent_grad_element_f32(float logit, float row_max, float lse_shifted, bool is_label,
                                             float scale) {
  const float p = expf((logit - row_max) - lse_shifted);
  return (p - (is_label ? 1.0f : 0.0f)) * scale;
}

// Whether the row with this label is left out of the loss: it is the ignore_index, when one is given.
PARITY_HD inline bool xent_row_ignored(const parity_softmax_xent_params& p, int32_t label) {
  return p.has_ignore_index != 0 && label == p.ignore_index;
}

// Row n's loss term: 0 for an ignored row (its logits unread, NaN or not, as torch), -log
// softmax(row)[label] otherwise. A label outside [0, k) reaches this only on a backend that could
// not check the labels on the host: the term is NaN and no logit outside the row is read.
PARITY_HD inline float xent_row_term_f32(const float* row, int64_t k, int32_t label, bool ignored, float row_max,
                                         float lse_shifted) {
  return ignored ? 0.0f
                 : (label >= 0 && label < k) ? xent_loss_term_f32(row[label], row_max, lse_shifted) : NAN;
}

// The factor of row n's gradient (softmax - onehot): 0 for an ignored row (so finite logits give
// exactly 0, and a NaN softmax still NaN, as torch's log_softmax backward of a zero gradient),
// NaN for a label outside [0, k) (as xent_row_term_f32), else `scale`.
PARITY_HD inline float xent_row_scale_f32(int32_t label, int64_t k, bool ignored, float scale) {
  return ignored ? 0.0f : (label >= 0 && label < k) ? scale : NAN;
}

}  // namespace kernels
}  // namespace parity
