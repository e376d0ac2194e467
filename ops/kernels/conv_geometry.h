// ops/kernels/conv_geometry.h — the one place of conv2d geometry (output sizes, padding,
// dilation, groups; pooling's is ops/kernels/pool.h) for the rules in ops/ and every backend but ref (which shares no
// code with what it checks) and the CUDA planner (cuDNN computes its own); and the im2col /
// col2im index math over NCHW planes: row (c, r, s) of the column matrix col[C*R*S, P*Q] holds,
// at column p*Q+q, x[c, p*stride_h - pad_top + r*dilation_h, q*stride_w - pad_left + s*dilation_w]
// (zero outside the image). With groups, group g's rows are the contiguous block of its
// C/groups channels, so a grouped conv is one GEMM per group over slices of the same matrix.
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

// A convolution's window, parity_conv2d_params with the ABI 5 defaults applied (groups and
// dilation 0 read as 1; end padding = begin padding unless pad_end_given). Made on the host
// (conv2d_window), passed by value to kernels.
struct Conv2dWindow {
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t dilation_h, dilation_w;
  int64_t groups;
  // Whether cuDNN's legacy API and the cpu fast paths, which take symmetric padding and no
  // groups or dilation, can run it.
  bool symmetric() const { return pad_top == pad_bottom && pad_left == pad_right; }
  bool plain() const { return symmetric() && dilation_h == 1 && dilation_w == 1 && groups == 1; }
};

inline Conv2dWindow conv2d_window(const parity_conv2d_params& p) {
  return Conv2dWindow{p.stride_h,
                      p.stride_w,
                      p.pad_h,
                      p.pad_w,
                      parity_conv2d_pad_bottom(&p),
                      parity_conv2d_pad_right(&p),
                      parity_conv2d_dilation_h(&p),
                      parity_conv2d_dilation_w(&p),
                      parity_conv2d_groups(&p)};
}

// Output extent of a convolution along one axis (floor division, as PyTorch): taps `taps`
// `dilation` apart span dilation * (taps - 1) + 1 input positions.
PARITY_HD inline int64_t conv2d_output_size(int64_t in, int64_t taps, int64_t stride, int64_t pad_begin,
                                            int64_t pad_end, int64_t dilation) {
  return (in + pad_begin + pad_end - dilation * (taps - 1) - 1) / stride + 1;
}
// The input extent a dilated kernel spans, which must fit in the padded input.
PARITY_HD inline int64_t conv2d_kernel_span(int64_t taps, int64_t dilation) { return dilation * (taps - 1) + 1; }
inline int64_t conv2d_output_h(const Conv2dWindow& cw, int64_t H, int64_t R) {
  return conv2d_output_size(H, R, cw.stride_h, cw.pad_top, cw.pad_bottom, cw.dilation_h);
}
inline int64_t conv2d_output_w(const Conv2dWindow& cw, int64_t W, int64_t S) {
  return conv2d_output_size(W, S, cw.stride_w, cw.pad_left, cw.pad_right, cw.dilation_w);
}

// The input coordinate that output position `o` reads through the kernel tap at offset `t`
// (tap index times dilation); `pad` is the begin (top or left) padding.
PARITY_HD inline int64_t conv2d_input_coord(int64_t o, int64_t t, int64_t stride, int64_t pad) {
  return o * stride - pad + t;
}

// [*begin, *end): the output positions o in [0, out) whose input coordinate for the tap at
// offset t lies inside [0, in); every other position reads zero padding.
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

// Fills row (c, r, s) of one image's column matrix from channel plane x_plane[H, W]; T is float,
// or uint16_t for the bits of a bf16 image (cpu's bf16 GEMM path: a zero is the bits 0 either way).
template <class T>
PARITY_HD inline void im2col_row_nchw(const T* x_plane, int64_t H, int64_t W, int64_t r, int64_t s, Conv2dWindow cw,
                                      int64_t P, int64_t Q, T* col_row) {
  const int64_t ts = s * cw.dilation_w;
  int64_t qb, qe;
  conv2d_valid_outputs(W, Q, ts, cw.stride_w, cw.pad_left, &qb, &qe);
  for (int64_t p = 0; p < P; ++p) {
    T* dst = col_row + p * Q;
    const int64_t h = conv2d_input_coord(p, r * cw.dilation_h, cw.stride_h, cw.pad_top);
    if (h < 0 || h >= H) {
      for (int64_t q = 0; q < Q; ++q) dst[q] = T(0);
      continue;
    }
    const T* src = x_plane + h * W;
    for (int64_t q = 0; q < qb; ++q) dst[q] = T(0);
    if (cw.stride_w == 1) {
      const T* s0 = src + (ts - cw.pad_left);
      for (int64_t q = qb; q < qe; ++q) dst[q] = s0[q];
    } else {
      for (int64_t q = qb; q < qe; ++q) dst[q] = src[conv2d_input_coord(q, ts, cw.stride_w, cw.pad_left)];
    }
    for (int64_t q = qe; q < Q; ++q) dst[q] = T(0);
  }
}

PARITY_HD inline void im2col_row_nchw_f32(const float* x_plane, int64_t H, int64_t W, int64_t r, int64_t s,
                                          Conv2dWindow cw, int64_t P, int64_t Q, float* col_row) {
  im2col_row_nchw<float>(x_plane, H, W, r, s, cw, P, Q, col_row);
}

// The transpose of im2col_row_nchw_f32: adds row (c, r, s) of a column-matrix gradient into
// the input-gradient plane dx_plane[H, W] (padding positions are dropped).
PARITY_HD inline void col2im_row_add_nchw_f32(const float* col_row, int64_t H, int64_t W, int64_t r, int64_t s,
                                              Conv2dWindow cw, int64_t P, int64_t Q, float* dx_plane) {
  const int64_t ts = s * cw.dilation_w;
  int64_t qb, qe;
  conv2d_valid_outputs(W, Q, ts, cw.stride_w, cw.pad_left, &qb, &qe);
  for (int64_t p = 0; p < P; ++p) {
    const int64_t h = conv2d_input_coord(p, r * cw.dilation_h, cw.stride_h, cw.pad_top);
    if (h < 0 || h >= H) continue;
    const float* src = col_row + p * Q;
    float* dst = dx_plane + h * W;
    if (cw.stride_w == 1) {
      float* d0 = dst + (ts - cw.pad_left);
      for (int64_t q = qb; q < qe; ++q) d0[q] += src[q];
    } else {
      for (int64_t q = qb; q < qe; ++q) dst[conv2d_input_coord(q, ts, cw.stride_w, cw.pad_left)] += src[q];
    }
  }
}

}  // namespace kernels
}  // namespace parity
