// onnx/onnx_model.h — an ONNX model file (opsets 1 to 17) read and checked once, then added to
// a parity graph for any batch size: the op mapping, the folding of what PyTorch's exporter
// emits around the ops (Constant, Pad, the shape arithmetic of x.view(x.size(0), -1)), and an
// error naming node, op type, opset and attribute for anything it cannot map. It never guesses.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parity/error.h"
#include "parity/graph.h"
#include "parity/tensor.h"

namespace parity {

// A model (or a node of one) that parity cannot map: Error(invalid_argument) whose message
// names the node, op type, opset and the attribute or input; `parity check onnx` reports it as
// the reason a test is skipped. category() is the same without this model's names and numbers
// ("Abs: this op type is not supported", "data type DOUBLE"), so that reports can group models
// by it; the message itself when the thrower gives none.
class OnnxUnsupported : public Error {
 public:
  explicit OnnxUnsupported(const std::string& message, std::string category = "")
      : Error(ErrorKind::invalid_argument, message), category_(category.empty() ? message : std::move(category)) {}
  const std::string& category() const { return category_; }

 private:
  std::string category_;
};

// A graph input or output: its name, dtype and dims, -1 where the file leaves a dim symbolic
// (or unknown). `batch_symbolic` when dim 0 is a symbol such as "batch_size".
struct OnnxPort {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> dims;
  bool batch_symbolic = false;
};

struct OnnxBuildOptions {
  // The size of every symbolic dim 0 of a graph input; 0 when the caller has none (a symbolic
  // dim is then refused naming the input). A fixed dim 0 that differs is refused naming both.
  int64_t batch = 0;
  // as_file: each BatchNormalization and Dropout in the form the file gives it (training_mode, or
  // the extra outputs of older opsets): what the ONNX backend tests expect. evaluation: running
  // statistics read, Dropout the identity. training: BatchNormalization as BATCHNORM2D_TRAIN
  // (running statistics as STATE, updated), Dropout as DROPOUT drawing from (seed, step,
  // first_sample). A model in parity takes evaluation or training whatever the file says.
  enum class Form { as_file, evaluation, training };
  Form form = Form::as_file;
  Value step;  // training with a Dropout: the INPUT optimizer.step (i32 [1])
  uint64_t seed = 0;
  int64_t first_sample = 0;
  // Graph inputs fed by values already in the builder (e.g. the model's "x"); every other graph
  // input becomes an INPUT of the same name, shape and dtype. Likewise for the PARAM and STATE
  // values build() would make (by the names OnnxBuilt lists): a value given here is used instead.
  std::map<std::string, Value> inputs;
  // For a loss on the output: a Softmax or LogSoftmax over dim 1 of a 2-d value that produces
  // the graph's only output is left out, and the output is its input (cross-entropy of the
  // probabilities is softmax cross-entropy of that input). OnnxBuilt::final_softmax names it.
  bool stop_before_final_softmax = false;
  // For training with the graph's own loss: a SoftmaxCrossEntropyLoss that produces the graph's
  // only output, on [N, C] scores and labels read from a graph input, is left out; the output is
  // its scores input and OnnxBuilt::final_loss says how the loss was set (the labels input is
  // then read by no node, so it is no value of the graph).
  bool stop_before_final_loss = false;
  // The tensors the graph inputs will be fed, where the caller knows them (a test's data set).
  // They give the dims a file leaves symbolic, and the values of inputs that must be known at
  // import (a Reshape's shape, Clip's bounds, the axes of Squeeze...): parity's graphs have
  // static shapes and op parameters, so such an input is fixed to this value (OnnxBuilt::fixed)
  // and the graph is valid for that value only. An input that a node also reads as a tensor
  // stays an INPUT of the graph, written before a run.
  std::map<std::string, Tensor> known_inputs;
};

// The graph's own loss, left out by OnnxBuildOptions::stop_before_final_loss: softmax
// cross-entropy of the output against the graph input `labels`, with the node's reduction and
// ignore_index (parity_softmax_xent_params in parity/plugin.h).
struct OnnxLoss {
  std::string node;    // the SoftmaxCrossEntropyLoss node, for messages
  std::string labels;  // the graph input holding the class indices
  parity_reduction reduction = PARITY_REDUCTION_MEAN;
  std::optional<int32_t> ignore_index;
};

// Parity names its values after the ONNX names, except a name longer than 52 characters (parity
// holds 63, and the importer appends suffixes such as ".linear"): its first 35 characters, '~'
// and 16 hex digits of its hash.
struct OnnxBuilt {
  // One per OnnxModel::inputs(), in order; invalid for an input no node reads as a tensor (read
  // only for its known value, or not at all), which is no value of the graph.
  std::vector<Value> inputs;
  std::vector<Value> outputs;       // one per graph output, in order; invalid where constant_outputs has it
  std::vector<std::string> params;  // PARAM values made from initializers (parity's names of them)
  // STATE values: batch norms' running_mean and running_var, and constants that ops read (a
  // Constant node's tensor, Gemm's alpha, the zero bias of a MatMul, the -1 by which a Sub
  // multiplies), named after them.
  std::vector<std::string> state;
  // The data of every PARAM and STATE value above: what to write before running the graph.
  std::map<std::string, Tensor> values;
  // Graph outputs that import computed completely (e.g. Shape of an input): their values.
  std::map<std::string, Tensor> constant_outputs;
  // Graph inputs whose OnnxBuildOptions::known_inputs value the graph depends on.
  std::vector<std::string> fixed;
  // "Softmax" or "LogSoftmax" when stop_before_final_softmax left one out, else "".
  std::string final_softmax;
  // Set when stop_before_final_loss left the graph's own loss out.
  std::optional<OnnxLoss> final_loss;
};

// The int32 tensor to feed for an int64 graph input that the importer reads as int32 (the class
// indices of a loss's labels): Error(data) naming `input` for a value outside int32, never wrapped.
Tensor labels_as_i32(const Tensor& labels, const std::string& input);

class OnnxModel {
 public:
  // Reads and checks a model file: the protobuf parses; the opset of the default domain is in
  // [7, 17]; every node's inputs are produced by an earlier node, an initializer or a graph
  // input (a cycle or an undefined value is an error naming the node); initializers' sizes
  // match their dims; external data stays inside the model's folder. Error(io) when the file
  // cannot be read, Error(data) for corrupt content, OnnxUnsupported for what cannot be mapped
  // at all (another domain, a dtype).
  static OnnxModel read_file(const std::string& path);
  // The same for bytes in memory; `folder` bounds external data ("" refuses it) and `name`
  // stands for the file in messages.
  static OnnxModel parse(const void* data, size_t size, const std::string& folder, const std::string& name);

  const std::string& name() const;    // the file, for messages
  int64_t opset() const;              // of the default domain
  const std::vector<OnnxPort>& inputs() const;   // graph inputs that are not initializers
  const std::vector<OnnxPort>& outputs() const;
  // Initializers of f32 data, by ONNX name: the values of the PARAM and STATE values build()
  // makes from them (PyTorch's exporter keeps state_dict names such as "conv1.weight"). A
  // MatMul or Gemm weight that parity's LINEAR needs transposed is held here transposed, [out, in].
  const std::map<std::string, Tensor>& initializers() const;
  // The op types of the graph's nodes, in node order, without repeats.
  std::vector<std::string> op_types() const;

  // Adds the graph to `builder`. Throws OnnxUnsupported for a node it cannot map, and the
  // builder's Error(shape) naming the node for shapes an op refuses.
  OnnxBuilt build(GraphBuilder& builder, const OnnxBuildOptions& options) const;

  struct Impl;

 private:
  explicit OnnxModel(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace parity
