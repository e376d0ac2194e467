// parity/inference.h — one forward pass of a model on given input tensors (`parity infer`): a
// built-in model or any ONNX graph, its outputs by name, for comparison with another framework.
#pragma once

#include <map>
#include <string>

#include "parity/tensor.h"

namespace parity {

struct InferenceOptions {
  std::string model;    // a built-in model's name or an ONNX file (load_model)
  std::string weights;  // safetensors with parity's names; "" : the file's own (ONNX) or seed's (built in)
  uint64_t seed = 0;    // a built-in model without weights: init_weights(spec, seed)
  std::string backend = "auto";
  int threads = 0;
};

// Runs the model once in evaluation form on `inputs`, keyed by graph input name: a built-in
// model reads "x" (f32 [N, C, H, W]) and gives "logits"; an ONNX file reads each of its graph
// inputs (its symbolic batch dimension taken from the tensor) and gives every graph output
// under its name (a final Softmax included). Error naming the input that is missing or has the
// wrong dtype or shape, a weight that is missing or misshapen, and the importer's errors.
std::map<std::string, Tensor> run_inference(const InferenceOptions& options, const std::map<std::string, Tensor>& inputs);

}  // namespace parity
