// ops/kernels/softmax.h — softmax and log_softmax over one dim (PyTorch semantics): which dim a
// node's params name, the tensor seen as lanes [outer, k, inner] along it, and the float32 math
// of one lane (maximum subtracted first) and of one element, forward and backward, that the cpu
// and native kernels share. A lane's k elements sit `inner` apart.
#pragma once

#include <math.h>
#include <stdint.h>

#include "ops/kernels/hd.h"
#include "ops/kernels/reduce.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

// The dim a SOFTMAX / LOG_SOFTMAX (or backward) node reduces over, in [0, rank); -1 when the
// params name none of rank's dims. has_dim == 0 means dim 1 (zero-initialised params).
inline int softmax_dim(const parity_softmax_params& p, int rank) {
  const int dim = p.has_dim ? p.dim : 1;
  const int resolved = dim < 0 ? dim + rank : dim;
  return resolved >= 0 && resolved < rank ? resolved : -1;
}

// A tensor of `rank` dims seen along `dim`: outer * inner lanes of k elements each.
struct SoftmaxLanes {
  int64_t outer, k, inner;
};
inline SoftmaxLanes softmax_lanes(const int64_t* dims, int rank, int dim) {
  SoftmaxLanes l{1, dims[dim], 1};
  for (int i = 0; i < dim; ++i) l.outer *= dims[i];
  for (int i = dim + 1; i < rank; ++i) l.inner *= dims[i];
  return l;
}

// The largest element of a lane, NaN winning (a NaN lane gives NaN outputs, as in torch).
PARITY_HD inline float lane_max_f32(const float* x, int64_t k, int64_t inner) {
  float m = x[0];
  for (int64_t i = 1; i < k; ++i) m = max_propagate_nan_f32(m, x[i * inner]);
  return m;
}

// log(sum_i exp(x_i - lane_max)): no exp overflows; a lane of -inf only gives NaN (torch too).
PARITY_HD inline float lane_log_sum_exp_shifted_f32(const float* x, int64_t k, int64_t inner, float lane_max) {
  float sum = 0.0f;
  for (int64_t i = 0; i < k; ++i) sum += exp_shifted_f32(x[i * inner], lane_max);
  return logf(sum);
}

// One output element from its lane's maximum and shifted log-sum-exp: softmax = exp((x - max) -
// lse), log_softmax = (x - max) - lse. x - max is exact wherever the result is not negligible
// (x and max within a factor 2 of each other, or both small), so 1e4-scale logits lose nothing.
PARITY_HD inline float softmax_element_f32(float x, float lane_max, float lse) { return expf((x - lane_max) - lse); }
PARITY_HD inline float log_softmax_element_f32(float x, float lane_max, float lse) { return (x - lane_max) - lse; }

// The backwards, from the forward output y: softmax's dx = y * (dy - sum(dy * y)),
// log_softmax's dx = dy - exp(y) * sum(dy). The lane sum each needs:
PARITY_HD inline float softmax_bwd_term_f32(float y, float dy) { return dy * y; }
PARITY_HD inline float log_softmax_bwd_term_f32(float, float dy) { return dy; }
PARITY_HD inline float softmax_bwd_element_f32(float y, float dy, float lane_sum) { return y * (dy - lane_sum); }
PARITY_HD inline float log_softmax_bwd_element_f32(float y, float dy, float lane_sum) {
  return dy - expf(y) * lane_sum;
}

// The lane sum of the backward (`log`: log_softmax's), left to right.
PARITY_HD inline float lane_bwd_sum_f32(const float* y, const float* dy, int64_t k, int64_t inner, bool log) {
  float sum = 0.0f;
  for (int64_t i = 0; i < k; ++i)
    sum += log ? log_softmax_bwd_term_f32(y[i * inner], dy[i * inner]) : softmax_bwd_term_f32(y[i * inner], dy[i * inner]);
  return sum;
}

}  // namespace kernels
}  // namespace parity
