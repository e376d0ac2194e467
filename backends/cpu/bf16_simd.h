// backends/cpu/bf16_simd.h — 16 bfloat16 values to and from a zmm of float32 in AVX-512 integer
// code, bit for bit ops/kernels/half.h's (widen: the 16-bit shift; round: nearest even, a NaN
// keeps its payload and gains the quiet bit). Not VCVTNEPS2BF16, which flushes subnormal inputs
// to zero (half.h, "f32 subnormal"). Callers compile with PARITY_BF16_SIMD_TARGET and call these
// only where the CPU has AVX-512F and BW (cast_route() == f16c_avx512).
#pragma once

#include <immintrin.h>

#include <cstdint>

#define PARITY_BF16_SIMD_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace parity {
namespace cpu {

// Lanes [0, 16) of x (masked: zero where the mask is clear) as float32.
PARITY_BF16_SIMD_TARGET inline __m512 widen_bf16x16(const uint16_t* x, __mmask16 mask) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, x)), 16));
}

// Lanes [0, 16) of x as float32 (all 16 read).
PARITY_BF16_SIMD_TARGET inline __m512 widen_bf16x16(const uint16_t* x) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))), 16));
}

// widen_bf16x16, with a plain load when the mask takes all 16 lanes: masked loads stall on AMD
// Zen (the bf16 max-pool kernels spent half their time in them).
PARITY_BF16_SIMD_TARGET inline __m512 widen_bf16x16_fast(const uint16_t* x, __mmask16 mask) {
  return mask == 0xFFFF ? widen_bf16x16(x) : widen_bf16x16(x, mask);
}

// v rounded to bfloat16 bits (f32_bits_to_bf16_bits lane by lane).
PARITY_BF16_SIMD_TARGET inline __m256i round_bf16x16(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i kept_lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), kept_lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x0040));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet));
}

// y[0, 16) (masked) = v rounded to bfloat16.
PARITY_BF16_SIMD_TARGET inline void store_bf16x16(uint16_t* y, __mmask16 mask, __m512 v) {
  _mm256_mask_storeu_epi16(y, mask, round_bf16x16(v));
}

// y[0, 16) (masked) = v as bfloat16, where every lane of v is exactly a bf16 value (a widened
// one, a max of such, a zero) or a NaN made from one: its top half, a NaN quieted. That is
// round_bf16x16's result on such lanes (nothing below bit 16 to round), at a third of the work.
PARITY_BF16_SIMD_TARGET inline void store_exact_bf16x16(uint16_t* y, __mmask16 mask, __m512 v) {
  const __m512i top = _mm512_srli_epi32(_mm512_castps_si512(v), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  _mm512_mask_cvtepi32_storeu_epi16(y, mask, _mm512_mask_or_epi32(top, nan, top, _mm512_set1_epi32(0x0040)));
}

// store_exact_bf16x16, with a plain store when the mask takes all 16 lanes.
PARITY_BF16_SIMD_TARGET inline void store_exact_bf16x16_fast(uint16_t* y, __mmask16 mask, __m512 v) {
  if (mask != 0xFFFF) return store_exact_bf16x16(y, mask, v);
  const __m512i top = _mm512_srli_epi32(_mm512_castps_si512(v), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y),
                      _mm512_cvtepi32_epi16(_mm512_mask_or_epi32(top, nan, top, _mm512_set1_epi32(0x0040))));
}

// The mask of the first n <= 16 lanes.
inline __mmask16 lanes16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u); }

}  // namespace cpu
}  // namespace parity
