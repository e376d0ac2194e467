// model/models.cpp — walking a model's layer list: the parameters it implies and its forward
// graph. Shapes come from the graph builder (the ops' rules), never from formulas of our own.
#include <functional>
#include <map>

#include <fmt/format.h>

#include "parity/error.h"
#include "parity/model.h"

namespace parity {
namespace {

// Supplies a layer's weights and buffers: a parameter by its state_dict key, shape, PyTorch
// fan_in and initialisation; a buffer (running statistics, f32 STATE) by key, shape and initial
// value; and the name of a buffer that only counts steps (no graph value).
struct ParamSource {
  std::function<Value(const std::string& key, const Shape& shape, int64_t fan_in, ParamSpec::Init init)> param;
  std::function<Value(const std::string& key, const Shape& shape, float initial)> buffer;
  std::function<void(const std::string& key)> step_count;
};

// The values of the layers built so far, by layer name ("x": the input), and the last one.
struct LayerValues {
  std::map<std::string, Value> by_name;
  Value last;

  // The inputs `layer` takes (its `inputs`, or the last layer's output), `count` of them.
  std::vector<Value> inputs_of(const LayerSpec& layer, size_t count) const {
    if (layer.inputs.empty()) {
      if (count != 1)
        throw Error(ErrorKind::invalid_argument, fmt::format("layer '{}' ({}): takes {} inputs; name them in `inputs`",
                                                             layer.name, layer_op_name(layer.op), count));
      return {last};
    }
    if (layer.inputs.size() != count)
      throw Error(ErrorKind::invalid_argument, fmt::format("layer '{}' ({}): takes {} input(s), `inputs` names {}",
                                                           layer.name, layer_op_name(layer.op), count,
                                                           layer.inputs.size()));
    std::vector<Value> values;
    for (const std::string& name : layer.inputs) {
      auto it = by_name.find(name);
      if (it == by_name.end())
        throw Error(ErrorKind::invalid_argument, fmt::format("layer '{}': input '{}' is neither \"x\" nor an earlier layer",
                                                             layer.name, name));
      values.push_back(it->second);
    }
    return values;
  }
};

// What the layers of one graph need besides their parameters.
struct LayerContext {
  const ForwardOptions& options;
  Value step;  // training with dropout: optimizer.step
};

// Adds `layer` to `b` after the layers in `v` and returns its output.
Value add_layer(GraphBuilder& b, const LayerSpec& layer, const LayerValues& v, const LayerContext& context,
                const ParamSource& param) {
  const size_t arity = layer.op == LayerOp::add ? 2 : 1;
  const std::vector<Value> in_values = v.inputs_of(layer, arity);
  const Value h = in_values[0];
  const Shape in = b.graph().value(h).shape;
  auto need_rank = [&](int rank) {
    if (in.rank() != rank)
      throw Error(ErrorKind::shape, fmt::format("layer '{}' ({}): needs a rank-{} input, got {}", layer.name,
                                                layer_op_name(layer.op), rank, in.rank()));
  };
  const auto uniform = ParamSpec::Init::uniform;
  switch (layer.op) {
    case LayerOp::conv2d: {
      need_rank(4);
      if (layer.groups < 1 || in[1] % layer.groups != 0 || layer.features % layer.groups != 0)
        throw Error(ErrorKind::shape, fmt::format("layer '{}' (conv2d): groups {} must divide the {} input and {} output "
                                                  "channels", layer.name, layer.groups, in[1], layer.features));
      const int64_t per_group = in[1] / layer.groups;
      const int64_t fan_in = per_group * layer.kernel * layer.kernel;
      Value w = param.param(layer.module + ".weight", Shape{layer.features, per_group, layer.kernel, layer.kernel},
                            fan_in, uniform);
      Conv2dOptions o;
      o.stride_h = o.stride_w = layer.stride;
      o.pad_h = o.pad_w = layer.padding;
      o.groups = layer.groups;
      if (!layer.bias) return b.conv2d(h, w, o, layer.name);
      Value bias = param.param(layer.module + ".bias", Shape{layer.features}, fan_in, uniform);
      return b.conv2d(h, w, bias, o, layer.name);
    }
    case LayerOp::batchnorm2d: {
      need_rank(4);
      const Shape channels{in[1]};
      Value gamma = param.param(layer.module + ".weight", channels, 1, ParamSpec::Init::ones);
      Value beta = param.param(layer.module + ".bias", channels, 1, ParamSpec::Init::zeros);
      Value mean = param.buffer(layer.module + ".running_mean", channels, 0.0f);
      Value var = param.buffer(layer.module + ".running_var", channels, 1.0f);
      param.step_count(layer.module + ".num_batches_tracked");
      if (context.options.training) return b.batchnorm2d_train(h, gamma, beta, mean, var, 1e-5f, 0.1f,
                                                               PARITY_BATCHNORM_PYTORCH, layer.name);
      return b.batchnorm2d_eval(h, gamma, beta, mean, var, 1e-5f, layer.name);
    }
    case LayerOp::avgpool2d: return b.avgpool2d(h, layer.kernel, layer.stride, layer.name);
    case LayerOp::global_avgpool: return b.global_avgpool(h, layer.name);
    case LayerOp::relu: return b.relu(h, layer.name);
    case LayerOp::tanh: return b.tanh(h, layer.name);
    case LayerOp::relu6: return b.relu6(h, layer.name);
    case LayerOp::maxpool2d: return b.maxpool2d(h, layer.kernel, layer.stride, layer.name);
    case LayerOp::flatten: return b.flatten(h, layer.name);
    case LayerOp::linear: {
      need_rank(2);
      Value w = param.param(layer.module + ".weight", Shape{layer.features, in[1]}, in[1], uniform);
      Value bias = param.param(layer.module + ".bias", Shape{layer.features}, in[1], uniform);
      return b.linear(h, w, bias, layer.name);
    }
    case LayerOp::add: return b.add(in_values[0], in_values[1], layer.name);
    case LayerOp::dropout:
      if (!(layer.p >= 0.0f && layer.p < 1.0f))
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("layer '{}' (dropout): p must be in [0, 1), got {}", layer.name, layer.p));
      if (!context.options.training) return h;  // evaluation: the identity
      return b.dropout(h, context.step, layer.p, context.options.seed, context.options.first_sample, layer.name);
  }
  throw Error(ErrorKind::invalid_argument, fmt::format("layer '{}': unknown layer op {}", layer.name, int(layer.op)));
}

// Walks spec's layers from input x; returns the last layer's output.
Value add_layers(GraphBuilder& b, const ModelSpec& spec, Value x, const LayerContext& context, const ParamSource& param) {
  LayerValues v;
  v.by_name["x"] = x;
  v.last = x;
  for (const LayerSpec& layer : spec.layers) {
    if (v.by_name.count(layer.name))
      throw Error(ErrorKind::invalid_argument, fmt::format("model '{}': two layers are named '{}'", spec.name, layer.name));
    v.last = add_layer(b, layer, v, context, param);
    v.by_name[layer.name] = v.last;
  }
  return v.last;
}

}  // namespace

const char* layer_op_name(LayerOp op) {
  switch (op) {
    case LayerOp::conv2d: return "conv2d";
    case LayerOp::relu: return "relu";
    case LayerOp::maxpool2d: return "maxpool2d";
    case LayerOp::flatten: return "flatten";
    case LayerOp::linear: return "linear";
    case LayerOp::tanh: return "tanh";
    case LayerOp::relu6: return "relu6";
    case LayerOp::add: return "add";
    case LayerOp::dropout: return "dropout";
    case LayerOp::avgpool2d: return "avgpool2d";
    case LayerOp::global_avgpool: return "global_avgpool";
    case LayerOp::batchnorm2d: return "batchnorm2d";
  }
  return "?";
}

// Walks the layers on a scratch graph with a batch of one, collecting what they ask for.
void collect_layer_state(const ModelSpec& spec, std::vector<ParamSpec>* params, std::vector<BufferSpec>* buffers) {
  GraphBuilder b;
  Value x = b.input("x", Shape{1, spec.channels, spec.height, spec.width});
  const ForwardOptions evaluation;
  ParamSource source;
  source.param = [&](const std::string& key, const Shape& shape, int64_t fan_in, ParamSpec::Init init) {
    params->push_back(ParamSpec{key, shape, fan_in, init});
    return b.parameter(key, shape);
  };
  source.buffer = [&](const std::string& key, const Shape& shape, float initial) {
    buffers->push_back(BufferSpec{key, shape, initial, false});
    return b.state(key, shape);
  };
  source.step_count = [&](const std::string& key) { buffers->push_back(BufferSpec{key, Shape{}, 0.0f, true}); };
  add_layers(b, spec, x, LayerContext{evaluation, Value{}}, source);
}

std::vector<ParamSpec> layer_params(const ModelSpec& spec) {
  std::vector<ParamSpec> params;
  std::vector<BufferSpec> buffers;
  collect_layer_state(spec, &params, &buffers);
  return params;
}

std::vector<BufferSpec> layer_buffers(const ModelSpec& spec) {
  std::vector<ParamSpec> params;
  std::vector<BufferSpec> buffers;
  collect_layer_state(spec, &params, &buffers);
  return buffers;
}

ModelSpec with_input(const ModelSpec& spec, int channels, int height, int width) {
  if (spec.layer_graph && (channels != spec.channels || height != spec.height || width != spec.width))
    throw Error(ErrorKind::invalid_argument,
                fmt::format("model '{}' is read from a file with its input fixed at {}x{}x{}: it cannot take {}x{}x{}",
                            spec.name, spec.channels, spec.height, spec.width, channels, height, width));
  if (spec.layer_graph) return spec;
  if (channels < 1 || height < 1 || width < 1)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("an input of {}x{}x{}: channels, height and width must each be >= 1", channels, height, width));
  ModelSpec m = spec;
  m.channels = channels;
  m.height = height;
  m.width = width;
  if (channels != spec.channels || height != spec.height || width != spec.width)
    m.name = fmt::format("{} at {}x{}x{}", spec.name, channels, height, width);
  m.params = layer_params(m);
  m.buffers = layer_buffers(m);
  return m;
}

bool has_dropout(const ModelSpec& spec) {
  if (spec.layer_graph) return spec.layer_graph->has_dropout();
  for (const LayerSpec& layer : spec.layers)
    if (layer.op == LayerOp::dropout) return true;
  return false;
}

Graph build_forward(const ModelSpec& spec, int64_t batch, const ForwardOptions& options) {
  if (batch <= 0) throw Error(ErrorKind::invalid_argument, fmt::format("batch must be > 0, got {}", batch));
  GraphBuilder b;
  Value x = b.input("x", Shape{batch, spec.channels, spec.height, spec.width});
  Value y = b.input("y", Shape{batch}, DType::i32);
  // Every parameter comes before the first layer, in spec.params order (what checkpoints,
  // plans and the dumps of earlier versions expect).
  std::map<std::string, Value> p;
  for (const ParamSpec& ps : spec.params) p[ps.name] = b.parameter(ps.name, ps.shape);
  for (const BufferSpec& bs : spec.buffers)
    if (!bs.step_count) p[bs.name] = b.state(bs.name, bs.shape);
  auto known = [&](const std::string& key) {
    auto it = p.find(key);
    if (it == p.end())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("model '{}': a layer needs '{}', which spec.params and spec.buffers lack (see layer_params)",
                              spec.name, key));
    return it->second;
  };
  ParamSource source;
  source.param = [&](const std::string& key, const Shape&, int64_t, ParamSpec::Init) { return known(key); };
  source.buffer = [&](const std::string& key, const Shape&, float) { return known(key); };
  source.step_count = [](const std::string&) {};

  LayerContext context{options, Value{}};
  if (options.training && has_dropout(spec)) context.step = b.input(optimizer_step_name(), Shape{1}, DType::i32);
  Value h;
  if (spec.layer_graph) {
    if (spec.layer_graph->fixed_batch() > 0 && spec.layer_graph->fixed_batch() != batch)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("model '{}' fixes its batch dimension at {}, but the batch is {}: use --batch {}", spec.name,
                              spec.layer_graph->fixed_batch(), batch, spec.layer_graph->fixed_batch()));
    h = spec.layer_graph->add(b, x, options, context.step);
    const ValueInfo& out = b.graph().value(h);
    if (out.kind != PARITY_VALUE_TEMP || out.shape != Shape{batch, spec.num_classes})
      throw Error(ErrorKind::shape, fmt::format("model '{}': its output '{}' must be computed, [{}, {}]: got {}", spec.name,
                                                out.name, batch, spec.num_classes, out.shape.str()));
    b.rename(h, "logits");
  } else {
    h = add_layers(b, spec, x, context, source);
  }
  if (b.graph().value(h).name != "logits")
    throw Error(ErrorKind::invalid_argument,
                fmt::format("model '{}': the last layer must be named 'logits', got '{}'", spec.name,
                            b.graph().value(h).name));
  b.softmax_xent(h, y, spec.loss.reduction, spec.loss.ignore_index, "loss");
  b.accuracy(h, y, "correct");
  return b.take();
}

}  // namespace parity
