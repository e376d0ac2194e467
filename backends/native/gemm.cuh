// backends/native/gemm.cuh — tiled SGEMM with shared memory over strided operands, batched on
// blockIdx.z: C(m,n) [+]= sum_k A(m,k) B(k,n) + bias(m,n). Strides express every transpose
// linear and convolution need, so one kernel serves them all. Each output is summed over k in
// one fixed order: bitwise reproducible.
#pragma once

#include <stdint.h>

#include "backends/native/launch_shape.cuh"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

constexpr int kGemmTile = 16;  // 16x16 threads, one output each; blocks of 256 hold whole warps

struct GemmArgs {
  const float* a;
  int64_t a_row, a_col, a_batch;  // A(m,k) = a[batch*a_batch + m*a_row + k*a_col]
  const float* b;
  int64_t b_row, b_col, b_batch;  // B(k,n) = b[batch*b_batch + k*b_row + n*b_col]
  float* c;
  int64_t c_row, c_batch;         // C(m,n) = c[batch*c_batch + m*c_row + n]
  const float* bias;              // nullable: bias(m,n) = bias[m*bias_m + n*bias_n]
  int64_t bias_m, bias_n;
  int64_t m, n, k;
  int accumulate;                 // nonzero: C += A B, else C = A B (+ bias)
};

PK_GLOBAL void gemm_strided_f32(GemmArgs g) {
  PK_SHARED(float, a_tile, kGemmTile * (kGemmTile + 1));  // +1: no bank conflicts on the transposed read
  PK_SHARED(float, b_tile, kGemmTile * (kGemmTile + 1));
  const int tx = pk::thread_x(), ty = pk::thread_y();
  const int64_t batch = pk::block_z();
  const int64_t row = int64_t{pk::block_y()} * kGemmTile + ty;
  const int64_t col = int64_t{pk::block_x()} * kGemmTile + tx;
  const float* a = g.a + batch * g.a_batch;
  const float* b = g.b + batch * g.b_batch;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < g.k; k0 += kGemmTile) {
    const int64_t ka = k0 + tx, kb = k0 + ty;
    a_tile[ty * (kGemmTile + 1) + tx] = (row < g.m && ka < g.k) ? a[row * g.a_row + ka * g.a_col] : 0.0f;
    b_tile[ty * (kGemmTile + 1) + tx] = (kb < g.k && col < g.n) ? b[kb * g.b_row + col * g.b_col] : 0.0f;
    PK_SYNC();
    for (int kk = 0; kk < kGemmTile; ++kk) acc += a_tile[ty * (kGemmTile + 1) + kk] * b_tile[kk * (kGemmTile + 1) + tx];
    PK_SYNC();
  }
  if (row < g.m && col < g.n) {
    float* c = g.c + batch * g.c_batch + row * g.c_row + col;
    if (g.bias) acc += g.bias[row * g.bias_m + col * g.bias_n];
    *c = g.accumulate ? *c + acc : acc;
  }
}

inline void gemm(const GemmArgs& g, int64_t batches) {
  if (g.m == 0 || g.n == 0 || batches == 0) return;
  const pk::Dim3 grid = pk::dim3(static_cast<unsigned>((g.n + kGemmTile - 1) / kGemmTile),
                                 static_cast<unsigned>((g.m + kGemmTile - 1) / kGemmTile),
                                 static_cast<unsigned>(batches));
  PK_LAUNCH(gemm_strided_f32, grid, pk::dim3(kGemmTile, kGemmTile), g);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
