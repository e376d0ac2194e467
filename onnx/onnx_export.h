// onnx/onnx_export.h — a parity evaluation graph written as an ONNX model at opset 13: the ops
// that compute the chosen outputs mapped one to one (or refused naming the node), parameters and
// state as initializers under parity's names, the batch dimension symbolic; the result checked by
// onnx's checker with full shape inference before it is returned.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "parity/graph.h"
#include "parity/tensor.h"

namespace parity {

// The opset every export is written at, and the IR version that goes with it.
constexpr int64_t kOnnxExportOpset = 13;
constexpr int64_t kOnnxExportIrVersion = 7;

struct OnnxExportOptions {
  // INPUT values that become graph inputs, and values that become graph outputs. Dim 0 of each
  // is the batch, written as the symbol `batch_symbol`. Only the nodes the outputs need are
  // exported, so a forward graph's loss and accuracy (which read "y") are left out.
  std::vector<std::string> inputs{"x"};
  std::vector<std::string> outputs{"logits"};
  std::string batch_symbol = "batch";
  std::string graph_name = "parity";        // the GraphProto's name, e.g. the model's
  std::string weights_source = "weights";   // where `weights` came from, for messages
};

struct OnnxExported {
  std::string bytes;                      // the serialized ModelProto
  std::vector<std::string> initializers;  // their names (PARAM and STATE values), in graph order
  int64_t nodes = 0;                      // ONNX nodes written (Constant nodes included)
};

// Exports the part of `graph` that computes options.outputs from options.inputs. `weights`
// holds the data of every PARAM and STATE value read (more is ignored, e.g. a checkpoint's
// optimizer state). Throws OnnxUnsupported (onnx/onnx_model.h) naming the node for an op
// without an ONNX form here (training-only ops, gradients, GELU...), for a pool whose windows
// ONNX computes otherwise (ceil_mode's last window, windows of padding only), for a reshape that
// would fix the batch dimension, or for an output that needs an INPUT outside options.inputs;
// Error(data) naming the tensor and options.weights_source for a missing tensor or one of
// another dtype or shape; Error(internal) with onnx's message if the checker refuses the result.
OnnxExported export_onnx(const Graph& graph, const std::map<std::string, Tensor>& weights,
                         const OnnxExportOptions& options = {});

// onnx.checker.check_model(model, full_check=True) in C++: the structural checker, then shape
// inference with type checks and errors made fatal. Throws Error(data) naming `name` and the
// checker's message.
void check_onnx_model(const std::string& bytes, const std::string& name);

}  // namespace parity
