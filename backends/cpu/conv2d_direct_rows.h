// backends/cpu/conv2d_direct_rows.h — the f32 direct convolution over flattened padded rows
// (stride 1, pad < kernel): conv2d's forward and its flipped backward-data on AVX-512 builds.
#pragma once

#include <cstdint>

namespace parity {
namespace cpu {

struct BoundNode;

// A plain (one group, no dilation, symmetric padding) stride-1 convolution x[N,C,H,W] *
// w[K,C,R,S] -> y[N,K,P,Q].
struct DirectRowsShape {
  int64_t N, C, H, W, K, R, S, P, Q, pad_h, pad_w;
};

// Whether conv2d_direct_rows_f32 takes the shape: AVX-512 build, pad_h < R and pad_w < S (any
// K: channels past the last multiple of 8 run as one narrower block).
bool conv2d_direct_rows_applies(const DirectRowsShape& s);

// Floats of one worker slot's padded image (64-byte multiple).
int64_t conv2d_direct_rows_image_floats(const DirectRowsShape& s);

// y = conv(x, w) (+ b per output channel, then relu as kernels::relu_f32 when `relu`), images in
// parallel. `wt` holds the weights as [C, R, S, K]; `xpads` one padded image per worker slot.
// Each output sums its taps in (c, r, s) order, then adds the bias: bitwise reproducible at any
// thread count. `pool_after` (NodeFusion::pool_after, a 2x2 max-pool of y): each image's pool
// output rows are computed (maxpool2x2_rows_f32) as soon as the two rows of y they read are
// written for every channel, while those rows are still in cache.
void conv2d_direct_rows_f32(const float* x, const float* wt, const float* b, bool relu, float* y,
                            const DirectRowsShape& s, float* xpads, int32_t slots,
                            const BoundNode* pool_after = nullptr);

}  // namespace cpu
}  // namespace parity
