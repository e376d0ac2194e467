// ops/kernels/pool.h — max-pooling window math over NCHW planes (PyTorch semantics: no padding,
// floor division, first maximum in row-major window order, NaN propagates).
#pragma once

#include <stdint.h>

#include "ops/kernels/conv_geometry.h"  // pool2d_output_size
#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

// Whether value v replaces the running maximum `best` of a window scanned in row-major order:
// only a strictly greater value does, so ties keep the first; a NaN always does, as in
// PyTorch's CPU kernel (so a window with NaNs reports its last NaN).
// (Bitwise |, not ||: no short-circuit branch, so hosts compile the scan to selects.)
PARITY_HD inline bool maxpool2d_replaces(float v, float best) { return (v > best) | (v != v); }

// The maximum of the kh x kw window whose top-left is (h0, w0) in plane[H, W], and its flat
// index h*W + w in the plane.
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

}  // namespace kernels
}  // namespace parity
