// backends/kit/poison.h — PARITY_COMPILE_POISON_OUTPUTS: which values are refilled before each
// execute and with what, so a kernel that reads a temporary it did not write shows NaN; the
// fill itself (host loop, device memset) is the backend's hook.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "parity/plugin.h"

namespace parity {
namespace kit {

// The poison of one element: quiet NaN for floating point, the largest value for integers.
template <class T>
constexpr T poison_value() {
  if constexpr (std::numeric_limits<T>::has_quiet_NaN) return std::numeric_limits<T>::quiet_NaN();
  else return std::numeric_limits<T>::max();
}

// The poison of one element of a 2-byte dtype: its default quiet NaN (ABI 9).
inline uint16_t poison_bits16(parity_dtype dtype) { return dtype == PARITY_BF16 ? 0x7fc0u : 0x7e00u; }

// The poison of one 32-bit word of dtype f32 or i32 (or two elements of bf16 or f16), for
// devices that fill words.
inline uint32_t poison_bits32(parity_dtype dtype) {
  if (dtype == PARITY_BF16 || dtype == PARITY_F16) return 0x10001u * poison_bits16(dtype);
  return dtype == PARITY_F32 ? 0x7fc00000u : 0x7fffffffu;
}

// Calls fill(value_index, element_count, bits32) for each TEMP value with elements.
template <class Fill>
void poison_temps(const std::vector<parity_value_desc>& values, Fill&& fill) {
  for (size_t i = 0; i < values.size(); ++i) {
    const parity_value_desc& v = values[i];
    if (v.kind != PARITY_VALUE_TEMP) continue;
    int64_t n = 1;
    for (int32_t d = 0; d < v.rank; ++d) n *= v.dims[d];
    if (n > 0) fill(i, n, poison_bits32(v.dtype));
  }
}

}  // namespace kit
}  // namespace parity
