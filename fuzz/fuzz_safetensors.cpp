// fuzz/fuzz_safetensors.cpp — libFuzzer target: parity::parse_safetensors (data/safetensors.cpp) on any bytes.
#include <cstddef>
#include <cstdint>

#include "parity/error.h"
#include "parity/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    parity::parse_safetensors(data, size, "fuzz input");
  } catch (const parity::Error&) {
    // the expected rejection of bad bytes; any other exception escapes and is a finding
  }
  return 0;
}
