// fuzz/fuzz_onnx.cpp — libFuzzer target: parity::OnnxModel::parse (onnx/onnx_model.cpp) on any bytes,
// and, for what parses, the import into a graph (batch 2, in the file's own form).
#include <cstddef>
#include <cstdint>

#include "onnx/onnx_model.h"
#include "parity/error.h"
#include "parity/graph.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const parity::OnnxModel model = parity::OnnxModel::parse(data, size, "", "fuzz input");
    parity::GraphBuilder builder;
    parity::OnnxBuildOptions options;
    options.batch = 2;
    model.build(builder, options);
  } catch (const parity::Error&) {
    // the expected rejection of bad bytes (OnnxUnsupported included); any other exception
    // escapes and is a finding
  }
  return 0;
}
