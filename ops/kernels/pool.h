// ops/kernels/pool.h — the one place of pooling geometry (output extents, the taps of a window
// that lie inside the input, avgpool's divisor, the windows holding an input element) for the
// rules in ops/ and every backend but ref, and the window math over NCHW planes: maxpool's first
// maximum (NaN propagates) and avgpool's row-major sum, with PyTorch's semantics.
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"
#include "parity/plugin.h"

namespace parity {
namespace kernels {

// One axis of a pooling window: `kernel` taps `dilation` apart; window o starts at o*stride - pad.
struct PoolAxis {
  int64_t kernel, stride, pad, dilation;
  bool ceil_mode;
};
struct PoolWindow {
  PoolAxis h, w;
};

// maxpool's params (dilation 0 reads as 1: ABI 4's zero-initialised params) and avgpool's.
PARITY_HD inline PoolWindow pool_window(const parity_maxpool2d_params& p) {
  return {{p.kernel_h, p.stride_h, p.pad_h, p.dilation_h == 0 ? 1 : p.dilation_h, p.ceil_mode != 0},
          {p.kernel_w, p.stride_w, p.pad_w, p.dilation_w == 0 ? 1 : p.dilation_w, p.ceil_mode != 0}};
}
PARITY_HD inline PoolWindow pool_window(const parity_avgpool2d_params& p) {
  return {{p.kernel_h, p.stride_h, p.pad_h, 1, p.ceil_mode != 0}, {p.kernel_w, p.stride_w, p.pad_w, 1, p.ceil_mode != 0}};
}

// The input extent a window covers, padding included: dilation * (kernel - 1) + 1.
PARITY_HD inline int64_t pool_span(PoolAxis a) { return a.dilation * (a.kernel - 1) + 1; }

// Output extent along one axis, as PyTorch's pooling_output_shape: floor or ceil of
// (in + 2 pad - span) / stride, + 1; with ceil_mode a last window starting at or after in + pad
// (entirely in the right padding) is dropped. The rules refuse span > in + 2 pad (0 here).
PARITY_HD inline int64_t pool_output_size(int64_t in, PoolAxis a) {
  const int64_t room = in + 2 * a.pad - pool_span(a);
  if (room < 0) return 0;
  int64_t out = (room + (a.ceil_mode ? a.stride - 1 : 0)) / a.stride + 1;
  if (a.ceil_mode && (out - 1) * a.stride >= in + a.pad) --out;
  return out;
}

// [*begin, *end): the taps t of window o whose coordinate o*stride - pad + t*dilation lies in
// [0, in). Empty (begin == end) for a window entirely in padding.
PARITY_HD inline void pool_taps_inside(int64_t in, int64_t o, PoolAxis a, int64_t* begin, int64_t* end) {
  const int64_t start = o * a.stride - a.pad;
  int64_t b = start >= 0 ? 0 : (-start + a.dilation - 1) / a.dilation;
  int64_t e = start > in - 1 ? 0 : (in - 1 - start) / a.dilation + 1;
  if (e > a.kernel) e = a.kernel;
  if (b > e) b = e;
  *begin = b;
  *end = e;
}

// avgpool's count along one axis (dilation 1): with count_include_pad, the window clipped to
// the padded input [-pad, in + pad) (ceil_mode's overhang is not counted); without, its taps
// inside the input. The divisor is the product of both axes' counts.
PARITY_HD inline int64_t avgpool_axis_count(int64_t in, int64_t o, PoolAxis a, bool count_include_pad) {
  const int64_t start = o * a.stride - a.pad;
  if (count_include_pad) {
    const int64_t end = start + a.kernel < in + a.pad ? start + a.kernel : in + a.pad;
    return end - start;
  }
  int64_t b, e;
  pool_taps_inside(in, o, a, &b, &e);
  return e - b;
}

// [*first, *last]: the windows (output positions in [0, out)) whose span covers input
// coordinate i (with dilation some of them skip it); empty when *first > *last.
PARITY_HD inline void pool_windows_covering(int64_t i, PoolAxis a, int64_t out, int64_t* first, int64_t* last) {
  const int64_t lo = i + a.pad - pool_span(a) + 1;  // o*stride >= lo
  const int64_t hi = i + a.pad;                      // o*stride <= hi
  *first = lo <= 0 ? 0 : (lo + a.stride - 1) / a.stride;
  *last = hi / a.stride < out - 1 ? hi / a.stride : out - 1;
}

// Whether every window lies inside the input with no dilation (ABI 4's maxpool): the cpu
// backend's unrolled and vector forms, and its fusions, apply only then.
PARITY_HD inline bool pool_is_plain(int64_t H, int64_t W, PoolWindow win, int64_t P, int64_t Q) {
  return win.h.pad == 0 && win.w.pad == 0 && win.h.dilation == 1 && win.w.dilation == 1 &&
         (P - 1) * win.h.stride + win.h.kernel <= H && (Q - 1) * win.w.stride + win.w.kernel <= W;
}

// Whether value v replaces the running maximum `best` of a window scanned in row-major order:
// only a strictly greater value does, so ties keep the first; a NaN always does, as in
// PyTorch's CPU kernel (so a window with NaNs reports its last NaN).
// (Bitwise |, not ||: no short-circuit branch, so hosts compile the scan to selects.)
PARITY_HD inline bool maxpool2d_replaces(float v, float best) { return (v > best) | (v != v); }

// The maximum of the kh x kw window whose top-left is (h0, w0), inside plane[H, W], and its
// flat index h*W + w in the plane (the plain form: no padding, no dilation).
PARITY_HD inline void maxpool2d_window_nchw_f32(const float* plane, int64_t W, int64_t h0, int64_t w0, int64_t kh,
                                                int64_t kw, float* max_out, int32_t* index_out) {
  float best = plane[h0 * W + w0];
  int64_t best_index = h0 * W + w0;
  for (int64_t h = h0; h < h0 + kh; ++h) {
    for (int64_t w = w0; w < w0 + kw; ++w) {
      const float v = plane[h * W + w];
      const bool take = maxpool2d_replaces(v, best);
      best = take ? v : best;
      best_index = take ? h * W + w : best_index;
    }
  }
  *max_out = best;
  *index_out = static_cast<int32_t>(best_index);
}

// Window (p, q) of plane[H, W] in general form (padding, dilation, ceil_mode's clipped windows):
// the first maximum over its taps inside the input, row-major; none inside: 0 and index -1.
PARITY_HD inline void maxpool2d_padded_window_nchw_f32(const float* plane, int64_t H, int64_t W, int64_t p, int64_t q,
                                                       PoolWindow win, float* max_out, int32_t* index_out) {
  int64_t rb, re, sb, se;
  pool_taps_inside(H, p, win.h, &rb, &re);
  pool_taps_inside(W, q, win.w, &sb, &se);
  if (rb == re || sb == se) {
    *max_out = 0.0f;
    *index_out = -1;
    return;
  }
  const int64_t h0 = p * win.h.stride - win.h.pad, w0 = q * win.w.stride - win.w.pad;
  int64_t best_index = (h0 + rb * win.h.dilation) * W + w0 + sb * win.w.dilation;
  float best = plane[best_index];
  for (int64_t r = rb; r < re; ++r) {
    for (int64_t s = sb; s < se; ++s) {
      const int64_t at = (h0 + r * win.h.dilation) * W + w0 + s * win.w.dilation;
      const float v = plane[at];
      const bool take = maxpool2d_replaces(v, best);
      best = take ? v : best;
      best_index = take ? at : best_index;
    }
  }
  *max_out = best;
  *index_out = static_cast<int32_t>(best_index);
}

// avgpool's divisor of window (p, q): 0 only for a window with no input element and
// count_include_pad off.
PARITY_HD inline int64_t avgpool2d_divisor(int64_t H, int64_t W, int64_t p, int64_t q, PoolWindow win,
                                           bool count_include_pad) {
  return avgpool_axis_count(H, p, win.h, count_include_pad) * avgpool_axis_count(W, q, win.w, count_include_pad);
}

// Window (p, q) of plane[H, W]: the float sum of its input elements in row-major order, divided
// (one correctly rounded division, as PyTorch) by its divisor; a divisor of 0 gives 0.
PARITY_HD inline float avgpool2d_window_nchw_f32(const float* plane, int64_t H, int64_t W, int64_t p, int64_t q,
                                                 PoolWindow win, bool count_include_pad) {
  int64_t rb, re, sb, se;
  pool_taps_inside(H, p, win.h, &rb, &re);
  pool_taps_inside(W, q, win.w, &sb, &se);
  const int64_t h0 = p * win.h.stride - win.h.pad, w0 = q * win.w.stride - win.w.pad;
  float sum = 0.0f;
  for (int64_t r = rb; r < re; ++r)
    for (int64_t s = sb; s < se; ++s) sum += plane[(h0 + r) * W + w0 + s];
  const int64_t divisor = avgpool2d_divisor(H, W, p, q, win, count_include_pad);
  return divisor == 0 ? 0.0f : sum / static_cast<float>(divisor);
}

// global_avgpool of one plane of `count` elements: the float sum in row-major order over count
// (one correctly rounded division, as avgpool's). float(count) is exact up to 2^24 elements.
PARITY_HD inline float global_avgpool_plane_f32(const float* plane, int64_t count) {
  float sum = 0.0f;
  for (int64_t i = 0; i < count; ++i) sum += plane[i];
  return sum / static_cast<float>(count);
}

// Input element (h, w) of dx's plane[H, W]: the sum, in row-major window order, of dy / divisor
// over every window holding it (dy's plane is [P, Q]). A gather, so no two writers meet.
PARITY_HD inline float avgpool2d_bwd_element_nchw_f32(const float* dy_plane, int64_t H, int64_t W, int64_t P, int64_t Q,
                                                      int64_t h, int64_t w, PoolWindow win, bool count_include_pad) {
  int64_t p0, p1, q0, q1;
  pool_windows_covering(h, win.h, P, &p0, &p1);
  pool_windows_covering(w, win.w, Q, &q0, &q1);
  float sum = 0.0f;
  for (int64_t p = p0; p <= p1; ++p)
    for (int64_t q = q0; q <= q1; ++q)
      sum += dy_plane[p * Q + q] / static_cast<float>(avgpool2d_divisor(H, W, p, q, win, count_include_pad));
  return sum;
}

// Input element (h, w) of maxpool's dx plane[H, W]: the sum, in row-major window order, of the
// dy of every window whose index is h*W + w (dy and idx planes are [P, Q]).
PARITY_HD inline float maxpool2d_bwd_element_nchw_f32(const float* dy_plane, const int32_t* idx_plane, int64_t W,
                                                      int64_t P, int64_t Q, int64_t h, int64_t w, PoolWindow win) {
  int64_t p0, p1, q0, q1;
  pool_windows_covering(h, win.h, P, &p0, &p1);
  pool_windows_covering(w, win.w, Q, &q0, &q1);
  const int64_t at = h * W + w;
  float sum = 0.0f;
  for (int64_t p = p0; p <= p1; ++p)
    for (int64_t q = q0; q <= q1; ++q)
      if (idx_plane[p * Q + q] == at) sum += dy_plane[p * Q + q];
  return sum;
}

}  // namespace kernels
}  // namespace parity
