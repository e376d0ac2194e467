// tests/test_gemm_bf16.cpp — backends/cpu/gemm_bf16: both routes (VDPBF16PS where this CPU has
// AVX512-BF16, and widening to gemm_f32) against a float64 product of the same bf16 values, and
// against each other, over odd shapes, transposed operands, strides and accumulate on and off;
// and the avx512_bf16 route on operands packed apart (gemm_bf16_packed) with its bf16 outputs.
//
// Error bound. Every product of two bf16 values is exact in float32 (8-bit significands give a
// 16-bit product, and the test's magnitudes, 2^-3..2^2, keep products and sums far from
// overflow and from the subnormals that VDPBF16PS flushes). So each route computes the sum of
// the k + 1 terms a_il b_lj (and C's old value when accumulating) in float32 with some order of
// rounded additions (VDPBF16PS rounds at each of its two accumulations, Eigen's FMAs once each,
// k-blocks are added into C): whatever the order, |computed - exact| <= gamma_{k+1} * sum |term|
// with gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability, 2nd ed., eq. 4.4
// and Lemma 3.1). That bound is what the routes are held to, element by element, and twice it
// between the routes. With small-integer inputs every partial sum is an integer below 2^24,
// exact in float32 in any order: there both routes must equal the reference exactly.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/cpu/gemm_bf16.h"
#include "ops/kernels/half.h"

namespace parity::cpu {
namespace {

using kernels::bf16_bits_to_float;
using kernels::float_to_bf16_bits;

struct Shape {
  int64_t m, n, k;
};

// Odd and even sizes around the kernel's blocks: 8-row tiles, 16-column panels (two per tile),
// k in pairs and in blocks of 512 (kKcPairs = 256 pairs).
const Shape kShapes[] = {{1, 1, 1},      {1, 1, 2},     {2, 3, 3},     {7, 15, 31},  {8, 16, 32},  {9, 17, 33},
                         {16, 32, 64},   {17, 33, 65},  {5, 47, 7},    {33, 100, 1}, {3, 31, 513}, {8, 48, 512},
                         {11, 64, 1025}, {24, 9, 1100}, {40, 130, 96}, {1, 200, 300}};

// A matrix of bf16 bit patterns stored with `stride` (cols + 3, to catch a stride mistaken for
// cols), values either random reals of magnitude 2^-3..2^2 or small integers.
struct Bf16Matrix {
  int64_t rows, cols, stride;
  std::vector<uint16_t> bits;
  double at(int64_t r, int64_t c) const { return bf16_bits_to_float(bits[static_cast<size_t>(r * stride + c)]); }
};

Bf16Matrix random_matrix(int64_t rows, int64_t cols, bool integers, std::mt19937& rng) {
  Bf16Matrix x{rows, cols, cols + 3, {}};
  x.bits.assign(static_cast<size_t>(rows * x.stride), float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()));
  std::uniform_real_distribution<float> magnitude(-3.0f, 2.0f);
  std::uniform_int_distribution<int> small(-8, 8);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float v = integers ? static_cast<float>(small(rng)) : std::exp2(magnitude(rng));
      if (!integers && (rng() & 1)) v = -v;
      x.bits[static_cast<size_t>(r * x.stride + c)] = float_to_bf16_bits(v);
    }
  return x;
}

// The stored matrix of op(X)[rows, cols]: [cols, rows] when transposed.
Bf16Matrix operand_matrix(int64_t rows, int64_t cols, bool transposed, bool integers, std::mt19937& rng) {
  return transposed ? random_matrix(cols, rows, integers, rng) : random_matrix(rows, cols, integers, rng);
}

double op_at(const Bf16Matrix& x, bool transposed, int64_t r, int64_t c) {
  return transposed ? x.at(c, r) : x.at(r, c);
}

// C with ldc = n + 5; the 5 columns past n and one row past m hold a sentinel gemm must keep.
constexpr float kSentinel = -12345.0f;

struct Product {
  std::vector<float> c;     // what gemm_bf16 wrote
  std::vector<double> ref;  // float64 product (+ old C)
  std::vector<double> abs;  // sum of |terms|, for the bound
};

std::vector<float> run_gemm(const Shape& s, const Bf16Matrix& a, bool at, const Bf16Matrix& b, bool bt,
                            const std::vector<float>& c_before, bool accumulate, Bf16GemmRoute route) {
  std::vector<float> c = c_before;
  std::vector<unsigned char> raw(static_cast<size_t>(gemm_bf16_scratch_bytes(s.m, s.n, s.k)) + 64);
  void* scratch = raw.data() + (64 - reinterpret_cast<uintptr_t>(raw.data()) % 64) % 64;
  gemm_bf16(s.m, s.n, s.k, {a.bits.data(), a.stride, at}, {b.bits.data(), b.stride, bt}, c.data(), s.n + 5, accumulate,
            scratch, route);
  return c;
}

std::vector<Bf16GemmRoute> routes_here() {
  std::vector<Bf16GemmRoute> routes{Bf16GemmRoute::f32_conversion};
  if (cpu_has_avx512_bf16()) routes.push_back(Bf16GemmRoute::avx512_bf16);
  return routes;
}

double gamma(int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u);
}

// Runs every shape, transpose and accumulate setting on every route of this CPU; checks each
// result against the float64 reference (exactly for integer inputs), the sentinels, and the
// routes against each other.
void check_all(bool integers) {
  std::mt19937 rng(integers ? 7 : 11);
  for (const Shape& s : kShapes)
    for (int transposes = 0; transposes < 4; ++transposes)
      for (bool accumulate : {false, true}) {
        const bool at = transposes & 1, bt = transposes & 2;
        const Bf16Matrix a = operand_matrix(s.m, s.k, at, integers, rng);
        const Bf16Matrix b = operand_matrix(s.k, s.n, bt, integers, rng);
        const int64_t ldc = s.n + 5;
        // Without accumulate, C starts as NaN: a route that reads it fails.
        std::vector<float> c_before(static_cast<size_t>((s.m + 1) * ldc), kSentinel);
        std::uniform_int_distribution<int> small(-8, 8);
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j)
            c_before[static_cast<size_t>(i * ldc + j)] =
                accumulate ? static_cast<float>(small(rng)) : std::numeric_limits<float>::quiet_NaN();
        std::vector<double> ref(static_cast<size_t>(s.m * s.n)), abs_sum(ref.size());
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j) {
            double sum = accumulate ? c_before[static_cast<size_t>(i * ldc + j)] : 0.0, abs = std::fabs(sum);
            for (int64_t l = 0; l < s.k; ++l) {
              const double term = op_at(a, at, i, l) * op_at(b, bt, l, j);
              sum += term;  // exact: 16-bit products, sums far inside double's 53 bits
              abs += std::fabs(term);
            }
            ref[static_cast<size_t>(i * s.n + j)] = sum;
            abs_sum[static_cast<size_t>(i * s.n + j)] = abs;
          }
        const std::string where = "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                                  " k=" + std::to_string(s.k) + (at ? " A^T" : "") + (bt ? " B^T" : "") +
                                  (accumulate ? " accumulate" : "");
        std::vector<std::vector<float>> results;
        for (Bf16GemmRoute route : routes_here()) {
          const std::vector<float> c = run_gemm(s, a, at, b, bt, c_before, accumulate, route);
          for (int64_t i = 0; i <= s.m; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const float got = c[static_cast<size_t>(i * ldc + j)];
              if (i == s.m || j >= s.n) {
                ASSERT_EQ(got, kSentinel)
                    << bf16_gemm_route_name(route) << " wrote outside C at " << i << "," << j << ", " << where;
                continue;
              }
              const double want = ref[static_cast<size_t>(i * s.n + j)];
              const double bound = integers ? 0.0 : gamma(s.k + 1) * abs_sum[static_cast<size_t>(i * s.n + j)];
              ASSERT_LE(std::fabs(got - want), bound) << bf16_gemm_route_name(route) << " C[" << i << "," << j
                                                      << "] = " << got << ", want " << want << ", " << where;
            }
          results.push_back(c);
        }
        if (results.size() == 2)
          for (int64_t i = 0; i < s.m; ++i)
            for (int64_t j = 0; j < s.n; ++j) {
              const size_t at_c = static_cast<size_t>(i * ldc + j);
              const double bound = integers ? 0.0 : 2 * gamma(s.k + 1) * abs_sum[static_cast<size_t>(i * s.n + j)];
              ASSERT_LE(std::fabs(double{results[0][at_c]} - results[1][at_c]), bound)
                  << "routes differ at C[" << i << "," << j << "], " << where;
            }
      }
}

TEST(GemmBf16, IntegerInputsAreExactOnEveryRoute) { check_all(true); }

TEST(GemmBf16, RealInputsWithinTheFloat32SummationBound) { check_all(false); }

TEST(GemmBf16, EmptyProducts) {
  // k = 0: C = 0 (or kept when accumulating), as gemm_f32 does.
  const uint16_t none = 0;
  for (Bf16GemmRoute route : routes_here()) {
    std::vector<float> c(6, 3.0f);
    gemm_bf16(2, 3, 0, {&none, 0, false}, {&none, 3, false}, c.data(), 3, true, nullptr, route);
    EXPECT_EQ(c, std::vector<float>(6, 3.0f));
    gemm_bf16(2, 3, 0, {&none, 0, false}, {&none, 3, false}, c.data(), 3, false, nullptr, route);
    EXPECT_EQ(c, std::vector<float>(6, 0.0f));
  }
}

// gemm_bf16_packed on operands packed by pack_a_bf16 / pack_b_bf16: C bitwise the avx512_bf16
// route's (its sums, whatever the shape, transposes and accumulate); y = bf16(relu?(C + bias))
// rounded as half.h rounds (bias absent: + 0, which makes -0 into +0), including k spanning
// several blocks; and with y_pitch, product column j stored at (j / pitch) width + j % pitch,
// columns past width dropped and nothing written past y's rows.
TEST(GemmBf16, PackedOperandsGiveTheRoutesSumsAndRoundedOutputs) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no avx512_bf16 on this CPU";
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-8, 8);
  for (const Shape& s : kShapes)
    for (int transposes = 0; transposes < 4; ++transposes) {
      const bool at = transposes & 1, bt = transposes & 2;
      const Bf16Matrix a = operand_matrix(s.m, s.k, at, false, rng);
      const Bf16Matrix b = operand_matrix(s.k, s.n, bt, false, rng);
      const int64_t ldc = s.n + 5;
      std::vector<float> c_before(static_cast<size_t>((s.m + 1) * ldc), kSentinel);
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) c_before[static_cast<size_t>(i * ldc + j)] = static_cast<float>(small(rng));
      std::vector<uint32_t> a_packed(static_cast<size_t>(packed_a_words(s.m, s.k))),
          b_packed(static_cast<size_t>(packed_b_words(s.n, s.k)));
      pack_a_bf16(s.m, s.k, {a.bits.data(), a.stride, at}, a_packed.data());
      pack_b_bf16(s.n, s.k, {b.bits.data(), b.stride, bt}, b_packed.data());
      const std::string where = "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
                                (at ? " A^T" : "") + (bt ? " B^T" : "");
      for (bool accumulate : {false, true}) {
        const std::vector<float> want = run_gemm(s, a, at, b, bt, c_before, accumulate, Bf16GemmRoute::avx512_bf16);
        std::vector<float> c = c_before;
        gemm_bf16_packed(s.m, s.n, s.k, a_packed.data(), b_packed.data(), GemmBf16Output{c.data(), ldc, accumulate});
        ASSERT_EQ(std::memcmp(c.data(), want.data(), c.size() * sizeof(float)), 0) << where << " accumulate " << accumulate;
      }
      // The rounded outputs, from the f32 sums just checked.
      const std::vector<float> sums = run_gemm(s, a, at, b, bt, c_before, false, Bf16GemmRoute::avx512_bf16);
      std::vector<float> bias(static_cast<size_t>(s.m));
      for (float& v : bias) v = static_cast<float>(small(rng)) * 0.5f;
      for (bool with_bias : {false, true})
        for (bool relu : {false, true}) {
          std::vector<float> c_scratch(static_cast<size_t>(s.m * s.n));
          const int64_t ldy = s.n + 3;
          std::vector<uint16_t> y(static_cast<size_t>((s.m + 1) * ldy), 0xABCD);
          GemmBf16Output out{c_scratch.data(), s.n, false, y.data(), ldy, with_bias ? bias.data() : nullptr, relu};
          gemm_bf16_packed(s.m, s.n, s.k, a_packed.data(), b_packed.data(), out);
          for (int64_t i = 0; i <= s.m; ++i)
            for (int64_t j = 0; j < ldy; ++j) {
              const uint16_t got = y[static_cast<size_t>(i * ldy + j)];
              if (i == s.m || j >= s.n) {
                ASSERT_EQ(got, 0xABCD) << "wrote outside y at " << i << "," << j << ", " << where;
                continue;
              }
              float v = sums[static_cast<size_t>(i * ldc + j)] + (with_bias ? bias[static_cast<size_t>(i)] : 0.0f);
              if (relu) v = v <= 0.0f ? 0.0f : v;
              ASSERT_EQ(got, float_to_bf16_bits(v)) << "y[" << i << "," << j << "] " << where << " bias " << with_bias
                                                    << " relu " << relu;
            }
        }
      // y_pitch: the n columns as rows of `pitch`, `width` of each kept (pitch >= 16).
      for (int64_t pitch : {16, 17, 22, 40}) {
        if (s.n < pitch) continue;
        const int64_t width = pitch - 1 - pitch % 3, rows = (s.n + pitch - 1) / pitch;
        const int64_t ldy = rows * width + 2;
        std::vector<float> c_scratch(static_cast<size_t>(s.m * s.n));
        std::vector<uint16_t> y(static_cast<size_t>((s.m + 1) * ldy), 0xABCD);
        GemmBf16Output out{c_scratch.data(), s.n, false, y.data(), ldy, bias.data(), false};
        out.y_pitch = pitch;
        out.y_width = width;
        gemm_bf16_packed(s.m, s.n, s.k, a_packed.data(), b_packed.data(), out);
        std::vector<uint16_t> want(y.size(), 0xABCD);
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j)
            if (j % pitch < width)
              want[static_cast<size_t>(i * ldy + j / pitch * width + j % pitch)] =
                  float_to_bf16_bits(sums[static_cast<size_t>(i * ldc + j)] + bias[static_cast<size_t>(i)]);
        ASSERT_EQ(y, want) << "pitch " << pitch << " width " << width << ", " << where;
      }
    }
}

TEST(GemmBf16, RouteMatchesTheCpu) {
  // PARITY_CPU_BF16 is read once per process; CTest runs this test without it.
  if (const char* env = std::getenv("PARITY_CPU_BF16"); env && std::string(env) == "convert") {
    EXPECT_EQ(bf16_gemm_route(), Bf16GemmRoute::f32_conversion);
    return;
  }
  EXPECT_EQ(bf16_gemm_route(), cpu_has_avx512_bf16() ? Bf16GemmRoute::avx512_bf16 : Bf16GemmRoute::f32_conversion);
  EXPECT_EQ(bf16_gemm_route_description(),
            cpu_has_avx512_bf16() ? "avx512_bf16 (vdpbf16ps)" : "f32 conversion (no avx512_bf16)");
}

}  // namespace
}  // namespace parity::cpu
