// backends/cpu/gemm_rows.cpp — the unpacked AVX-512 products of gemm_rows.h. gemm_rows_f32: tiles
// of 8 rows of C by 32 columns (16 accumulators), B's 32 columns of row k loaded once per k and
// A(i, k) broadcast; a 32-column tile of B stays in L1 while every row block of C passes over it.
// gemm_dot_rows_f32: tiles of 4 rows of A by 4 rows of B (16 accumulators, one per element of C)
// over one block of the inner dimension, 8 loads per 16 fused multiply-adds; a block of A's rows
// (4 x 512 floats) stays in L1 while B's rows of the block pass over it.
#include "backends/cpu/gemm_rows.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace parity {
namespace cpu {

#if defined(__AVX512F__)
namespace {

constexpr int kRows = 8;

// Rows [0, MR) of C by the 32 columns at b / c. kMasked: the columns past the masks are neither
// read nor written (a tail tile); full tiles use plain loads, which AMD cores run faster.
template <int MR, bool kMasked>
void tile(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb, float* c,
          int64_t ldc, __mmask16 lo, __mmask16 hi) {
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    const float* row = b + kk * ldb;
    const __m512 b0 = kMasked ? _mm512_maskz_loadu_ps(lo, row) : _mm512_loadu_ps(row);
    const __m512 b1 = kMasked ? _mm512_maskz_loadu_ps(hi, row + 16) : _mm512_loadu_ps(row + 16);
    const float* ak = a + kk * a_col;
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(ak[r * a_row]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* out = c + r * ldc;
    if (kMasked) {
      _mm512_mask_storeu_ps(out, lo, acc[r][0]);
      _mm512_mask_storeu_ps(out + 16, hi, acc[r][1]);
    } else {
      _mm512_storeu_ps(out, acc[r][0]);
      _mm512_storeu_ps(out + 16, acc[r][1]);
    }
  }
}

template <bool kMasked>
void rows_remainder(int rows, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                    float* c, int64_t ldc, __mmask16 lo, __mmask16 hi) {
  switch (rows) {
    case 1: return tile<1, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    case 2: return tile<2, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    case 3: return tile<3, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    case 4: return tile<4, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    case 5: return tile<5, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    case 6: return tile<6, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    case 7: return tile<7, kMasked>(k, a, a_row, a_col, b, ldb, c, ldc, lo, hi);
    default: return;
  }
}

template <bool kMasked>
void column_tile(int64_t m, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                 float* c, int64_t ldc, __mmask16 lo, __mmask16 hi) {
  int64_t i = 0;
  for (; i + kRows <= m; i += kRows)
    tile<kRows, kMasked>(k, a + i * a_row, a_row, a_col, b, ldb, c + i * ldc, ldc, lo, hi);
  if (i < m)
    rows_remainder<kMasked>(static_cast<int>(m - i), k, a + i * a_row, a_row, a_col, b, ldb, c + i * ldc, ldc, lo, hi);
}

// The sum of v's 16 lanes in a fixed tree: halves, quarters, pairs, then neighbours.
// (_mm512_reduce_add_ps does the same, but GCC 12's headers warn on it and on the unmasked
// shuffles: their unused pass-through operand is left undefined; the full masks cost nothing.)
inline float sum_lanes(__m512 v) {
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// The dot products of rows [0, MR) of A with rows [0, NR) of B over k floats (one block), added
// to C (or stored, when `first`), and the bias added after the last block.
template <int MR, int NR>
void dot_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool first, const float* bias,
              float* c, int64_t ldc) {
  __m512 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) acc[r][q] = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 16 <= k; kk += 16) {
    __m512 bv[NR];
    for (int q = 0; q < NR; ++q) bv[q] = _mm512_loadu_ps(b + q * ldb + kk);
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_loadu_ps(a + r * lda + kk);
      for (int q = 0; q < NR; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
    }
  }
  if (kk < k) {  // the last partial vector: the lanes past k load zeros
    const __mmask16 mask = __mmask16((1u << (k - kk)) - 1);
    __m512 bv[NR];
    for (int q = 0; q < NR; ++q) bv[q] = _mm512_maskz_loadu_ps(mask, b + q * ldb + kk);
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_maskz_loadu_ps(mask, a + r * lda + kk);
      for (int q = 0; q < NR; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) {
      const float sum = sum_lanes(acc[r][q]);
      float& out = c[r * ldc + q];
      out = first ? sum : out + sum;
      if (bias) out += bias[q];
    }
}

template <int MR>
void dot_rows_of_b(int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool first,
                   const float* bias, float* c, int64_t ldc) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) dot_tile<MR, 4>(k, a, lda, b + j * ldb, ldb, first, bias ? bias + j : nullptr, c + j, ldc);
  const float* bias_j = bias ? bias + j : nullptr;
  switch (n - j) {
    case 1: return dot_tile<MR, 1>(k, a, lda, b + j * ldb, ldb, first, bias_j, c + j, ldc);
    case 2: return dot_tile<MR, 2>(k, a, lda, b + j * ldb, ldb, first, bias_j, c + j, ldc);
    case 3: return dot_tile<MR, 3>(k, a, lda, b + j * ldb, ldb, first, bias_j, c + j, ldc);
    default: return;
  }
}

}  // namespace

bool gemm_rows_available() { return true; }

void gemm_dot_rows_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       const float* bias, float* c, int64_t ldc) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = bias ? bias[j] : 0.0f;
    return;
  }
  for (int64_t k0 = 0; k0 < k; k0 += kGemmDotBlock) {
    const int64_t kb = k - k0 < kGemmDotBlock ? k - k0 : kGemmDotBlock;
    const bool first = k0 == 0, last = k0 + kb == k;
    const float* bias_here = last ? bias : nullptr;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
      dot_rows_of_b<4>(n, kb, a + i * lda + k0, lda, b + k0, ldb, first, bias_here, c + i * ldc, ldc);
    const float* a_i = a + i * lda + k0;
    float* c_i = c + i * ldc;
    switch (m - i) {
      case 1: dot_rows_of_b<1>(n, kb, a_i, lda, b + k0, ldb, first, bias_here, c_i, ldc); break;
      case 2: dot_rows_of_b<2>(n, kb, a_i, lda, b + k0, ldb, first, bias_here, c_i, ldc); break;
      case 3: dot_rows_of_b<3>(n, kb, a_i, lda, b + k0, ldb, first, bias_here, c_i, ldc); break;
      default: break;
    }
  }
}

void gemm_rows_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                   int64_t ldb, float* c, int64_t ldc) {
  int64_t j = 0;
  for (; j + kGemmRowsTileColumns <= n; j += kGemmRowsTileColumns)
    column_tile<false>(m, k, a, a_row, a_col, b + j, ldb, c + j, ldc, 0xFFFF, 0xFFFF);
  if (j < n) {
    const int64_t left = n - j;
    const __mmask16 lo = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __mmask16 hi = left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
    column_tile<true>(m, k, a, a_row, a_col, b + j, ldb, c + j, ldc, lo, hi);
  }
}

#else

bool gemm_rows_available() { return false; }

void gemm_rows_f32(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*,
                   int64_t) {}
void gemm_dot_rows_f32(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, const float*, float*,
                       int64_t) {}

#endif

}  // namespace cpu
}  // namespace parity
