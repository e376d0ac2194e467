// ops/kernels/broadcast.h — the index math of broadcasting ADD/MUL and of REDUCE_SUM, and
// CLIP_COEF's factor, shared by the cpu backend and the native kernels: an output element's
// offsets into its two operands, and the offset of one term of a reduced element.
#pragma once

#include <math.h>
#include <stdint.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

constexpr int kMaxBroadcastRank = 6;  // PARITY_MAX_RANK

// c[i] = a[offset_a] op b[offset_b]: each operand's stride is 0 along the dims it broadcasts.
struct BroadcastShape {
  int32_t rank;
  int64_t out_dims[kMaxBroadcastRank];
  int64_t a_strides[kMaxBroadcastRank];
  int64_t b_strides[kMaxBroadcastRank];
};

// From row-major dims of one rank whose sizes are each the output's or 1 (checked by the caller).
inline BroadcastShape make_broadcast_shape(int32_t rank, const int64_t* a_dims, const int64_t* b_dims) {
  BroadcastShape s{};
  s.rank = rank;
  int64_t a_stride = 1, b_stride = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    s.out_dims[d] = a_dims[d] > b_dims[d] ? a_dims[d] : b_dims[d];
    s.a_strides[d] = a_dims[d] == 1 ? 0 : a_stride;
    s.b_strides[d] = b_dims[d] == 1 ? 0 : b_stride;
    a_stride *= a_dims[d];
    b_stride *= b_dims[d];
  }
  return s;
}

PARITY_HD inline void broadcast_offsets(const BroadcastShape& s, int64_t out_index, int64_t* offset_a,
                                        int64_t* offset_b) {
  int64_t a = 0, b = 0;
  for (int32_t d = s.rank - 1; d >= 0; --d) {
    const int64_t k = out_index % s.out_dims[d];
    out_index /= s.out_dims[d];
    a += k * s.a_strides[d];
    b += k * s.b_strides[d];
  }
  *offset_a = a;
  *offset_b = b;
}

// REDUCE_SUM: output element o sums `terms` input elements; term r of it is at
// reduce_offset(s, o, r). Kept dims have their size in kept_dims and 1 in summed_dims, summed
// dims the other way round; both decompose with the input's strides.
struct ReduceShape {
  int32_t rank;
  int64_t kept_dims[kMaxBroadcastRank];
  int64_t summed_dims[kMaxBroadcastRank];
  int64_t strides[kMaxBroadcastRank];
  int64_t outputs, terms;
};

inline ReduceShape make_reduce_shape(int32_t rank, const int64_t* dims, uint32_t summed_mask) {
  ReduceShape s{};
  s.rank = rank;
  s.outputs = s.terms = 1;
  int64_t stride = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    const bool summed = (summed_mask >> d) & 1u;
    s.kept_dims[d] = summed ? 1 : dims[d];
    s.summed_dims[d] = summed ? dims[d] : 1;
    s.strides[d] = stride;
    stride *= dims[d];
    s.outputs *= s.kept_dims[d];
    s.terms *= s.summed_dims[d];
  }
  return s;
}

PARITY_HD inline int64_t reduce_offset(const ReduceShape& s, int64_t out_index, int64_t term) {
  int64_t offset = 0;
  for (int32_t d = s.rank - 1; d >= 0; --d) {
    offset += (out_index % s.kept_dims[d] + term % s.summed_dims[d]) * s.strides[d];
    out_index /= s.kept_dims[d];
    term /= s.summed_dims[d];
  }
  return offset;
}

// torch.nn.utils.clip_grad_norm_ (1.13, norm_type 2): total_norm = sqrt(sum of squares),
// clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1 (NaN stays NaN).
PARITY_HD inline float clip_coef_f32(float sum_of_squares, float max_norm) {
  const float coef = max_norm / (sqrtf(sum_of_squares) + 1e-6f);
  return coef > 1.0f ? 1.0f : coef;
}

}  // namespace kernels
}  // namespace parity
