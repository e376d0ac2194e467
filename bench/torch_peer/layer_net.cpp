// bench/torch_peer/layer_net.cpp — parsing the model description file and building its layers
// as torch::nn modules.
#include "bench/torch_peer/layer_net.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "bench/torch_peer/tensor_file.h"
#include "ops/kernels/dropout.h"

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
    l.groups = named.count("groups", 1);
    const json& bias = named.at("bias");
    if (!bias.is_boolean()) named.fail("bias", "must be true or false");
    l.bias = bias.get<bool>();
    if (l.in % l.groups != 0 || l.out % l.groups != 0) named.fail("groups", "must divide in_channels and out_channels");
  } else if (l.op == "batchnorm2d") {
    l.module = named.text("module");
    l.in = l.out = named.count("channels", 1);
  } else if (l.op == "maxpool2d" || l.op == "avgpool2d") {
    l.kernel = named.count("kernel", 1);
    l.stride = named.count("stride", 1);
  } else if (l.op == "linear") {
    l.module = named.text("module");
    l.in = named.count("in_features", 1);
    l.out = named.count("out_features", 1);
  } else if (l.op == "dropout") {
    const json& p = named.at("p");
    if (!p.is_number() || !(p.get<double>() >= 0.0 && p.get<double>() < 1.0)) named.fail("p", "must be a number in [0, 1)");
    l.p = p.get<double>();
    const int64_t key = named.count("node_key", 0);
    if (key > int64_t{UINT32_MAX}) named.fail("node_key", "must fit in 32 bits");
    l.node_key = static_cast<uint32_t>(key);
  } else if (l.op != "relu" && l.op != "tanh" && l.op != "relu6" && l.op != "flatten" && l.op != "add" &&
             l.op != "global_avgpool") {
    named.fail("op", "'" + l.op + "' is not a layer this peer knows (conv2d, relu, tanh, relu6, maxpool2d, avgpool2d, "
                     "global_avgpool, batchnorm2d, flatten, linear, add, dropout)");
  }
  if (object.contains("inputs")) {
    const json& inputs = object.at("inputs");
    if (!inputs.is_array() || inputs.empty()) named.fail("inputs", "must be a non-empty array of layer names");
    for (const json& name : inputs) {
      if (!name.is_string()) named.fail("inputs", "must hold layer names, got " + name.dump());
      l.inputs.push_back(name.get<std::string>());
    }
  }
  const size_t arity = l.op == "add" ? 2 : 1;
  if (!l.inputs.empty() ? l.inputs.size() != arity : arity != 1)
    named.fail("inputs", "must name " + std::to_string(arity) + " earlier layer(s) for " + l.op);
  return l;
}

}  // namespace

ModelDescription read_model_file(const std::string& path) {
  const json doc = parse_file(path);
  if (!doc.is_object()) throw std::runtime_error(path + ": a model description is a JSON object");
  const Fields top{doc, path};
  const std::string format = top.text("format");
  if (format != "parity-model-2")
    top.fail("format", "is '" + format + "'; this peer reads parity-model-2 (rebuild it with this parity)");
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
    norms_.emplace_back(nullptr);
    if (l.op == "conv2d")
      convs_.back() = register_path(l.module, torch::nn::Conv2d(torch::nn::Conv2dOptions(l.in, l.out, l.kernel)
                                                                      .stride(l.stride)
                                                                      .padding(l.padding)
                                                                      .groups(l.groups)
                                                                      .bias(l.bias)));
    else if (l.op == "linear")
      linears_.back() = register_path(l.module, torch::nn::Linear(l.in, l.out));
    else if (l.op == "batchnorm2d")  // torch's defaults are parity's: eps 1e-5, momentum 0.1
      norms_.back() = register_path(l.module, torch::nn::BatchNorm2d(l.in));
  }
}

std::shared_ptr<torch::nn::Module> LayerNetImpl::container(const std::string& path) {
  auto it = containers_.find(path);
  if (it != containers_.end()) return it->second;
  auto module = std::make_shared<torch::nn::Module>();
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos)
    register_module(path, module);
  else
    container(path.substr(0, dot))->register_module(path.substr(dot + 1), module);
  containers_.emplace(path, module);
  return module;
}

// Parity's dropout mask for x [N, ...] (ops/kernels/dropout.h, the function every backend uses).
torch::Tensor parity_dropout_mask(const torch::Tensor& x, const LayerDescription& l, const DropoutClock& clock) {
  parity_dropout_params p{};
  p.p = static_cast<float>(l.p);
  p.seed_lo = static_cast<uint32_t>(clock.seed);
  p.seed_hi = static_cast<uint32_t>(clock.seed >> 32);
  p.node_key = l.node_key;
  p.first_sample = static_cast<int32_t>(clock.first_sample);
  const int64_t samples = x.size(0), per_sample = x.numel() / std::max<int64_t>(samples, 1);
  torch::Tensor mask = torch::empty(x.sizes(), torch::kFloat32);
  float* m = mask.data_ptr<float>();
  for (int64_t n = 0; n < samples; ++n)
    for (int64_t e = 0; e < per_sample; ++e) m[n * per_sample + e] = kernels::dropout_mask(p, clock.step, n, e);
  return mask;
}

torch::Tensor LayerNetImpl::forward(torch::Tensor x, Trace* trace) {
  std::map<std::string, torch::Tensor> outputs = {{"x", x}};
  auto input = [&](const LayerDescription& l, size_t i) { return l.inputs.empty() ? x : outputs.at(l.inputs[i]); };
  for (size_t i = 0; i < description_.layers.size(); ++i) {
    const LayerDescription& l = description_.layers[i];
    const torch::Tensor h = input(l, 0);
    bool traced = true;
    if (l.op == "conv2d") {
      x = convs_[i](h);
    } else if (l.op == "relu") {
      x = torch::relu(h);
    } else if (l.op == "tanh") {
      x = torch::tanh(h);
    } else if (l.op == "relu6") {
      x = torch::hardtanh(h, 0.0, 6.0);
    } else if (l.op == "add") {
      x = h + input(l, 1);
    } else if (l.op == "dropout") {
      traced = dropout_.training;  // parity's evaluation graph has no dropout value
      x = dropout_.training ? h * parity_dropout_mask(h, l, dropout_) : h;
    } else if (l.op == "maxpool2d") {
      if (trace) {
        auto [pooled, indices] = torch::max_pool2d_with_indices(h, {l.kernel}, {l.stride});
        trace->indices[l.name + ".indices"] = indices;
        x = pooled;
      } else {
        x = torch::max_pool2d(h, {l.kernel}, {l.stride});
      }
    } else if (l.op == "avgpool2d") {
      x = torch::avg_pool2d(h, {l.kernel}, {l.stride});
    } else if (l.op == "global_avgpool") {
      x = torch::adaptive_avg_pool2d(h, {1, 1});
    } else if (l.op == "batchnorm2d") {
      x = norms_[i](h);
    } else if (l.op == "flatten") {
      x = h.flatten(1);
    } else {
      x = linears_[i](h);
    }
    outputs[l.name] = x;
    if (trace && traced) {
      x.retain_grad();
      trace->values.emplace_back(l.name, x);
    }
  }
  return x;
}

void load_weights(LayerNet& model, const std::string& path) {
  torch::NoGradGuard no_grad;
  const auto weights = read_weights(path);
  auto load = [&](const std::string& key, torch::Tensor value) {
    auto it = weights.find(key);
    if (it == weights.end()) throw std::runtime_error(path + ": missing " + key);
    if (it->second.sizes() != value.sizes()) throw std::runtime_error(path + ": wrong shape for " + key);
    value.copy_(it->second);
  };
  for (auto& item : model->named_parameters()) load(item.key(), item.value());
  for (auto& item : model->named_buffers()) {
    const std::string& key = item.key();
    if (key.size() > 20 && key.compare(key.size() - 20, 20, ".num_batches_tracked") == 0 && !weights.count(key)) continue;
    load(key, item.value());
  }
}

LayerNet make_layer_net(const std::string& model_file, const std::string& expected_name) {
  ModelDescription description = read_model_file(model_file);
  if (!expected_name.empty() && expected_name != description.name)
    throw std::runtime_error("--model " + expected_name + " but " + model_file + " describes " + description.name);
  return LayerNet(std::move(description));
}

}  // namespace parity::torch_peer
