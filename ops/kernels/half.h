// ops/kernels/half.h — bit-exact float32 <-> bfloat16 and float32 <-> IEEE binary16 (f16)
// conversions, round to nearest even, as plain integer code that host and device share.
//
// What each conversion does with the values where the implementations in use differ:
//
//   NaN -> half   stays NaN, quiet, with its sign and the top bits of its payload (the bits
//                 that fit) and the quiet bit set: bf16 = x[31:16] | 0x0040, exactly the
//                 pseudocode of x86 VCVTNEPS2BF16 (Intel SDM vol. 2, "convert_fp32_to_bfloat16");
//                 f16 = sign | 0x7E00 | payload[22:13], what VCVTPS2PH produces. Others make a
//                 canonical NaN instead: CUDA's __float2bfloat16_rn / __float2half_rn give
//                 0x7FFF, torch's scalar c10::BFloat16 0x7FC0 and its vectorised CPU tensor
//                 conversion 0xFFFF (both drop the sign; measured with torch 1.13), Eigen 3.4's
//                 bfloat16 and half (and c10::Half) sign | 0x7FC0 / sign | 0x7E00. Only NaN-ness
//                 is portable.
//   f32 subnormal -> bf16   rounded like any other value (bf16 has f32's exponent range, so the
//                 result is a bf16 subnormal or zero): what CUDA, torch and Eigen do. VCVTNEPS2BF16
//                 differs here: its pseudocode turns a zero or denormal input into a signed zero
//                 (DAZ regardless of MXCSR). We follow CUDA and torch because they are the peers
//                 parity's GPU backends and checks are compared with; tests/test_half.cpp
//                 compares with the instruction on every other input.
//   f16 overflow  |x| >= 65520 (halfway between 65504 and 2^16, ties to even) rounds to inf.
//   f16 underflow below 2^-14 the result is an f16 subnormal (multiple of 2^-24), rounded to
//                 nearest even; |x| <= 2^-25 becomes a zero of x's sign.
//   half -> f32   exact. An f16 NaN becomes an f32 NaN with its payload and the quiet bit set
//                 (VCVTPH2PS quiets a signalling NaN); bf16 -> f32 is the 16-bit shift every
//                 implementation uses, so a bf16 NaN keeps its bits.
//
// The *_bits_* functions on integers are constexpr; the float wrappers move bits with memcpy
// (C++17 has no constexpr bit_cast).
#pragma once

#include <stdint.h>
#include <string.h>

#include "ops/kernels/hd.h"

namespace parity {
namespace kernels {

// float32 bits -> bfloat16 bits, round to nearest even.
PARITY_HD constexpr uint16_t f32_bits_to_bf16_bits(uint32_t x) {
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // NaN: quiet it
  // Adding 0x7FFF rounds the dropped 16 bits half-down; the kept lsb turns the tie to even. A
  // carry out of the mantissa increments the exponent, which is right (up to inf).
  const uint32_t kept_lsb = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7FFFu + kept_lsb) >> 16);
}

// bfloat16 bits -> float32 bits (exact).
PARITY_HD constexpr uint32_t bf16_bits_to_f32_bits(uint16_t h) { return static_cast<uint32_t>(h) << 16; }

// float32 bits -> binary16 bits, round to nearest even.
PARITY_HD constexpr uint16_t f32_bits_to_f16_bits(uint32_t x) {
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x03FFu));
  if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 and inf
  if (magnitude >= 0x38800000u) {  // >= 2^-14: a normal f16
    // Rebias the exponent (127 -> 15), then round the 13 dropped bits as for bf16 above.
    const uint32_t rebiased = magnitude - (112u << 23);
    const uint32_t kept_lsb = (rebiased >> 13) & 1u;
    return static_cast<uint16_t>(sign | ((rebiased + 0x0FFFu + kept_lsb) >> 13));
  }
  const uint32_t exponent = magnitude >> 23;
  if (exponent < 102u) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to zero
  // A subnormal f16 counts units of 2^-24: round significand * 2^(exponent - 150) / 2^-24. The
  // shift is 14..24; a result of 0x400 is the smallest normal, which is also its right encoding.
  const uint32_t significand = (magnitude & 0x007FFFFFu) | 0x00800000u;
  const uint32_t shift = 126u - exponent;
  uint32_t units = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (units & 1u))) ++units;
  return static_cast<uint16_t>(sign | units);
}

// binary16 bits -> float32 bits (exact; a NaN is quieted, keeping its payload).
PARITY_HD constexpr uint32_t f16_bits_to_f32_bits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x03FFu;
  if (exponent == 0x1Fu) return sign | 0x7F800000u | (mantissa ? 0x00400000u | (mantissa << 13) : 0u);
  if (exponent != 0u) return sign | ((exponent + 112u) << 23) | (mantissa << 13);
  if (mantissa == 0u) return sign;
  // Subnormal: mantissa * 2^-24 with its leading one at bit `top` is 1.f * 2^(top - 24).
  uint32_t top = 9u;
  while (!(mantissa >> top)) --top;
  return sign | ((top + 103u) << 23) | ((mantissa << (23u - top)) & 0x007FFFFFu);
}

PARITY_HD inline uint32_t f32_bits(float f) {
  uint32_t u = 0;
  memcpy(&u, &f, sizeof u);
  return u;
}

PARITY_HD inline float f32_from_bits(uint32_t u) {
  float f = 0;
  memcpy(&f, &u, sizeof f);
  return f;
}

PARITY_HD inline uint16_t float_to_bf16_bits(float f) { return f32_bits_to_bf16_bits(f32_bits(f)); }
PARITY_HD inline float bf16_bits_to_float(uint16_t h) { return f32_from_bits(bf16_bits_to_f32_bits(h)); }
PARITY_HD inline uint16_t float_to_f16_bits(float f) { return f32_bits_to_f16_bits(f32_bits(f)); }
PARITY_HD inline float f16_bits_to_float(uint16_t h) { return f32_from_bits(f16_bits_to_f32_bits(h)); }

}  // namespace kernels
}  // namespace parity
