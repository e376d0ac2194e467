// model/file_model.cpp — models read from ONNX files: load_model_file and the LayerGraph that
// adds the file's graph (through onnx/onnx_model.h) to a training or evaluation graph, without
// its final softmax or its own loss, which become the model's loss.
#include "model/file_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "parity/error.h"

#if PARITY_HAVE_ONNX
#include "onnx/onnx_model.h"
#endif

namespace parity {

bool is_model_file(const std::string& name_or_file) {
  const std::string suffix = ".onnx";
  return name_or_file.size() >= suffix.size() &&
         name_or_file.compare(name_or_file.size() - suffix.size(), suffix.size(), suffix) == 0;
}

#if PARITY_HAVE_ONNX
namespace {

class OnnxLayers : public LayerGraph {
 public:
  OnnxLayers(OnnxModel model, std::string input, int64_t fixed_batch, bool dropout, bool own_loss)
      : model_(std::move(model)),
        input_(std::move(input)),
        fixed_batch_(fixed_batch),
        dropout_(dropout),
        own_loss_(own_loss) {}

  Value add(GraphBuilder& b, Value x, const ForwardOptions& options, Value step) const override {
    return build(b, x, options, step).outputs.at(0);
  }
  // The importer's view of one build: the model's parameters and buffers already in `b` (made by
  // build_forward from spec.params and spec.buffers) are used, never made again.
  OnnxBuilt build(GraphBuilder& b, Value x, const ForwardOptions& options, Value step) const {
    OnnxBuildOptions o;
    o.batch = b.graph().value(x).shape[0];
    o.form = options.training ? OnnxBuildOptions::Form::training : OnnxBuildOptions::Form::evaluation;
    o.step = step;
    o.seed = options.seed;
    o.first_sample = options.first_sample;
    o.stop_before_final_softmax = true;
    o.stop_before_final_loss = own_loss_;
    o.inputs[input_] = x;
    for (size_t i = 0; i < b.graph().values().size(); ++i) {
      const ValueInfo& v = b.graph().values()[i];
      if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) o.inputs[v.name] = Value{static_cast<int32_t>(i)};
    }
    return model_.build(b, o);
  }
  std::map<std::string, Tensor> initial_values() const override { return initial_; }
  bool has_dropout() const override { return dropout_; }
  int64_t fixed_batch() const override { return fixed_batch_; }

  std::map<std::string, Tensor> initial_;

 private:
  OnnxModel model_;
  std::string input_;
  int64_t fixed_batch_;
  bool dropout_;
  bool own_loss_;
};

// The image input of a graph with two inputs: the f32 one of rank 4 when the other holds integer
// class indices of rank 1 (the labels of the graph's own loss); else nullptr.
const OnnxPort* image_beside_labels(const std::vector<OnnxPort>& inputs) {
  if (inputs.size() != 2) return nullptr;
  for (size_t i = 0; i < 2; ++i) {
    const OnnxPort& image = inputs[i];
    const OnnxPort& labels = inputs[1 - i];
    if (image.dtype == DType::f32 && image.dims.size() == 4 && labels.dtype != DType::f32 && labels.dims.size() == 1)
      return &image;
  }
  return nullptr;
}

}  // namespace

ModelSpec load_model_file(const std::string& path) {
  OnnxModel model = OnnxModel::read_file(path);
  auto refuse = [&](const std::string& why) {
    throw Error(ErrorKind::invalid_argument, fmt::format("model file {}: {}", path, why));
  };
  // One image input; or an image input and the labels of the graph's own loss.
  const OnnxPort* image = model.inputs().size() == 1 ? &model.inputs()[0] : image_beside_labels(model.inputs());
  if (!image) {
    std::vector<std::string> names;
    for (const OnnxPort& p : model.inputs()) names.push_back(p.name);
    refuse(fmt::format("its graph has {} inputs ({}); parity trains and runs models of one image input [N, C, H, W], "
                       "or of an image input and the integer labels [N] of the graph's own SoftmaxCrossEntropyLoss "
                       "(parity infer runs any graph)",
                       names.size(), fmt::join(names, ", ")));
  }
  const bool own_loss = model.inputs().size() == 2;
  const OnnxPort& in = *image;
  if (in.dtype != DType::f32 || in.dims.size() != 4)
    refuse(fmt::format("its input '{}' is {} of rank {}; a model takes f32 images [N, C, H, W]", in.name,
                       to_string(in.dtype), in.dims.size()));
  for (int i = 1; i < 4; ++i)
    if (in.dims[static_cast<size_t>(i)] < 1)
      refuse(fmt::format("its input '{}' leaves dim {} symbolic or 0; only the batch (dim 0) may be", in.name, i));
  if (model.outputs().size() != 1) refuse(fmt::format("its graph has {} outputs; a model has one ([N, classes])", model.outputs().size()));
  const int64_t fixed = in.batch_symbolic || in.dims[0] < 0 ? 0 : in.dims[0];

  bool dropout = false;
  for (const std::string& op : model.op_types()) dropout = dropout || op == "Dropout";

  ModelSpec spec;
  spec.name = path;
  spec.channels = static_cast<int>(in.dims[1]);
  spec.height = static_cast<int>(in.dims[2]);
  spec.width = static_cast<int>(in.dims[3]);
  spec.geometry = BatchGeometry{spec.channels, 1, spec.height, spec.width};
  auto layers = std::make_shared<OnnxLayers>(model, in.name, fixed, dropout, own_loss);

  // A scratch training graph at the file's batch (or 1) lists the parameters and buffers.
  GraphBuilder b;
  const int64_t batch = fixed > 0 ? fixed : 1;
  Value x = b.input("x", Shape{batch, spec.channels, spec.height, spec.width});
  ForwardOptions training;
  training.training = true;
  Value step = dropout ? b.input(optimizer_step_name(), Shape{1}, DType::i32) : Value{};
  OnnxBuilt built = layers->build(b, x, training, step);
  if (own_loss) {
    if (!built.final_loss) {
      const std::string& labels = model.inputs()[model.inputs()[0].name == in.name ? 1 : 0].name;
      refuse(fmt::format("its second input '{}' is not the labels of a SoftmaxCrossEntropyLoss producing the graph's "
                         "only output; parity trains and runs models of one image input, or of an image input and the "
                         "labels of the graph's own loss",
                         labels));
    }
    if (built.final_loss->reduction == PARITY_REDUCTION_NONE)
      refuse(fmt::format("its loss '{}' has reduction 'none' (one loss per sample); training needs a scalar loss: "
                         "export it with reduction 'mean' or 'sum'",
                         built.final_loss->node));
    spec.loss = LossSpec{built.final_loss->reduction, built.final_loss->ignore_index};
  }
  const Shape out = b.graph().value(built.outputs.at(0)).shape;
  if (out.rank() != 2) refuse(fmt::format("its output '{}' is {}; a model's output is [N, classes]", model.outputs()[0].name, out.str()));
  spec.num_classes = static_cast<int>(out[1]);
  for (const std::string& name : built.params) spec.params.push_back(ParamSpec{name, built.values.at(name).shape(), 1});
  for (const std::string& name : built.state)
    spec.buffers.push_back(BufferSpec{name, built.values.at(name).shape(), 0.0f, false});
  layers->initial_ = built.values;
  std::string loss_note;
  if (built.final_loss)
    loss_note = fmt::format(", trained with its own loss '{}' ({}{})", built.final_loss->node,
                            built.final_loss->reduction == PARITY_REDUCTION_SUM ? "sum" : "mean",
                            built.final_loss->ignore_index
                                ? fmt::format(", ignore_index {}", *built.final_loss->ignore_index)
                                : std::string());
  else if (!built.final_softmax.empty())
    loss_note = fmt::format(", its final {} taken into the loss", built.final_softmax);
  spec.description = fmt::format("ONNX opset {}, {} parameters{}", model.opset(), spec.params.size(), loss_note);
  spec.layer_graph = std::move(layers);
  return spec;
}

#else

ModelSpec load_model_file(const std::string& path) {
  throw Error(ErrorKind::invalid_argument,
              fmt::format("model file {}: this parity was built without ONNX support (install libonnx-dev and "
                          "libprotobuf-dev, and configure with -DPARITY_WITH_ONNX=ON)",
                          path));
}

#endif

}  // namespace parity
