// backends/cpu/gemm_rows.cpp — the unpacked AVX-512 product of gemm_rows.h: tiles of 8 rows of C
// by 32 columns (16 accumulators), B's 32 columns of row k loaded once per k and A(i, k)
// broadcast; a 32-column tile of B stays in L1 while every row block of C passes over it.
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

}  // namespace

bool gemm_rows_available() { return true; }

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

#endif

}  // namespace cpu
}  // namespace parity
