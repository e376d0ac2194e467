// backends/cuda/cuda_half_kernels.h — the CUDA plugin's own kernels around its half-precision
// (bf16, f16) library calls: the epilogue that adds an f32 bias to an f32 product and rounds once
// to the half dtype, and the f32 bias gradient of half dy (cuda_decisions.h: RoundCall,
// ChannelSumCall). Compiled only into the CUDA plugin (cuda_half_kernels.cu); the rounding is
// ops/kernels/half.h's, bit for bit what cpu and ref's rounding do.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "parity/plugin.h"

namespace parity {
namespace gpu {
namespace half_kernels {

// Tensors as [outer, channels, inner] (linear: [N, O, 1]; a convolution's: [N, K, H*W]).
// y[o,c,i] = round_to_nearest_even_as(dtype, acc[o,c,i] + bias[c]) (bias nullptr: acc alone); the
// sum in f32, one rounding. dtype: PARITY_BF16 or PARITY_F16. y must not overlap acc.
void round_to_half(const float* acc, const float* bias, int64_t outer, int64_t channels, int64_t inner, void* y,
                   parity_dtype dtype, cudaStream_t stream);
// db[c] = the sum over o and i of dy[o,c,i] widened to f32, summed in f32 in an order fixed by the
// sizes alone (one block per channel of a fixed size, a fixed tree): bitwise repeatable.
void channel_sum_f32(const void* dy, parity_dtype dtype, int64_t outer, int64_t channels, int64_t inner, float* db,
                     cudaStream_t stream);

}  // namespace half_kernels
}  // namespace gpu
}  // namespace parity
