// backends/cpu/gemm_rows.h — the linear backwards' matrix product on AVX-512: C = A B for a
// small inner dimension (the batch, or the output features), B read in place row by row and A's
// elements broadcast, so nothing is packed. Eigen's GEMM (gemm.h) packs both operands per call,
// which costs as much as the arithmetic when the inner dimension is 64 or 128.
#pragma once

#include <cstdint>

namespace parity {
namespace cpu {

// Whether this build has the kernel (compiled for AVX-512); without it callers use gemm_f32.
bool gemm_rows_available();

// C[i, j] = sum over k in order 0..K-1 of A(i, k) * B[k, j] for i < m, j < n, one fused
// multiply-add chain per element (so the result depends on the shapes only), where
// A(i, k) = a[i * a_row + k * a_col] and B's rows are ldb floats apart; C's rows are ldc apart.
// Single-threaded; callers split n. Needs gemm_rows_available().
void gemm_rows_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                   int64_t ldb, float* c, int64_t ldc);

// Columns of B a kernel tile covers: a split of n into multiples of it has no masked tail.
constexpr int64_t kGemmRowsTileColumns = 32;

}  // namespace cpu
}  // namespace parity
