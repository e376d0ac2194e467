// ops/tensor_cast.cpp — cast_tensor (parity/tensor.h): host tensors converted between f32, bf16
// and f16 with the bits of the CAST op, by ops/kernels/half.h.
#include <cstring>

#include <fmt/format.h>

#include "ops/kernels/half.h"
#include "parity/error.h"
#include "parity/tensor.h"

namespace parity {
namespace {

bool castable(DType d) { return d == DType::f32 || d == DType::bf16 || d == DType::f16; }

// Element i of `t` as float32 bits (exact from every castable dtype).
uint32_t f32_bits_of(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::bf16: return kernels::bf16_bits_to_f32_bits(t.bf16()[i]);
    case DType::f16: return kernels::f16_bits_to_f32_bits(t.f16()[i]);
    default: return kernels::f32_bits(t.f32()[i]);
  }
}

}  // namespace

Tensor cast_tensor(const Tensor& t, DType to) {
  if (!castable(t.dtype()) || !castable(to))
    throw Error(ErrorKind::invalid_argument,
                fmt::format("cast_tensor: cannot convert {} to {}; f32, bf16 and f16 convert to one another",
                            to_string(t.dtype()), to_string(to)));
  Tensor out(t.shape(), to);
  if (to == t.dtype()) {
    std::memcpy(out.data(), t.data(), t.nbytes());
    return out;
  }
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = f32_bits_of(t, i);
    switch (to) {
      case DType::bf16: out.bf16()[i] = kernels::f32_bits_to_bf16_bits(bits); break;
      case DType::f16: out.f16()[i] = kernels::f32_bits_to_f16_bits(bits); break;
      default: std::memcpy(out.f32() + i, &bits, sizeof bits); break;
    }
  }
  return out;
}

}  // namespace parity
