// backends/cpu/cast.h — the cpu backend's conversions between float32, bfloat16 and binary16
// (the CAST op, ABI 9), on one of two routes chosen at run time:
//
//   f16c_avx512  f32 <-> f16 by VCVTPS2PH / VCVTPH2PS on 16 lanes (AVX-512F; the tail through
//                masked loads and stores, so every element takes the same instructions), and
//                f32 <-> bf16 by half.h's integer code on 16 lanes (bf16_simd.h; not
//                VCVTNEPS2BF16, which flushes subnormals)
//   scalar       ops/kernels/half.h, element by element
//
// f16 <-> bf16 goes through f32 (exact, then one rounding), element by element. Both routes give half.h's bits on every input
// (tests/test_cast.cpp: every half pattern, the special values and random f32 patterns).
#pragma once

#include <cstdint>

#include "parity/plugin.h"

namespace parity {
namespace cpu {

enum class CastRoute { f16c_avx512, scalar };

// The route casts take by default: f16c_avx512 where the CPU has AVX-512F, BW and VL and F16C.
CastRoute cast_route();

// y[0, count) = x[0, count) converted from `from` to `to` (each PARITY_F32, PARITY_BF16 or
// PARITY_F16; the bits of a half value, a float otherwise). Single-threaded.
void cast_elements(const void* x, parity_dtype from, void* y, parity_dtype to, int64_t count,
                   CastRoute route = cast_route());

}  // namespace cpu
}  // namespace parity
