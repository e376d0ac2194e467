// fuzz/fuzz_plot_data.cpp — libFuzzer target: the readers of `parity plot` (metrics CSV, bench JSON) on any bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "parity/error.h"
#include "tools/plot_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace parity::tools;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    if (detect_plot_file_kind(text, "fuzz input") == PlotFileKind::metrics) {
      parse_metrics_csv(text, "fuzz input");
    } else {
      parse_bench_json(text, "fuzz input");
    }
  } catch (const parity::Error&) {
    // the expected rejection of bad bytes; any other exception escapes and is a finding
  }
  return 0;
}
