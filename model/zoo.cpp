// model/zoo.cpp — the built-in models, one description each: adding a model means adding an
// entry to zoo() here.
#include <fmt/format.h>

#include "parity/error.h"
#include "parity/model.h"
#include "model/file_model.h"

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
LayerSpec tanh_layer(const std::string& name) { return layer(LayerOp::tanh, name); }
LayerSpec relu6(const std::string& name) { return layer(LayerOp::relu6, name); }
LayerSpec avgpool2d(const std::string& name, int kernel, int stride) {
  return layer(LayerOp::avgpool2d, name, "", 0, kernel, stride);
}
LayerSpec global_avgpool(const std::string& name) { return layer(LayerOp::global_avgpool, name); }
// A batch norm whose module (its state_dict prefix) is its name.
LayerSpec batchnorm2d(const std::string& name) { return layer(LayerOp::batchnorm2d, name, name); }
// A convolution without bias (its module named as the layer), optionally grouped, optionally
// reading a named earlier layer.
LayerSpec conv2d_no_bias(const std::string& name, int64_t out_channels, int kernel, int stride, int padding,
                         int groups = 1, const std::string& input = "") {
  LayerSpec l = layer(LayerOp::conv2d, name, name, out_channels, kernel, stride, padding);
  l.bias = false;
  l.groups = groups;
  if (!input.empty()) l.inputs = {input};
  return l;
}
LayerSpec add(const std::string& name, const std::string& a, const std::string& b) {
  LayerSpec l = layer(LayerOp::add, name);
  l.inputs = {a, b};
  return l;
}
LayerSpec dropout(const std::string& name, float p) {
  LayerSpec l = layer(LayerOp::dropout, name);
  l.p = p;
  return l;
}
// `module` names the PyTorch module when the output value is named otherwise ("logits").
LayerSpec linear(const std::string& name, int64_t out_features, const std::string& module = "") {
  return layer(LayerOp::linear, name, module.empty() ? name : module, out_features);
}

ModelSpec with_params(ModelSpec spec) {
  spec.params = layer_params(spec);
  spec.buffers = layer_buffers(spec);
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

// LeNet-5 on 28x28 (padding 2 keeps the classic 32x32 geometry after c1).
const std::vector<LayerSpec> kLeNet5Layers = {
    conv2d("c1", 6, 5, 1, 2), tanh_layer("tanh1"), avgpool2d("pool1", 2, 2),
    conv2d("c2", 16, 5, 1, 0), tanh_layer("tanh2"), avgpool2d("pool2", 2, 2),
    flatten("flatten"),        linear("f1", 120),  tanh_layer("tanh3"),
    linear("f2", 84),          tanh_layer("tanh4"), linear("logits", 10, "f3"),
};

// A ResNet basic block `prefix` reading layer `input`: conv1-bn1-relu-conv2-bn2, plus the
// input or (when the stride or width changes) a 1x1 conv + bn shortcut, then relu. Its output
// is the layer "<prefix>.relu2".
void basic_block(std::vector<LayerSpec>& layers, const std::string& prefix, const std::string& input,
                 int64_t in_channels, int64_t channels, int stride) {
  LayerSpec conv1 = conv2d_no_bias(prefix + ".conv1", channels, 3, stride, 1, 1, input);
  layers.push_back(conv1);
  layers.push_back(batchnorm2d(prefix + ".bn1"));
  layers.push_back(relu(prefix + ".relu1"));
  layers.push_back(conv2d_no_bias(prefix + ".conv2", channels, 3, 1, 1));
  layers.push_back(batchnorm2d(prefix + ".bn2"));
  std::string shortcut = input;
  if (stride != 1 || in_channels != channels) {
    layers.push_back(conv2d_no_bias(prefix + ".shortcut.0", channels, 1, stride, 0, 1, input));
    layers.push_back(batchnorm2d(prefix + ".shortcut.1"));
    shortcut = prefix + ".shortcut.1";
  }
  layers.push_back(add(prefix + ".add", prefix + ".bn2", shortcut));
  layers.push_back(relu(prefix + ".relu2"));
}

std::vector<LayerSpec> resnet8_layers() {
  std::vector<LayerSpec> layers = {conv2d_no_bias("stem", 16, 3, 1, 1), batchnorm2d("bn"), relu("relu")};
  basic_block(layers, "layer1", "relu", 16, 16, 1);
  basic_block(layers, "layer2", "layer1.relu2", 16, 32, 2);
  basic_block(layers, "layer3", "layer2.relu2", 32, 64, 2);
  layers.push_back(global_avgpool("pool"));
  layers.push_back(flatten("flatten"));
  layers.push_back(linear("logits", 10, "fc"));
  return layers;
}

std::vector<LayerSpec> mobilenet_mini_layers() {
  std::vector<LayerSpec> layers = {conv2d_no_bias("stem", 32, 3, 1, 1), batchnorm2d("bn"), relu6("relu6")};
  const struct {
    int64_t out_channels;
    int stride;
  } blocks[] = {{64, 1}, {64, 2}, {128, 1}, {128, 2}};
  int64_t channels = 32;
  for (int i = 0; i < 4; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    layers.push_back(conv2d_no_bias(p + ".dw", channels, 3, blocks[i].stride, 1, static_cast<int>(channels)));
    layers.push_back(batchnorm2d(p + ".bn1"));
    layers.push_back(relu6(p + ".relu1"));
    layers.push_back(conv2d_no_bias(p + ".pw", blocks[i].out_channels, 1, 1, 0));
    layers.push_back(batchnorm2d(p + ".bn2"));
    layers.push_back(relu6(p + ".relu2"));
    channels = blocks[i].out_channels;
  }
  layers.push_back(global_avgpool("pool"));
  layers.push_back(flatten("flatten"));
  layers.push_back(dropout("dropout", 0.2f));
  layers.push_back(linear("logits", 10, "fc"));
  return layers;
}

const std::vector<ModelSpec>& zoo() {
  static const std::vector<ModelSpec> models = {
      with_params({"seed-cnn", "the classic small CNN on 1x28x28 Fashion-MNIST", 1, 28, 28, BatchGeometry{1, 1}, 10,
                   kSeedCnnLayers, {}, {}, nullptr, LossSpec{}}),
      with_params({"seed-cnn-112",
                   "the same CNN on the original 3x112x112 geometry (Fashion-MNIST upsampled 4x, channel x3)", 3, 112,
                   112, BatchGeometry{3, 4}, 10, kSeedCnnLayers, {}, {}, nullptr, LossSpec{}}),
      with_params({"seed-cnn-4conv", "the seed document's case study: four 3x3 convs, two max-pools, two linear layers",
                   1, 28, 28, BatchGeometry{1, 1}, 10, kSeedCnn4ConvLayers, {}, {}, nullptr, LossSpec{}}),
      with_params({"lenet5", "LeNet-5: two 5x5 convs with tanh and average pooling, three linear layers", 1, 28, 28,
                   BatchGeometry{1, 1}, 10, kLeNet5Layers, {}, {}, nullptr, LossSpec{}}),
      with_params({"resnet8", "a ResNet of three basic blocks (16, 32, 64 channels) with batch norm, global average "
                   "pooling", 1, 28, 28, BatchGeometry{1, 1}, 10, resnet8_layers(), {}, {}, nullptr, LossSpec{}}),
      with_params({"mobilenet-mini", "four depthwise-separable blocks with batch norm and relu6, global average "
                   "pooling, dropout 0.2", 1, 28, 28, BatchGeometry{1, 1}, 10, mobilenet_mini_layers(), {}, {}, nullptr, LossSpec{}}),
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

ModelSpec load_model(const std::string& name_or_file) {
  return is_model_file(name_or_file) ? load_model_file(name_or_file) : model_spec(name_or_file);
}

}  // namespace parity
