// model/inference.cpp — run_inference: one evaluation pass of a built-in model or an ONNX graph on
// named input tensors, every input, weight and output checked by name, dtype and shape.
#include "parity/inference.h"

#include <fmt/format.h>

#include "graph/compiled_step.h"
#include "model/file_model.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/model.h"
#include "parity/safetensors.h"

#if PARITY_HAVE_ONNX
#include "onnx/onnx_model.h"
#endif

namespace parity {
namespace {

const Tensor& input_named(const std::map<std::string, Tensor>& inputs, const std::string& name, DType dtype,
                          const std::vector<int64_t>& dims, const std::string& model) {
  auto it = inputs.find(name);
  if (it == inputs.end()) {
    std::string have;
    for (const auto& [n, t] : inputs) have += (have.empty() ? "" : ", ") + n;
    throw Error(ErrorKind::invalid_argument, fmt::format("model {} reads input '{}', which the inputs lack (they hold: {})",
                                                         model, name, have.empty() ? "nothing" : have));
  }
  const Tensor& t = it->second;
  bool fits = t.dtype() == dtype && t.shape().rank() == static_cast<int>(dims.size());
  for (size_t i = 0; fits && i < dims.size(); ++i) fits = dims[i] < 0 || dims[i] == t.shape()[static_cast<int>(i)];
  if (!fits) {
    std::string want = "[";
    for (size_t i = 0; i < dims.size(); ++i) want += (i ? "," : "") + (dims[i] < 0 ? std::string("N") : std::to_string(dims[i]));
    throw Error(ErrorKind::shape, fmt::format("model {}: input '{}' must be {} {}, got {} {}", model, name, to_string(dtype),
                                              want + "]", to_string(t.dtype()), t.shape().str()));
  }
  return t;
}

// Writes every PARAM and STATE value of `step`: from `weights` where it has the name (checked),
// else from `fallback` (the file's values); a parameter in neither is an error.
void write_weights(CompiledStep& step, const Graph& graph, const std::map<std::string, Tensor>& weights,
                   const std::map<std::string, Tensor>& fallback, const std::string& source) {
  for (const ValueInfo& v : graph.values()) {
    if (v.kind != PARITY_VALUE_PARAM && v.kind != PARITY_VALUE_STATE) continue;
    auto it = weights.find(v.name);
    const Tensor* t = it != weights.end() ? &it->second : nullptr;
    if (!t) {
      auto f = fallback.find(v.name);
      if (f == fallback.end())
        throw Error(ErrorKind::data, fmt::format("{}: missing tensor '{}' (expected {} {})", source, v.name,
                                                 to_string(v.dtype), v.shape.str()));
      t = &f->second;
    }
    if (t->dtype() != v.dtype || t->shape() != v.shape)
      throw Error(ErrorKind::data, fmt::format("{}: tensor '{}' is {} {}, the model needs {} {}", source, v.name,
                                               to_string(t->dtype()), t->shape().str(), to_string(v.dtype), v.shape.str()));
    step.write(v.name, *t);
  }
}

}  // namespace

std::map<std::string, Tensor> run_inference(const InferenceOptions& o, const std::map<std::string, Tensor>& inputs) {
  BackendOptions bo;
  bo.threads = o.threads;
  std::map<std::string, Tensor> weights;
  if (!o.weights.empty()) weights = read_safetensors(o.weights).tensors;
  const std::string source = o.weights.empty() ? o.model : o.weights;
  std::map<std::string, Tensor> outputs;

  if (!is_model_file(o.model)) {
    const ModelSpec spec = load_model(o.model);
    const Tensor& x = input_named(inputs, "x", DType::f32, {-1, spec.channels, spec.height, spec.width}, o.model);
    const int64_t batch = x.shape()[0];
    if (batch < 1) throw Error(ErrorKind::shape, fmt::format("model {}: input 'x' holds no images", o.model));
    const Graph graph = build_forward(spec, batch);
    std::unique_ptr<Backend> backend = create_backend(o.backend, bo);
    CompiledStep step(*backend, graph, {"logits"});
    write_weights(step, graph, weights, o.weights.empty() ? init_weights(spec, o.seed) : std::map<std::string, Tensor>{},
                  source);
    step.write("x", x);
    step.write("y", Tensor(Shape{batch}, DType::i32));  // the loss node's labels: unused here
    step.execute();
    outputs.emplace("logits", step.read("logits"));
    return outputs;
  }
#if PARITY_HAVE_ONNX
  const OnnxModel model = OnnxModel::read_file(o.model);
  int64_t batch = 0;
  for (const OnnxPort& port : model.inputs()) {
    const Tensor& t = input_named(inputs, port.name, port.dtype, port.dims, o.model);
    if (port.batch_symbolic && batch == 0 && t.shape().rank() > 0) batch = t.shape()[0];
  }
  GraphBuilder b;
  OnnxBuildOptions options;
  options.batch = batch;
  options.form = OnnxBuildOptions::Form::evaluation;
  const OnnxBuilt built = model.build(b, options);
  std::vector<std::string> keep;
  for (size_t i = 0; i < built.outputs.size(); ++i)
    if (built.outputs[i].valid()) keep.push_back(b.graph().value(built.outputs[i]).name);
  const Graph graph = b.take();
  std::unique_ptr<Backend> backend = create_backend(o.backend, bo);
  CompiledStep step(*backend, graph, keep);
  write_weights(step, graph, weights, built.values, source);
  // An input no node reads as a tensor is no value of the graph; int64 labels are read as int32.
  for (size_t i = 0; i < model.inputs().size(); ++i) {
    if (!built.inputs[i].valid()) continue;
    const ValueInfo& v = graph.value(built.inputs[i]);
    const Tensor& t = inputs.at(model.inputs()[i].name);
    step.write(v.name, v.dtype == DType::i32 && t.dtype() == DType::i64 ? labels_as_i32(t, model.inputs()[i].name) : t);
  }
  step.execute();
  for (size_t i = 0; i < built.outputs.size(); ++i) {
    const std::string& name = model.outputs()[i].name;
    if (built.outputs[i].valid()) outputs.emplace(name, step.read(graph.value(built.outputs[i]).name));
    else outputs.emplace(name, built.constant_outputs.at(name));
  }
  return outputs;
#else
  load_model_file(o.model);  // throws: this build has no ONNX support
  return outputs;
#endif
}

}  // namespace parity
