// model/zoo.cpp — the built-in models, one description each: adding a model means adding an
// entry to zoo() here.
#include <fmt/format.h>

#include "parity/error.h"
#include "parity/model.h"

namespace parity {
namespace {

LayerSpec layer(LayerOp op, std::string name, std::string module = "", int64_t features = 0, int kernel = 0,
                int stride = 1, int padding = 0) {
  LayerSpec l;
  l.op = op;
  l.name = std::move(name);
  l.module = std::move(module);
  l.features = features;
  l.kernel = kernel;
  l.stride = stride;
  l.padding = padding;
  return l;
}
LayerSpec conv2d(const std::string& name, int64_t out_channels, int kernel, int stride, int padding) {
  return layer(LayerOp::conv2d, name, name, out_channels, kernel, stride, padding);
}
LayerSpec relu(const std::string& name) { return layer(LayerOp::relu, name); }
LayerSpec maxpool2d(const std::string& name, int kernel, int stride) {
  return layer(LayerOp::maxpool2d, name, "", 0, kernel, stride);
}
LayerSpec flatten(const std::string& name) { return layer(LayerOp::flatten, name); }
// `module` names the PyTorch module when the output value is named otherwise ("logits").
LayerSpec linear(const std::string& name, int64_t out_features, const std::string& module = "") {
  return layer(LayerOp::linear, name, module.empty() ? name : module, out_features);
}

ModelSpec with_params(ModelSpec spec) {
  spec.params = layer_params(spec);
  return spec;
}

// The classic small CNN trained with Adam and cross-entropy; both geometries share its layers.
const std::vector<LayerSpec> kSeedCnnLayers = {
    conv2d("conv1", 16, 3, 1, 1), relu("relu1"), maxpool2d("pool1", 2, 2),
    conv2d("conv2", 32, 3, 1, 1), relu("relu2"), maxpool2d("pool2", 2, 2),
    flatten("flatten"),           linear("fc1", 128), relu("relu3"),
    linear("logits", 10, "fc2"),
};

// The seed document's case study: four 3x3 convolutions (max-pooling after the second and the
// fourth) and two fully connected layers.
const std::vector<LayerSpec> kSeedCnn4ConvLayers = {
    conv2d("conv1", 16, 3, 1, 1), relu("relu1"), conv2d("conv2", 32, 3, 1, 1), relu("relu2"), maxpool2d("pool1", 2, 2),
    conv2d("conv3", 64, 3, 1, 1), relu("relu3"), conv2d("conv4", 64, 3, 1, 1), relu("relu4"), maxpool2d("pool2", 2, 2),
    flatten("flatten"),           linear("fc1", 128), relu("relu5"),
    linear("logits", 10, "fc2"),
};

const std::vector<ModelSpec>& zoo() {
  static const std::vector<ModelSpec> models = {
      with_params({"seed-cnn", "the classic small CNN on 1x28x28 Fashion-MNIST", 1, 28, 28, BatchGeometry{1, 1}, 10,
                   kSeedCnnLayers, {}}),
      with_params({"seed-cnn-112",
                   "the same CNN on the original 3x112x112 geometry (Fashion-MNIST upsampled 4x, channel x3)", 3, 112,
                   112, BatchGeometry{3, 4}, 10, kSeedCnnLayers, {}}),
      with_params({"seed-cnn-4conv", "the seed document's case study: four 3x3 convs, two max-pools, two linear layers",
                   1, 28, 28, BatchGeometry{1, 1}, 10, kSeedCnn4ConvLayers, {}}),
  };
  return models;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const ModelSpec& m : zoo()) names.push_back(m.name);
  return names;
}

const ModelSpec& model_spec(const std::string& name) {
  for (const ModelSpec& m : zoo())
    if (m.name == name) return m;
  throw Error(ErrorKind::invalid_argument,
              fmt::format("unknown model '{}': choose one of {}", name, fmt::join(model_names(), ", ")));
}

}  // namespace parity
