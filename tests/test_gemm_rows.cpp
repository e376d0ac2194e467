// tests/test_gemm_rows.cpp — backends/cpu/gemm_rows: the linear layers' unpacked AVX-512
// products, each against a scalar emulation of its documented order, bit for bit.
//
// gemm_rows_f32 (the backwards). Each element of C is one fused multiply-add chain in k order starting from 0, so it
// must equal, bit for bit, the scalar chain acc = fma(A(i,k), B[k,j], acc) for k = 0..K-1: any
// other order, a lost or repeated term, a wrong stride or a tail column read or written wrongly
// changes bits. Checked over row counts with and without the 8-row remainder, column counts with
// and without the 32-column tail (below 16, exactly 16, between 16 and 32), both ways A is laid
// out (the backwards' dy and dy transposed), row strides past the columns used, and C's columns
// outside the product left untouched.
//
// gemm_dot_rows_f32 (the forward): per block of 512 along k, 16 lanes of fma chains (lane l takes
// k = l, l + 16, ...; the last partial vector's missing lanes add 0 * 0), the lanes summed in the
// kernel's tree (lane l with lane l ^ 8, then ^ 4, ^ 2, ^ 1), the blocks' sums added to C in
// order, then the bias. Checked over k below, at and past 16 and 512, row counts of A and B with
// and without the 4-row remainders, bias and none, and row strides past k.
// (The linear ops built on both are checked against ref by `parity check ops` and the model
// checks.)
#include <algorithm>
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

// The scalar emulation of gemm_dot_rows_f32's order for one element.
float dot_in_kernel_order(const float* a, const float* b, int64_t k, const float* bias) {
  float c = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kGemmDotBlock) {
    const int64_t end = std::min(k, k0 + kGemmDotBlock);
    float lanes[16] = {};
    for (int64_t kk = k0; kk < end; kk += 16)
      for (int64_t l = 0; l < 16; ++l)
        lanes[l] = kk + l < end ? std::fma(a[kk + l], b[kk + l], lanes[l]) : std::fma(0.0f, 0.0f, lanes[l]);
    for (const int step : {8, 4, 2, 1}) {
      float next[16];
      for (int l = 0; l < 16; ++l) next[l] = lanes[l] + lanes[l ^ step];
      std::memcpy(lanes, next, sizeof lanes);
    }
    c = k0 == 0 ? lanes[0] : c + lanes[0];
  }
  return bias ? c + *bias : c;
}

TEST(GemmDotRows, EachElementFollowsTheKernelsOrderBitForBit) {
  if (!gemm_rows_available()) GTEST_SKIP() << "built without AVX-512: the linear forward uses gemm_f32";
  std::mt19937 rng(11);
  const Shape shapes[] = {{64, 64, 1568}, {64, 10, 128}, {1, 1, 1},    {3, 5, 15},  {4, 4, 16},
                          {5, 7, 17},     {6, 3, 512},   {9, 2, 513},  {2, 9, 1100}, {4, 1, 31}};
  for (const Shape& s : shapes) {
    for (const bool with_bias : {false, true}) {
      const int64_t lda = s.k + 3, ldb = s.k + 7, ldc = s.n + 2;
      const std::vector<float> a = random_floats(static_cast<size_t>(s.m * lda), rng);
      const std::vector<float> b = random_floats(static_cast<size_t>(s.n * ldb), rng);
      const std::vector<float> bias = random_floats(static_cast<size_t>(s.n), rng);
      std::vector<float> c(static_cast<size_t>(s.m * ldc), 1234.5f);
      gemm_dot_rows_f32(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, with_bias ? bias.data() : nullptr, c.data(), ldc);
      int64_t wrong = 0;
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          const float want = j < s.n ? dot_in_kernel_order(&a[i * lda], &b[j * ldb], s.k, with_bias ? &bias[j] : nullptr)
                                     : 1234.5f;  // past column n: untouched
          const float got = c[i * ldc + j];
          if (bits(got) != bits(want) && ++wrong <= 3)
            ADD_FAILURE() << "m " << s.m << " n " << s.n << " k " << s.k << (with_bias ? " bias" : "") << ": C[" << i
                          << "," << j << "] = " << got << ", the kernel's order gives " << want;
        }
      }
      EXPECT_EQ(wrong, 0) << "m " << s.m << " n " << s.n << " k " << s.k;
    }
  }
}

}  // namespace
}  // namespace parity::cpu
