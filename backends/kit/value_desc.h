// backends/kit/value_desc.h — reading a value descriptor of the plugin ABI for messages and
// sizes: element count, shape text, dtype name, name (the descriptor's fixed char array).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "parity/plugin.h"

namespace parity {
namespace kit {

inline int64_t numel_of(const parity_value_desc& v) {
  int64_t n = 1;
  for (int32_t i = 0; i < v.rank; ++i) n *= v.dims[i];
  return n;
}

// "[2,3,4]"
inline std::string shape_str(int32_t rank, const int64_t* dims) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

inline const char* dtype_name(parity_dtype dtype) {
  switch (dtype) {
    case PARITY_F32: return "f32";
    case PARITY_I32: return "i32";
    case PARITY_I64: return "i64";
    case PARITY_BF16: return "bf16";
    case PARITY_F16: return "f16";
  }
  return "unknown dtype";
}

inline std::string value_name(const parity_value_desc& v) {
  return std::string(v.name, std::find(v.name, v.name + PARITY_NAME_LEN, '\0'));
}

}  // namespace kit
}  // namespace parity
