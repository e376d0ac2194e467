// tests/test_emu_half_library.cpp — the emulated device's stand-ins for CUDA's half library calls
// (backends/gpu_emu/emu_half_library.h), on the host: what check_gemm refuses (a type a GemmEx
// operand does not hold, A and B of two types, a C type CUBLAS_COMPUTE_32F does not write, an
// Sgemm on half values, a matrix past its operand), that run_gemm accumulates in f32 and rounds a
// half C once, with its transposes and leading dimensions, that round_to_half adds the f32 bias
// before its one rounding, and channel_sum_f32's sums.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backends/gpu_emu/emu_half_library.h"
#include "ops/kernels/half.h"

namespace parity::emu_library {
namespace {

using plan::ElementType;
using plan::GemmCall;
using plan::Operand;

std::vector<uint16_t> bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(kernels::float_to_bf16_bits(f));
  return out;
}

// C [1x1] = A [1x3] B [3x1] in bf16, column-major, no transposes.
GemmCall dot3(ElementType c_type) {
  return GemmCall{false, false, 1, 1, 3, Operand::x, Operand::w, Operand::y, 1, 3, 1, 0.0f,
                  ElementType::bf16, ElementType::bf16, c_type};
}

TEST(GpuEmuHalfLibrary, CheckGemmRefusesWhatCublasWouldMisread) {
  const GemmCall g = dot3(ElementType::bf16);
  const GemmOperand a{ElementType::bf16, 3}, b{ElementType::bf16, 3}, c{ElementType::bf16, 1};
  EXPECT_EQ(check_gemm(g, a, b, c), "");
  // B described as f16 but holding bf16 values.
  GemmCall wrong = g;
  wrong.b_type = ElementType::f16;
  EXPECT_EQ(check_gemm(wrong, a, b, c),
            "cublasGemmEx A bf16 B f16 C bf16 compute 32F: operand B is described as f16 but holds bf16 values");
  // Described as its operands hold, but A and B of two types, or C neither theirs nor f32.
  EXPECT_NE(check_gemm(wrong, a, GemmOperand{ElementType::f16, 3}, c).find("A and B one type"), std::string::npos);
  GemmCall c_f16 = g;
  c_f16.c_type = ElementType::f16;
  EXPECT_NE(check_gemm(c_f16, a, b, GemmOperand{ElementType::f16, 1}).find("A and B one type, C theirs or f32"),
            std::string::npos);
  // C f32 (the staging of a half LINEAR) is one of GemmEx's combinations.
  EXPECT_EQ(check_gemm(dot3(ElementType::f32), a, b, GemmOperand{ElementType::f32, 1}), "");
  // An Sgemm (every type f32) on a half operand.
  GemmCall sgemm = dot3(ElementType::f32);
  sgemm.a_type = sgemm.b_type = ElementType::f32;
  EXPECT_EQ(check_gemm(sgemm, a, GemmOperand{ElementType::f32, 3}, GemmOperand{ElementType::f32, 1}),
            "cublasSgemm: operand A is described as f32 but holds bf16 values");
  // Sizes in elements: B's 3 rows do not fit 2 elements; a leading dimension below the rows.
  EXPECT_NE(check_gemm(g, a, GemmOperand{ElementType::bf16, 2}, c).find("operand B (3x1, leading dimension 3) reaches "
                                                                        "beyond its 2 elements"),
            std::string::npos);
  GemmCall short_ld = g;
  short_ld.ldb = 2;
  EXPECT_NE(check_gemm(short_ld, a, b, c).find("operand B"), std::string::npos);
}

// 1 + 2^-8 + 2^-9 is 1 + 0.75 ulp of bf16 at 1: rounded once from the f32 sum it is 1 + 2^-7;
// rounded after each addition (a half accumulator) it would stay 1.
TEST(GpuEmuHalfLibrary, GemmExAccumulatesInF32AndRoundsHalfCOnce) {
  const std::vector<uint16_t> a = bf16({1.0f, 0x1p-8f, 0x1p-9f}), b = bf16({1.0f, 1.0f, 1.0f});
  uint16_t c = 0xffff;
  run_gemm(dot3(ElementType::bf16), a.data(), b.data(), &c);
  EXPECT_EQ(kernels::bf16_bits_to_float(c), 1.0f + 0x1p-7f);
  float staging = 0.0f;  // C f32: the sum itself
  run_gemm(dot3(ElementType::f32), a.data(), b.data(), &staging);
  EXPECT_EQ(staging, 1.0f + 0x1p-8f + 0x1p-9f);
}

// C [2x2] = A^T B^T with A stored 3x2 (lda 4: a padding row) and B stored 2x3 (ldb 2), against
// the products written out.
TEST(GpuEmuHalfLibrary, GemmExTransposesAndLeadingDimensions) {
  // A column-major 3x2 with lda 4: columns (1,2,3,_) and (4,5,6,_); op(A) = A^T is 2x3.
  const std::vector<uint16_t> a = bf16({1, 2, 3, 99, 4, 5, 6, 99});
  // B column-major 2x3 with ldb 2: columns (1,0) (0,1) (1,1); op(B) = B^T is 3x2.
  const std::vector<uint16_t> b = bf16({1, 0, 0, 1, 1, 1});
  const GemmCall g{true, true, 2, 2, 3, Operand::w, Operand::x, Operand::staging, 4, 2, 2, 0.0f,
                   ElementType::bf16, ElementType::bf16, ElementType::f32};
  EXPECT_EQ(check_gemm(g, {ElementType::bf16, 8}, {ElementType::bf16, 6}, {ElementType::f32, 4}), "");
  float c[4] = {-1, -1, -1, -1};
  run_gemm(g, a.data(), b.data(), c);
  // op(A) rows (1,2,3), (4,5,6); op(B) columns (1,0,1), (0,1,1).
  EXPECT_EQ(c[0], 1 + 3);   // C(0,0)
  EXPECT_EQ(c[1], 4 + 6);   // C(1,0)
  EXPECT_EQ(c[2], 2 + 3);   // C(0,1)
  EXPECT_EQ(c[3], 5 + 6);   // C(1,1)
}

// y = round(acc + bias): 1 + 2^-8 plus a bias of 2^-9 rounds once to 1 + 2^-7 (bf16); rounding
// acc first (the tie 1 + 2^-8 goes to even, 1) would lose both.
TEST(GpuEmuHalfLibrary, RoundToHalfAddsTheBiasBeforeItsOneRounding) {
  const float acc[4] = {1.0f + 0x1p-8f, 2.0f, 1.0f + 0x1p-8f, -3.0f};  // [outer 2, channels 2, inner 1]
  const float bias[2] = {0x1p-9f, 0.5f};
  uint16_t y[4];
  round_to_half(acc, bias, 2, 2, 1, y, ElementType::bf16);
  EXPECT_EQ(kernels::bf16_bits_to_float(y[0]), 1.0f + 0x1p-7f);
  EXPECT_EQ(kernels::bf16_bits_to_float(y[1]), 2.5f);
  EXPECT_EQ(kernels::bf16_bits_to_float(y[2]), 1.0f + 0x1p-7f);
  EXPECT_EQ(kernels::bf16_bits_to_float(y[3]), -2.5f);
  uint16_t h[4];
  round_to_half(acc, nullptr, 2, 2, 1, h, ElementType::f16);  // no bias; f16 holds 1 + 2^-8 exactly
  EXPECT_EQ(kernels::f16_bits_to_float(h[0]), 1.0f + 0x1p-8f);
  EXPECT_EQ(kernels::f16_bits_to_float(h[3]), -3.0f);
}

TEST(GpuEmuHalfLibrary, ChannelSumSumsEveryOuterAndInnerElementInF32) {
  // dy [outer 2, channels 3, inner 2]: channel c holds c + 1 at every element, plus 0.25 in the last.
  std::vector<float> v;
  for (int o = 0; o < 2; ++o)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 2; ++i) v.push_back(static_cast<float>(c + 1) + (o == 1 && i == 1 ? 0.25f : 0.0f));
  const std::vector<uint16_t> dy = bf16(v);
  float db[3] = {0, 0, 0};
  channel_sum_f32(dy.data(), ElementType::bf16, 2, 3, 2, db);
  EXPECT_EQ(db[0], 4.25f);
  EXPECT_EQ(db[1], 8.25f);
  EXPECT_EQ(db[2], 12.25f);
}

}  // namespace
}  // namespace parity::emu_library
