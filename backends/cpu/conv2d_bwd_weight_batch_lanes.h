// backends/cpu/conv2d_bwd_weight_batch_lanes.h — conv2d's f32 backward-weight for stride 1, small
// images (Q < 16) and 3 or 5 kernel columns (AVX-512 builds), with the 16 lanes along the images
// of a batch chunk.
#pragma once

#include <cstdint>

#include "backends/cpu/conv2d_direct_rows.h"

namespace parity {
namespace cpu {

// Images per batch chunk: one per lane. The caller's chunks must be of this size (the last may
// be smaller), so the partials depend on N alone.
constexpr int64_t kBatchLanesChunk = 16;

// Whether the kernel takes the shape (s.N is not read): AVX-512 build, Q < 16 (where lanes along
// the output row would leave some idle), S = 3 with K a multiple of 8 or S = 5 with K a
// multiple of 4, and a chunk's lane-interleaved image at most 1 MiB.
bool conv2d_bwd_weight_batch_lanes_applies(const DirectRowsShape& s);

// Floats of one worker slot's scratch (64-byte multiple): the chunk's padded images and dy,
// 16 lanes (images) per element.
int64_t conv2d_bwd_weight_batch_lanes_slot_floats(const DirectRowsShape& s);

// One batch chunk's partials (end - begin <= kBatchLanesChunk images): dw_part[K, C, R, S] =
// sum over images [begin, end) and outputs of dy * x_pad, and db_part[K] the sum of dy (when not
// null). Each image's lane sums its outputs in (p, q) order; the 16 lanes are then added in one
// fixed pairwise order: reproducible at any thread count.
void conv2d_bwd_weight_batch_lanes_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end,
                                             const DirectRowsShape& s, float* slot, float* dw_part, float* db_part);

}  // namespace cpu
}  // namespace parity
