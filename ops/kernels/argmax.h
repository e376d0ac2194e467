// ops/kernels/argmax.h — the first maximum of a row (torch.argmax semantics: ties go to the
// lowest index, a NaN counts as the maximum and the first NaN wins).
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

PARITY_HD inline int64_t row_argmax_first_f32(const float* row, int64_t k) {
  int64_t best = 0;
  float best_value = row[0];
  if (best_value != best_value) return 0;
  for (int64_t i = 1; i < k; ++i) {
    const float v = row[i];
    if (v != v) return i;
    if (v > best_value) {
      best_value = v;
      best = i;
    }
  }
  return best;
}

}  // namespace kernels
}  // namespace parity
