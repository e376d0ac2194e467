// bench/torch_peer/layer_net.cpp — parsing the model description file and building its layers
// as torch::nn modules.
#include "bench/torch_peer/layer_net.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "bench/torch_peer/tensor_file.h"

namespace parity::torch_peer {
namespace {

using json = nlohmann::json;

// The fields of one JSON object, each read with an error that says where it is.
struct Fields {
  const json& object;
  std::string where;  // e.g. "m.json: layer 3 ('conv2')"

  [[noreturn]] void fail(const std::string& key, const std::string& rule) const {
    throw std::runtime_error(where + ": '" + key + "' " + rule);
  }
  const json& at(const std::string& key) const {
    auto it = object.find(key);
    if (it == object.end()) fail(key, "is missing");
    return *it;
  }
  std::string text(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_string() || v.get<std::string>().empty()) fail(key, "must be a non-empty string, got " + v.dump());
    return v.get<std::string>();
  }
  int64_t count(const std::string& key, int64_t min) const {
    const json& v = at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min)
      fail(key, "must be an integer >= " + std::to_string(min) + ", got " + v.dump());
    return v.get<int64_t>();
  }
};

json parse_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open model file " + path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw std::runtime_error(path + ": not a JSON model description: " + e.what());
  }
}

LayerDescription read_layer(const json& object, const std::string& where) {
  if (!object.is_object()) throw std::runtime_error(where + ": must be a JSON object, got " + object.dump());
  const Fields f{object, where};
  LayerDescription l;
  l.op = f.text("op");
  l.name = f.text("name");
  const Fields named{object, where + " ('" + l.name + "')"};
  if (l.op == "conv2d") {
    l.module = named.text("module");
    l.in = named.count("in_channels", 1);
    l.out = named.count("out_channels", 1);
    l.kernel = named.count("kernel", 1);
    l.stride = named.count("stride", 1);
    l.padding = named.count("padding", 0);
  } else if (l.op == "maxpool2d") {
    l.kernel = named.count("kernel", 1);
    l.stride = named.count("stride", 1);
  } else if (l.op == "linear") {
    l.module = named.text("module");
    l.in = named.count("in_features", 1);
    l.out = named.count("out_features", 1);
  } else if (l.op != "relu" && l.op != "flatten") {
    named.fail("op", "'" + l.op + "' is not a layer this peer knows (conv2d, relu, maxpool2d, flatten, linear)");
  }
  return l;
}

}  // namespace

ModelDescription read_model_file(const std::string& path) {
  const json doc = parse_file(path);
  if (!doc.is_object()) throw std::runtime_error(path + ": a model description is a JSON object");
  const Fields top{doc, path};
  const std::string format = top.text("format");
  if (format != "parity-model-1")
    top.fail("format", "is '" + format + "'; this peer reads parity-model-1 (rebuild it with this parity)");
  ModelDescription m;
  m.name = top.text("name");
  const json& input = top.at("input");
  if (!input.is_object()) top.fail("input", "must be an object {channels, height, width}");
  const Fields in{input, path + ": input"};
  m.channels = in.count("channels", 1);
  m.height = in.count("height", 1);
  m.width = in.count("width", 1);
  m.num_classes = top.count("num_classes", 1);
  const json& layers = top.at("layers");
  if (!layers.is_array() || layers.empty()) top.fail("layers", "must be a non-empty array");
  for (size_t i = 0; i < layers.size(); ++i)
    m.layers.push_back(read_layer(layers[i], path + ": layer " + std::to_string(i)));
  return m;
}

LayerNetImpl::LayerNetImpl(ModelDescription description) : description_(std::move(description)) {
  for (const LayerDescription& l : description_.layers) {
    convs_.emplace_back(nullptr);
    linears_.emplace_back(nullptr);
    if (l.op == "conv2d")
      convs_.back() = register_module(
          l.module, torch::nn::Conv2d(torch::nn::Conv2dOptions(l.in, l.out, l.kernel).stride(l.stride).padding(l.padding)));
    else if (l.op == "linear")
      linears_.back() = register_module(l.module, torch::nn::Linear(l.in, l.out));
  }
}

torch::Tensor LayerNetImpl::forward(torch::Tensor x, Trace* trace) {
  for (size_t i = 0; i < description_.layers.size(); ++i) {
    const LayerDescription& l = description_.layers[i];
    if (l.op == "conv2d") {
      x = convs_[i](x);
    } else if (l.op == "relu") {
      x = torch::relu(x);
    } else if (l.op == "maxpool2d") {
      if (trace) {
        auto [pooled, indices] = torch::max_pool2d_with_indices(x, {l.kernel}, {l.stride});
        trace->indices[l.name + ".indices"] = indices;
        x = pooled;
      } else {
        x = torch::max_pool2d(x, {l.kernel}, {l.stride});
      }
    } else if (l.op == "flatten") {
      x = x.flatten(1);
    } else {
      x = linears_[i](x);
    }
    if (trace) {
      x.retain_grad();
      trace->values.emplace_back(l.name, x);
    }
  }
  return x;
}

void load_weights(LayerNet& model, const std::string& path) {
  torch::NoGradGuard no_grad;
  const auto weights = read_weights(path);
  for (auto& item : model->named_parameters()) {
    auto it = weights.find(item.key());
    if (it == weights.end()) throw std::runtime_error(path + ": missing " + item.key());
    if (it->second.sizes() != item.value().sizes()) throw std::runtime_error(path + ": wrong shape for " + item.key());
    item.value().copy_(it->second);
  }
}

LayerNet make_layer_net(const std::string& model_file, const std::string& expected_name) {
  ModelDescription description = read_model_file(model_file);
  if (!expected_name.empty() && expected_name != description.name)
    throw std::runtime_error("--model " + expected_name + " but " + model_file + " describes " + description.name);
  return LayerNet(std::move(description));
}

}  // namespace parity::torch_peer
