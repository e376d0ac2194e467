// tests/test_gemm_rows.cpp — backends/cpu/gemm_rows: the linear backwards' unpacked AVX-512
// product. Each element of C is one fused multiply-add chain in k order starting from 0, so it
// must equal, bit for bit, the scalar chain acc = fma(A(i,k), B[k,j], acc) for k = 0..K-1: any
// other order, a lost or repeated term, a wrong stride or a tail column read or written wrongly
// changes bits. Checked over row counts with and without the 8-row remainder, column counts with
// and without the 32-column tail (below 16, exactly 16, between 16 and 32), both ways A is laid
// out (the backwards' dy and dy transposed), row strides past the columns used, and C's columns
// outside the product left untouched. (The linear backwards built on it are checked against ref
// by `parity check ops` and the model checks.)
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backends/cpu/gemm_rows.h"

namespace parity::cpu {
namespace {

struct Shape {
  int64_t m, n, k;
};

std::vector<float> random_floats(size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(count);
  for (float& x : v) x = u(rng);
  return v;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(GemmRows, EachElementIsTheFmaChainInKOrderBitForBit) {
  if (!gemm_rows_available()) GTEST_SKIP() << "built without AVX-512: the linear backwards use gemm_f32";
  std::mt19937 rng(7);
  const Shape shapes[] = {{64, 1568, 128}, {128, 1568, 64}, {8, 32, 1},  {1, 1, 1},   {7, 5, 3},
                          {9, 16, 17},     {15, 33, 8},     {17, 48, 64}, {64, 392, 128}, {3, 31, 200}};
  for (const Shape& s : shapes) {
    for (const bool a_transposed : {false, true}) {
      // A(i,k) at a[i * a_row + k * a_col]: dy [m,k] (a_row = k) or dy^T (dy is [k,m], a_col = m).
      const int64_t a_row = a_transposed ? 1 : s.k, a_col = a_transposed ? s.m : 1;
      const int64_t ldb = s.n + 5, ldc = s.n + 3;  // rows longer than the columns used
      const std::vector<float> a = random_floats(static_cast<size_t>(s.m * s.k), rng);
      const std::vector<float> b = random_floats(static_cast<size_t>(s.k * ldb), rng);
      std::vector<float> c(static_cast<size_t>(s.m * ldc), 1234.5f);
      gemm_rows_f32(s.m, s.n, s.k, a.data(), a_row, a_col, b.data(), ldb, c.data(), ldc);
      int64_t wrong = 0;
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          float want = 1234.5f;  // past column n: untouched
          if (j < s.n) {
            want = 0.0f;
            for (int64_t kk = 0; kk < s.k; ++kk) want = std::fma(a[i * a_row + kk * a_col], b[kk * ldb + j], want);
          }
          const float got = c[i * ldc + j];
          if (bits(got) != bits(want) && ++wrong <= 3)
            ADD_FAILURE() << "m " << s.m << " n " << s.n << " k " << s.k << (a_transposed ? " A transposed" : "")
                          << ": C[" << i << "," << j << "] = " << got << ", the fma chain gives " << want;
        }
      }
      EXPECT_EQ(wrong, 0) << "m " << s.m << " n " << s.n << " k " << s.k;
    }
  }
}

}  // namespace
}  // namespace parity::cpu
