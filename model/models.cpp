// model/models.cpp — the layer lists of the built-in models and their forward graphs.
#include <fmt/format.h>

#include "parity/error.h"
#include "parity/model.h"

namespace parity {
namespace {

// conv(3x3,16,pad 1) → relu → maxpool 2 → conv(3x3,32,pad 1) → relu → maxpool 2 →
// linear(→128) → relu → linear(128→10), on `side`x`side` inputs of `channels` channels.
ModelSpec seed_cnn(std::string name, std::string description, int channels, int side, BatchGeometry geometry) {
  ModelSpec s;
  s.name = std::move(name);
  s.description = std::move(description);
  s.channels = channels;
  s.height = s.width = side;
  s.geometry = geometry;
  const int64_t flat = 32LL * (side / 4) * (side / 4);
  s.params = {
      {"conv1.weight", Shape{16, channels, 3, 3}, channels * 9LL},
      {"conv1.bias", Shape{16}, channels * 9LL},
      {"conv2.weight", Shape{32, 16, 3, 3}, 16 * 9},
      {"conv2.bias", Shape{32}, 16 * 9},
      {"fc1.weight", Shape{128, flat}, flat},
      {"fc1.bias", Shape{128}, flat},
      {"fc2.weight", Shape{10, 128}, 128},
      {"fc2.bias", Shape{10}, 128},
  };
  return s;
}

const std::vector<ModelSpec>& zoo() {
  static const std::vector<ModelSpec> models = {
      seed_cnn("seed-cnn", "the classic small CNN on 1x28x28 Fashion-MNIST", 1, 28, BatchGeometry{1, 1}),
      seed_cnn("seed-cnn-112", "the same CNN on the original 3x112x112 geometry (Fashion-MNIST upsampled 4x, channel x3)",
               3, 112, BatchGeometry{3, 4}),
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

Graph build_forward(const ModelSpec& spec, int64_t batch) {
  if (batch <= 0) throw Error(ErrorKind::invalid_argument, fmt::format("batch must be > 0, got {}", batch));
  GraphBuilder b;
  Value x = b.input("x", Shape{batch, spec.channels, spec.height, spec.width});
  Value y = b.input("y", Shape{batch}, DType::i32);
  std::map<std::string, Value> p;
  for (const ParamSpec& ps : spec.params) p[ps.name] = b.parameter(ps.name, ps.shape);

  Value h = b.conv2d(x, p["conv1.weight"], p["conv1.bias"], 1, 1, "conv1");
  h = b.relu(h, "relu1");
  h = b.maxpool2d(h, 2, 2, "pool1");
  h = b.conv2d(h, p["conv2.weight"], p["conv2.bias"], 1, 1, "conv2");
  h = b.relu(h, "relu2");
  h = b.maxpool2d(h, 2, 2, "pool2");
  h = b.flatten(h, "flatten");
  h = b.linear(h, p["fc1.weight"], p["fc1.bias"], "fc1");
  h = b.relu(h, "relu3");
  Value logits = b.linear(h, p["fc2.weight"], p["fc2.bias"], "logits");
  b.softmax_xent(logits, y, "loss");
  b.accuracy(logits, y, "correct");
  return b.take();
}

}  // namespace parity
