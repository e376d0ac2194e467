// backends/cpu/gemm_rows.h — the linear layers' matrix products on AVX-512, with both operands
// read in place (nothing packed): the backwards' C = A B for a small inner dimension (the batch,
// or the output features), and the forward's C = A B^T with both operands' rows along a long
// inner dimension (the input features). Eigen's GEMM (gemm.h) packs both operands per call,
// which costs as much as the arithmetic when the inner dimension is 64 or 128, and in the forward
// repacks x for every chunk of w's rows.
#pragma once

#include <cstdint>

namespace parity {
namespace cpu {

// Whether this build has the kernels (compiled for AVX-512); without them callers use gemm_f32.
bool gemm_rows_available();

// C[i, j] = sum over k in order 0..K-1 of A(i, k) * B[k, j] for i < m, j < n, one fused
// multiply-add chain per element (so the result depends on the shapes only), where
// A(i, k) = a[i * a_row + k * a_col] and B's rows are ldb floats apart; C's rows are ldc apart.
// Single-threaded; callers split n. Needs gemm_rows_available().
void gemm_rows_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                   int64_t ldb, float* c, int64_t ldc);

// Columns of B one gemm_rows_f32 tile covers: a split of n into multiples of it has no masked tail.
constexpr int64_t kGemmRowsTileColumns = 32;

// C[i, j] = A[i, :] . B[j, :] (+ bias[j] when bias is not null) for i < m, j < n, with A's rows
// lda floats apart and B's ldb apart, each k floats long; C's rows ldc apart. The inner dimension
// is summed in blocks of kGemmDotBlock: 16 lanes of fused multiply-adds in k order within a
// block, the lanes added in a fixed tree, the blocks' sums added in order, then the bias. The
// order depends on k only, so the result depends on the shapes only. Single-threaded; callers
// split n. Needs gemm_rows_available().
void gemm_dot_rows_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       const float* bias, float* c, int64_t ldc);
constexpr int64_t kGemmDotBlock = 512;

}  // namespace cpu
}  // namespace parity
