// ops/kernels/conv_geometry.h — the one place of conv2d geometry (output sizes, padding; pooling's
// is ops/kernels/pool.h) for the rules in ops/ and every backend but ref (which shares no code with what it
// checks) and the CUDA planner (cuDNN computes its own); and the im2col / col2im index math over
// NCHW planes: row (c, r, s) of the column matrix col[C*R*S, P*Q] holds, at column p*Q+q,
// x[c, p*stride_h - pad_h + r, q*stride_w - pad_w + s] (zero outside the image).
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

// Output extent of a convolution along one axis (floor division, as PyTorch).
PARITY_HD inline int64_t conv2d_output_size(int64_t in, int64_t taps, int64_t stride, int64_t pad) {
  return (in + 2 * pad - taps) / stride + 1;
}

// The input coordinate that output position `o` reads through kernel tap `t`.
PARITY_HD inline int64_t conv2d_input_coord(int64_t o, int64_t t, int64_t stride, int64_t pad) {
  return o * stride - pad + t;
}

// [*begin, *end): the output positions o in [0, out) whose input coordinate for tap t lies
// inside [0, in); every other position reads zero padding.
PARITY_HD inline void conv2d_valid_outputs(int64_t in, int64_t out, int64_t t, int64_t stride, int64_t pad,
                                           int64_t* begin, int64_t* end) {
  const int64_t lo = pad - t;            // o * stride >= lo
  const int64_t hi = in - 1 + pad - t;   // o * stride <= hi
  int64_t b = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  int64_t e = hi < 0 ? 0 : hi / stride + 1;
  if (e > out) e = out;
  if (b > e) b = e;
  *begin = b;
  *end = e;
}

// Fills row (c, r, s) of one image's column matrix from channel plane x_plane[H, W].
PARITY_HD inline void im2col_row_nchw_f32(const float* x_plane, int64_t H, int64_t W, int64_t r, int64_t s,
                                          parity_conv2d_params cp, int64_t P, int64_t Q, float* col_row) {
  int64_t qb, qe;
  conv2d_valid_outputs(W, Q, s, cp.stride_w, cp.pad_w, &qb, &qe);
  for (int64_t p = 0; p < P; ++p) {
    float* dst = col_row + p * Q;
    const int64_t h = conv2d_input_coord(p, r, cp.stride_h, cp.pad_h);
    if (h < 0 || h >= H) {
      for (int64_t q = 0; q < Q; ++q) dst[q] = 0.0f;
      continue;
    }
    const float* src = x_plane + h * W;
    for (int64_t q = 0; q < qb; ++q) dst[q] = 0.0f;
    if (cp.stride_w == 1) {
      const float* s0 = src + (s - cp.pad_w);
      for (int64_t q = qb; q < qe; ++q) dst[q] = s0[q];
    } else {
      for (int64_t q = qb; q < qe; ++q) dst[q] = src[conv2d_input_coord(q, s, cp.stride_w, cp.pad_w)];
    }
    for (int64_t q = qe; q < Q; ++q) dst[q] = 0.0f;
  }
}

// The transpose of im2col_row_nchw_f32: adds row (c, r, s) of a column-matrix gradient into
// the input-gradient plane dx_plane[H, W] (padding positions are dropped).
PARITY_HD inline void col2im_row_add_nchw_f32(const float* col_row, int64_t H, int64_t W, int64_t r, int64_t s,
                                              parity_conv2d_params cp, int64_t P, int64_t Q, float* dx_plane) {
  int64_t qb, qe;
  conv2d_valid_outputs(W, Q, s, cp.stride_w, cp.pad_w, &qb, &qe);
  for (int64_t p = 0; p < P; ++p) {
    const int64_t h = conv2d_input_coord(p, r, cp.stride_h, cp.pad_h);
    if (h < 0 || h >= H) continue;
    const float* src = col_row + p * Q;
    float* dst = dx_plane + h * W;
    if (cp.stride_w == 1) {
      float* d0 = dst + (s - cp.pad_w);
      for (int64_t q = qb; q < qe; ++q) d0[q] += src[q];
    } else {
      for (int64_t q = qb; q < qe; ++q) dst[conv2d_input_coord(q, s, cp.stride_w, cp.pad_w)] += src[q];
    }
  }
}

}  // namespace kernels
}  // namespace parity
