// tests/test_half.cpp — ops/kernels/half.h against an exact double-precision rounding oracle,
// Eigen 3.4's bfloat16 and half, and the x86 instructions where this CPU has them (F16C
// VCVTPS2PH / VCVTPH2PS; AVX512-BF16 VCVTNEPS2BF16): every half bit pattern, every rounding
// boundary, the special values and 2^24 float32 patterns spread over the whole bit space; and
// torch 1.13's conversions of 1061 patterns (tests/data/half_torch.json).
#include <cpuid.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "ops/kernels/half.h"

namespace parity::kernels {
namespace {

bool bf16_is_nan(uint16_t h) { return (h & 0x7FFF) > 0x7F80; }
bool f16_is_nan(uint16_t h) { return (h & 0x7FFF) > 0x7C00; }

// The float32 bit patterns of the sample: 2^24 of them, one in every 256 consecutive patterns,
// the low byte varying so that every rounding position sees all kinds of dropped bits.
std::vector<uint32_t> sample_patterns() {
  std::vector<uint32_t> v;
  v.reserve(1u << 24);
  for (uint32_t i = 0; i < (1u << 24); ++i) v.push_back(i << 8 | ((i * 0x9E3779B1u) >> 24));
  return v;
}

// The oracle: `x` rounded to nearest even to a binary format with `fraction_bits` stored
// fraction bits, smallest normal exponent `min_exponent` and largest finite `max_finite`, in
// double arithmetic (nearbyint in the default rounding mode is ties-to-even; every product
// below is exact). Independent of half.h's bit manipulation. x is finite.
double oracle_round(float x, int fraction_bits, int min_exponent, double max_finite) {
  const double magnitude = std::fabs(static_cast<double>(x));
  int e = 0;
  std::frexp(magnitude, &e);  // magnitude = f * 2^e, f in [0.5, 1)
  const int exponent = std::max(e - 1, min_exponent);
  const double units = std::nearbyint(std::ldexp(magnitude, fraction_bits - exponent));
  double rounded = std::ldexp(units, exponent - fraction_bits);
  // Overflow: what rounds beyond the largest finite, at the precision of the top binade, is inf.
  if (rounded > max_finite) rounded = std::numeric_limits<double>::infinity();
  return std::copysign(rounded, static_cast<double>(x));
}
double oracle_bf16(float x) { return oracle_round(x, 7, -126, 0x1.FEp127); }
double oracle_f16(float x) { return oracle_round(x, 10, -14, 65504.0); }

// Whether `got`, the half conversion of the float32 `bits` (decoded by `decode`), is the
// oracle's value `want`, zeros with the same sign.
template <class Decode>
::testing::AssertionResult matches_oracle(uint32_t bits, uint16_t got, double want, Decode decode, const char* format) {
  const double got_value = decode(got);
  if (got_value == want && std::signbit(got_value) == std::signbit(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << format << " of f32 0x" << std::hex << bits << " gives 0x" << got << " = "
                                       << got_value << ", want " << want;
}

// CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c").
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
}

// F16C's VCVTPS2PH (round to nearest even, imm 0) and VCVTPH2PS, compiled for F16C alone so
// that the test builds without -march=native; called only where the CPU has it.
__attribute__((target("f16c"))) uint16_t f16c_convert(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float f16c_widen(uint16_t h) { return _cvtsh_ss(h); }

TEST(Half, EveryBf16PatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = bf16_bits_to_float(bits);
    ASSERT_EQ(f32_bits(f), h << 16);  // exact, NaN payloads included
    // Eigen's bfloat16 -> float is the same shift.
    ASSERT_EQ(f32_bits(static_cast<float>(Eigen::numext::bit_cast<Eigen::bfloat16>(bits))), h << 16);
    const uint16_t back = float_to_bf16_bits(f);
    if (bf16_is_nan(bits))
      ASSERT_EQ(back, bits | 0x0040) << std::hex << h;  // still NaN, now quiet, payload kept
    else
      ASSERT_EQ(back, bits) << std::hex << h;
  }
}

TEST(Half, EveryF16PatternRoundTrips) {
  const bool f16c = cpu_has_f16c();
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = f16_bits_to_float(bits);
    const uint16_t back = float_to_f16_bits(f);
    if (f16_is_nan(bits)) {
      ASSERT_TRUE(std::isnan(f));
      ASSERT_EQ(back, bits | 0x0200) << std::hex << h;  // quiet, payload kept
    } else {
      ASSERT_EQ(back, bits) << std::hex << h;
      // The value, independently: sign * mantissa * 2^(exponent - 25) with the implicit bit.
      const int exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
      const double magnitude = exponent == 31  ? std::numeric_limits<double>::infinity()
                               : exponent == 0 ? std::ldexp(mantissa, -24)
                                               : std::ldexp(mantissa | 0x400, exponent - 25);
      ASSERT_EQ(static_cast<double>(f), (h & 0x8000) ? -magnitude : magnitude) << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0);
    }
    // Eigen's half agrees in value (NaN-ness for NaNs), F16C bit for bit.
    const float eigen = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
    if (std::isnan(f))
      ASSERT_TRUE(std::isnan(eigen));
    else
      ASSERT_EQ(f32_bits(eigen), f32_bits(f)) << std::hex << h;
    if (f16c) {
      ASSERT_EQ(f32_bits(f16c_widen(bits)), f32_bits(f)) << std::hex << h;
    }
  }
}

TEST(Half, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    uint32_t f32;
    uint16_t bf16, f16;
  };
  const Case cases[] = {
      {0x00000000u, 0x0000, 0x0000},  // +0
      {0x80000000u, 0x8000, 0x8000},  // -0
      {f32_bits(inf), 0x7F80, 0x7C00},
      {f32_bits(-inf), 0xFF80, 0xFC00},
      {0x7FC00000u, 0x7FC0, 0x7E00},  // the default quiet NaN
      {0xFFC00000u, 0xFFC0, 0xFE00},  // negative quiet NaN
      {0x7F800001u, 0x7FC0, 0x7E00},  // signalling NaN, payload only in low bits: quieted, not inf
      {0x7FA00000u, 0x7FE0, 0x7F00},  // signalling NaN with a high payload bit: kept
      {0x7FFFFFFFu, 0x7FFF, 0x7FFF},
      {0x00000001u, 0x0000, 0x0000},  // smallest f32 subnormal: bf16 rounds it to +0 ...
      {0x80000001u, 0x8000, 0x8000},  // ... keeping the sign
      {0x00008000u, 0x0000, 0x0000},  // half a bf16 subnormal unit: tie to even (0)
      {0x00008001u, 0x0001, 0x0000},  // just above: the smallest bf16 subnormal
      {0x00018000u, 0x0002, 0x0000},  // 1.5 units: tie to even (2)
      {0x007FFFFFu, 0x0080, 0x0000},  // largest f32 subnormal rounds up to the smallest normal
      {0x7F7FFFFFu, 0x7F80, 0x7C00},  // FLT_MAX overflows both
      {0x7F7F7FFFu, 0x7F7F, 0x7C00},  // just below bf16's rounding boundary: largest finite bf16
      {0x477FE000u, 0x4780, 0x7BFF},  // 65504, f16's largest finite
      {0x477FEFFFu, 0x4780, 0x7BFF},  // just below 65520
      {0x477FF000u, 0x4780, 0x7C00},  // 65520: the tie goes to even, which is inf
      {0xC77FF000u, 0xC780, 0xFC00},
      {0x38800000u, 0x3880, 0x0400},  // 2^-14, smallest normal f16
      {0x387FE000u, 0x3880, 0x0400},  // 2^-14 - 2^-25: halfway 0x3FF/0x400, to even 0x400
      {0x387FC000u, 0x3880, 0x03FF},  // 2^-14 - 2^-24, the largest f16 subnormal, exact
      {0x33800000u, 0x3380, 0x0001},  // 2^-24, smallest f16 subnormal
      {0x33000000u, 0x3300, 0x0000},  // 2^-25: tie between 0 and 2^-24, to even (0)
      {0x33000001u, 0x3300, 0x0001},  // just above it
      {0xB3000001u, 0xB300, 0x8001},
      {0x33C00000u, 0x33C0, 0x0002},  // 1.5 * 2^-24: tie, to even (2)
      {0x32FFFFFFu, 0x3300, 0x0000},
      {0x3F800000u, 0x3F80, 0x3C00},  // 1
      {0x3F808000u, 0x3F80, 0x3C04},  // 1 + 2^-8: bf16 tie to even (down); exact in f16
      {0x3F818000u, 0x3F82, 0x3C0C},  // 1 + 3 * 2^-8: bf16 tie to even (up)
      {0x3F801000u, 0x3F80, 0x3C00},  // 1 + 2^-11: f16 tie, to even (down)
      {0x3F803000u, 0x3F80, 0x3C02},  // 1 + 3 * 2^-11: f16 tie, to even (up)
  };
  for (const Case& c : cases) {
    ASSERT_EQ(float_to_bf16_bits(f32_from_bits(c.f32)), c.bf16) << std::hex << "f32 0x" << c.f32;
    ASSERT_EQ(float_to_f16_bits(f32_from_bits(c.f32)), c.f16) << std::hex << "f32 0x" << c.f32;
  }
  static_assert(f32_bits_to_bf16_bits(0x3F818000u) == 0x3F82, "constexpr conversion");
  static_assert(f32_bits_to_f16_bits(0x477FF000u) == 0x7C00, "constexpr conversion");
  static_assert(f16_bits_to_f32_bits(0x0001) == 0x33800000u, "constexpr conversion");
}

// Every tie between two consecutive non-negative half values, and the f32 neighbours of each
// tie: the tie goes to the even pattern, the neighbours to the nearer value.
TEST(Half, EveryRoundingBoundaryOfBf16) {
  for (uint32_t h = 0; h < 0x7F80; ++h) {  // h and h + 1 finite or h + 1 = inf
    for (uint32_t sign : {0u, 0x80000000u}) {
      const uint32_t tie = sign | h << 16 | 0x8000u;
      const uint16_t s = static_cast<uint16_t>(sign >> 16);
      ASSERT_EQ(f32_bits_to_bf16_bits(tie), s | ((h & 1) ? h + 1 : h)) << std::hex << tie;
      ASSERT_EQ(f32_bits_to_bf16_bits(tie - 1), s | h) << std::hex << tie;
      ASSERT_EQ(f32_bits_to_bf16_bits(tie + 1), s | (h + 1)) << std::hex << tie;
    }
  }
}

TEST(Half, EveryRoundingBoundaryOfF16) {
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    // The midpoint of h and h + 1 is exact in f32 (12 significant bits), so is its sum below.
    const double lo = f16_bits_to_float(static_cast<uint16_t>(h));
    const double hi = h + 1 == 0x7C00 ? 65536.0 : f16_bits_to_float(static_cast<uint16_t>(h + 1));
    const float tie = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(static_cast<double>(tie), (lo + hi) / 2);
    for (float sign : {1.0f, -1.0f}) {
      const uint16_t s = sign < 0 ? 0x8000 : 0;
      const float t = sign * tie;
      ASSERT_EQ(float_to_f16_bits(t), s | ((h & 1) ? h + 1 : h)) << std::hex << f32_bits(t);
      ASSERT_EQ(float_to_f16_bits(std::nextafter(t, 0.0f)), s | h) << std::hex << f32_bits(t);
      ASSERT_EQ(float_to_f16_bits(std::nextafter(t, sign * 1e30f)), s | (h + 1)) << std::hex << f32_bits(t);
    }
  }
}

TEST(Half, SampleAgainstOracleAndEigen) {
  for (uint32_t bits : sample_patterns()) {
    const float x = f32_from_bits(bits);
    const uint16_t bf = float_to_bf16_bits(x), h = float_to_f16_bits(x);
    const uint16_t eigen_bf = Eigen::numext::bit_cast<uint16_t>(Eigen::bfloat16(x));
    const uint16_t eigen_h = Eigen::numext::bit_cast<uint16_t>(Eigen::half(x));
    if (std::isnan(x)) {
      ASSERT_TRUE(bf16_is_nan(bf) && bf16_is_nan(eigen_bf)) << std::hex << bits;
      ASSERT_TRUE(f16_is_nan(h) && f16_is_nan(eigen_h)) << std::hex << bits;
      continue;
    }
    ASSERT_TRUE(matches_oracle(
        bits, bf, oracle_bf16(x), [](uint16_t b) { return double{bf16_bits_to_float(b)}; }, "bf16"));
    ASSERT_TRUE(matches_oracle(
        bits, h, oracle_f16(x), [](uint16_t b) { return double{f16_bits_to_float(b)}; }, "f16"));
    ASSERT_EQ(bf, eigen_bf) << std::hex << "bf16 of f32 0x" << bits;
    ASSERT_EQ(h, eigen_h) << std::hex << "f16 of f32 0x" << bits;
  }
}

// Bit for bit, NaNs included (VCVTPS2PH keeps sign and payload as half.h does).
TEST(Half, SampleAgainstF16c) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "this CPU has no F16C";
  for (uint32_t bits : sample_patterns()) {
    const float x = f32_from_bits(bits);
    ASSERT_EQ(float_to_f16_bits(x), f16c_convert(x)) << std::hex << "f32 0x" << bits;
  }
}

// 16 floats at once through VCVTNEPS2BF16.
__attribute__((target("avx512bf16,avx512f,avx512vl"))) void avx512_bf16_convert(const float* in, uint16_t* out) {
  const __m256bh converted = _mm512_cvtneps_pbh(_mm512_loadu_ps(in));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), reinterpret_cast<const __m256i&>(converted));
}

// Bit for bit, NaNs included, except on f32 subnormal inputs, which the instruction flushes to
// a signed zero and half.h rounds like torch and CUDA (see half.h): checked to be just that.
TEST(Half, SampleAgainstVcvtneps2bf16) {
  if (!__builtin_cpu_supports("avx512bf16")) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  std::vector<uint32_t> patterns = sample_patterns();
  for (uint32_t extra : {0x00000001u, 0x00008001u, 0x007FFFFFu, 0x80400000u, 0x7F800001u, 0xFFA00000u})
    patterns.push_back(extra);
  while (patterns.size() % 16) patterns.push_back(0);
  int64_t subnormals = 0;
  for (size_t i = 0; i < patterns.size(); i += 16) {
    float in[16];
    uint16_t hw[16];
    for (int j = 0; j < 16; ++j) in[j] = f32_from_bits(patterns[i + j]);
    avx512_bf16_convert(in, hw);
    for (int j = 0; j < 16; ++j) {
      const uint32_t bits = patterns[i + j];
      if ((bits & 0x7F800000u) == 0 && (bits & 0x007FFFFFu) != 0) {
        ++subnormals;
        ASSERT_EQ(hw[j], (bits >> 16) & 0x8000u) << std::hex << "f32 0x" << bits;
      } else {
        ASSERT_EQ(float_to_bf16_bits(in[j]), hw[j]) << std::hex << "f32 0x" << bits;
      }
    }
  }
  EXPECT_GT(subnormals, 0);
}

// torch 1.13's tensor conversions of 1061 float32 patterns (tests/data/half_torch.json, written by
// tests/torch_half.py; CTest's TorchReference.HalfConversions checks that the file is torch's):
// bit for bit, except that NaNs need only stay NaN (torch writes 0xFFFF for every bf16 NaN).
TEST(Half, AgreesWithTorch) {
  std::ifstream f(std::string(PARITY_TEST_DATA_DIR) + "/half_torch.json");
  ASSERT_TRUE(f.good()) << "tests/data/half_torch.json";
  const nlohmann::json rows = nlohmann::json::parse(f).at("rows");
  ASSERT_GT(rows.size(), 1000u);
  for (const nlohmann::json& row : rows) {
    const uint32_t bits = row[0].get<uint32_t>();
    const uint16_t torch_bf16 = row[1].get<uint16_t>(), torch_f16 = row[2].get<uint16_t>();
    const float x = f32_from_bits(bits);
    if (std::isnan(x)) {
      ASSERT_TRUE(bf16_is_nan(torch_bf16) && bf16_is_nan(float_to_bf16_bits(x))) << std::hex << bits;
      ASSERT_TRUE(f16_is_nan(torch_f16) && f16_is_nan(float_to_f16_bits(x))) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(float_to_bf16_bits(x), torch_bf16) << std::hex << "bf16 of f32 0x" << bits;
    ASSERT_EQ(float_to_f16_bits(x), torch_f16) << std::hex << "f16 of f32 0x" << bits;
  }
}

}  // namespace
}  // namespace parity::kernels
