// model/model_description.cpp — writing a ModelSpec as the JSON file the LibTorch peer reads.
#include "model/model_description.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "util/atomic_file.h"
#include "parity/error.h"

namespace parity {
namespace {

// The weight of a conv2d or linear layer: its shape gives the layer's input size.
const ParamSpec& weight_of(const ModelSpec& spec, const LayerSpec& layer) {
  const std::string key = layer.module + ".weight";
  for (const ParamSpec& p : spec.params)
    if (p.name == key) return p;
  throw Error(ErrorKind::invalid_argument, fmt::format("model '{}': layer '{}' has no parameter '{}' in spec.params",
                                                       spec.name, layer.name, key));
}

}  // namespace

std::string model_description_json(const ModelSpec& spec) {
  if (spec.layer_graph)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("model '{}' is read from a file and has no layer list: the LibTorch peer and the PyTorch "
                            "reference take built-in models only",
                            spec.name));
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const LayerSpec& layer : spec.layers) {
    nlohmann::ordered_json l = {{"op", layer_op_name(layer.op)}, {"name", layer.name}};
    switch (layer.op) {
      case LayerOp::conv2d:
        l["module"] = layer.module;
        l["in_channels"] = weight_of(spec, layer).shape[1] * layer.groups;
        l["out_channels"] = layer.features;
        l["kernel"] = layer.kernel;
        l["stride"] = layer.stride;
        l["padding"] = layer.padding;
        l["groups"] = layer.groups;
        l["bias"] = layer.bias;
        break;
      case LayerOp::batchnorm2d:
        l["module"] = layer.module;
        l["channels"] = weight_of(spec, layer).shape[0];
        break;
      case LayerOp::avgpool2d:
      case LayerOp::maxpool2d:
        l["kernel"] = layer.kernel;
        l["stride"] = layer.stride;
        break;
      case LayerOp::linear:
        l["module"] = layer.module;
        l["in_features"] = weight_of(spec, layer).shape[1];
        l["out_features"] = layer.features;
        break;
      case LayerOp::dropout:
        l["p"] = layer.p;
        l["node_key"] = dropout_node_key(layer.name);
        break;
      case LayerOp::relu:
      case LayerOp::global_avgpool:
      case LayerOp::tanh:
      case LayerOp::relu6:
      case LayerOp::add:
      case LayerOp::flatten: break;
    }
    if (!layer.inputs.empty()) l["inputs"] = layer.inputs;
    layers.push_back(std::move(l));
  }
  const nlohmann::ordered_json doc = {
      {"format", model_description_format()},
      {"name", spec.name},
      {"input", {{"channels", spec.channels}, {"height", spec.height}, {"width", spec.width}}},
      {"num_classes", spec.num_classes},
      {"layers", std::move(layers)},
  };
  return doc.dump(2) + "\n";
}

void write_model_description(const ModelSpec& spec, const std::string& path) {
  write_file_atomically(path, model_description_json(spec));
}

}  // namespace parity
