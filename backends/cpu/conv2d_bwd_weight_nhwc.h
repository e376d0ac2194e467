// backends/cpu/conv2d_bwd_weight_nhwc.h — conv2d's f32 backward-weight for stride 1, 3 kernel
// columns and C a multiple of 16 (AVX-512 builds), from a channels-last copy of each image.
#pragma once

#include <cstdint>

#include "backends/cpu/conv2d_direct_rows.h"

namespace parity {
namespace cpu {

// Whether the kernel takes the shape (s.N is not read): AVX-512 build, S = 3, C a multiple of
// 16, K a multiple of 8.
bool conv2d_bwd_weight_nhwc_applies(const DirectRowsShape& s);

// Floats of one worker slot's scratch (64-byte multiple): a padded channels-last image and
// dw in [K, R, S, C] order.
int64_t conv2d_bwd_weight_nhwc_slot_floats(const DirectRowsShape& s);

// One batch chunk's partials: dw_part[K, C, R, S] = sum over images [begin, end) and outputs of
// dy * x_pad, each element summed in (image, p, q) order; db_part[K] likewise (when not null).
void conv2d_bwd_weight_nhwc_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end,
                                      const DirectRowsShape& s, float* slot, float* dw_part, float* db_part);

}  // namespace cpu
}  // namespace parity
