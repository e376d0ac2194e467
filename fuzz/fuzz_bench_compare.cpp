// fuzz/fuzz_bench_compare.cpp — libFuzzer target: the reader and table of `parity bench compare` on any bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "bench/compare.h"
#include "parity/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto report =
        parity::bench::parse_compared_report(std::string(reinterpret_cast<const char*>(data), size), "fuzz input");
    parity::bench::comparison_table(report, report);  // every case of A finds itself in B
  } catch (const parity::Error&) {
    // the expected rejection of bad bytes; any other exception escapes and is a finding
  }
  return 0;
}
