// backends/cuda/cuda_half_kernels.cu — the kernels of cuda_half_kernels.h: the bias-and-round
// epilogue of half products and the f32 channel sum of half dy. Compiled by nvcc into the CUDA
// plugin only; never executed here (no NVIDIA GPU).
#include "backends/cuda/cuda_half_kernels.h"

#include "backends/cuda/cuda_check.h"
#include "ops/kernels/half.h"

namespace parity {
namespace gpu {
namespace half_kernels {
namespace {

constexpr int kBlock = 256;  // threads per block of both kernels (the channel sum's tree depends on it)

__device__ float widen(const void* x, int64_t e, bool bf16) {
  const uint16_t bits = static_cast<const uint16_t*>(x)[e];
  return bf16 ? kernels::bf16_bits_to_float(bits) : kernels::f16_bits_to_float(bits);
}

__global__ void round_to_half_kernel(const float* acc, const float* bias, int64_t channels, int64_t inner,
                                     int64_t count, uint16_t* y, bool bf16) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += stride) {
    const float v = bias ? acc[e] + bias[e / inner % channels] : acc[e];
    y[e] = bf16 ? kernels::float_to_bf16_bits(v) : kernels::float_to_f16_bits(v);
  }
}

__global__ void channel_sum_kernel(const void* dy, int64_t outer, int64_t channels, int64_t inner, float* db,
                                   bool bf16) {
  __shared__ float partial[kBlock];
  const int64_t c = blockIdx.x, count = outer * inner;
  float sum = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += kBlock) sum += widen(dy, (e / inner * channels + c) * inner + e % inner, bf16);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kBlock / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[c] = partial[0];
}

bool is_bf16(parity_dtype dtype) {
  if (dtype != PARITY_BF16 && dtype != PARITY_F16)
    throw cuda_decisions::CudaError(PARITY_STATUS_INTERNAL,
                                    native::msg("cuda: a half kernel called with dtype ", static_cast<int>(dtype)));
  return dtype == PARITY_BF16;
}

}  // namespace

void round_to_half(const float* acc, const float* bias, int64_t outer, int64_t channels, int64_t inner, void* y,
                   parity_dtype dtype, cudaStream_t stream) {
  const bool bf16 = is_bf16(dtype);
  const int64_t count = outer * channels * inner;
  if (count == 0) return;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  round_to_half_kernel<<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), kBlock, 0, stream>>>(
      acc, bias, channels, inner, count, static_cast<uint16_t*>(y), bf16);
  CUDA_CHECK(cudaGetLastError());
}

void channel_sum_f32(const void* dy, parity_dtype dtype, int64_t outer, int64_t channels, int64_t inner, float* db,
                     cudaStream_t stream) {
  const bool bf16 = is_bf16(dtype);
  if (channels == 0) return;
  if (channels > INT32_MAX)
    throw cuda_decisions::CudaError(PARITY_STATUS_UNSUPPORTED, native::msg("cuda: ", channels, " channels: above a grid"));
  channel_sum_kernel<<<static_cast<unsigned>(channels), kBlock, 0, stream>>>(dy, outer, channels, inner, db, bf16);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace half_kernels
}  // namespace gpu
}  // namespace parity
