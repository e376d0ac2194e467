// ops/kernels/reduce.h — the combining steps of reductions that the native kernels run as
// fixed trees (block reductions) rather than as one left-to-right loop: each is the per-pair
// (or per-element) form of a loop in softmax_xent.h, with the same NaN semantics.
#pragma once

#include <math.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

// The larger of two partial row maxima; a NaN on either side wins, as in row_max_f32.
PARITY_HD inline float max_propagate_nan_f32(float a, float b) { return (b > a || b != b) ? b : a; }

// One term of row_log_sum_exp_shifted_f32's sum: exp(x - row_max).
PARITY_HD inline float exp_shifted_f32(float x, float row_max) { return expf(x - row_max); }

}  // namespace kernels
}  // namespace parity
