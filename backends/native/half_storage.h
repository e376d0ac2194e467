// backends/native/half_storage.h — how the native kernels store bf16 and f16 values (ABI 9) on
// each target, and the two helpers kernels are templated with: load(p, i) reads element i as a
// float (exact for every storage type), store(p, i, v) writes float v rounded to nearest even.
//
//   CUDA (nvcc)   __nv_bfloat16 / __half (cuda_bf16.h, cuda_fp16.h): __float2bfloat16_rn,
//                 __float2half_rn; __bfloat162float, __half2float
//   HIP (hipcc)   hip_bfloat16 (ROCm 5.2's hip/hip_bfloat16.h: its float constructor rounds to
//                 nearest even; it has no __hip_bfloat16 or __float2bfloat16_rn) / __half
//                 (hip/hip_fp16.h): __float2half_rn, __half2float. Both on gfx90a and gfx1030.
//   simt (g++)    the 16 bits in a struct, converted by ops/kernels/half.h (bit-exact RNE, the
//                 conversions cpu and ref use; tests/test_native_half.cpp checks every pattern)
//
// The targets agree on every value except a NaN's payload (ops/kernels/half.h lists who makes
// which NaN); only NaN-ness is portable. Included after pk.h by the kernels that touch half values.
#pragma once

#include <stdint.h>

#include "backends/native/pk.h"
#include "ops/kernels/half.h"

#if defined(PARITY_SIMT_WARP)
namespace pk {
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};
PK_DEVICE float to_float(bf16 h) { return ::parity::kernels::bf16_bits_to_float(h.bits); }
PK_DEVICE float to_float(f16 h) { return ::parity::kernels::f16_bits_to_float(h.bits); }
PK_DEVICE void round_to(float v, bf16* out) { out->bits = ::parity::kernels::float_to_bf16_bits(v); }
PK_DEVICE void round_to(float v, f16* out) { out->bits = ::parity::kernels::float_to_f16_bits(v); }
}  // namespace pk
#elif defined(__HIPCC__)
#include <hip/hip_bfloat16.h>
#include <hip/hip_fp16.h>
namespace pk {
using bf16 = hip_bfloat16;
using f16 = __half;
PK_DEVICE float to_float(bf16 h) { return static_cast<float>(h); }
PK_DEVICE float to_float(f16 h) { return __half2float(h); }
PK_DEVICE void round_to(float v, bf16* out) { *out = hip_bfloat16(v); }  // round to nearest even
PK_DEVICE void round_to(float v, f16* out) { *out = __float2half_rn(v); }
}  // namespace pk
#elif defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
namespace pk {
using bf16 = __nv_bfloat16;
using f16 = __half;
PK_DEVICE float to_float(bf16 h) { return __bfloat162float(h); }
PK_DEVICE float to_float(f16 h) { return __half2float(h); }
PK_DEVICE void round_to(float v, bf16* out) { *out = __float2bfloat16_rn(v); }
PK_DEVICE void round_to(float v, f16* out) { *out = __float2half_rn(v); }
}  // namespace pk
#endif

namespace pk {
static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2, "bf16 and f16 values are stored in 2 bytes");

PK_DEVICE float to_float(float v) { return v; }
PK_DEVICE void round_to(float v, float* out) { *out = v; }

// Element i of p as a float (exact), and v rounded into element i of p (nearest even).
template <class T>
PK_DEVICE float load(const T* p, int64_t i) {
  return to_float(p[i]);
}
template <class T>
PK_DEVICE void store(T* p, int64_t i, float v) {
  round_to(v, p + i);
}
}  // namespace pk
