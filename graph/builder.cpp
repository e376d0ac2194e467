// graph/builder.cpp — GraphBuilder: adds values and nodes, validating each op through its
// rule in ops/ and inferring output shapes; Graph lookups.
#include <algorithm>

#include <fmt/format.h>

#include "ops/kernels/philox.h"
#include "ops/op_rule.h"
#include "parity/error.h"
#include "parity/graph.h"

namespace parity {

const ValueInfo& Graph::value(Value v) const {
  if (v.id < 0 || v.id >= static_cast<int32_t>(values_.size()))
    throw Error(ErrorKind::invalid_argument, fmt::format("graph: value handle {} is not part of this graph", v.id));
  return values_[static_cast<size_t>(v.id)];
}

bool Graph::has(const std::string& name) const {
  for (const ValueInfo& v : values_)
    if (v.name == name) return true;
  return false;
}

Value Graph::find(const std::string& name) const {
  for (size_t i = 0; i < values_.size(); ++i)
    if (values_[i].name == name) return Value{static_cast<int32_t>(i)};
  throw Error(ErrorKind::invalid_argument, fmt::format("graph: no value named '{}'", name));
}

Value GraphBuilder::add_value(const std::string& name, const Shape& shape, DType dtype, parity_value_kind kind) {
  if (name.empty()) throw Error(ErrorKind::invalid_argument, "graph: a value needs a name");
  if (name.size() >= PARITY_NAME_LEN)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("graph: value name '{}' is longer than {} characters", name, PARITY_NAME_LEN - 1));
  if (graph_.has(name)) throw Error(ErrorKind::invalid_argument, fmt::format("graph: value name '{}' is taken", name));
  if (shape.rank() > PARITY_MAX_RANK)
    throw Error(ErrorKind::shape, fmt::format("graph: value '{}' has rank {}, at most {} is supported", name,
                                              shape.rank(), PARITY_MAX_RANK));
  for (int64_t d : shape.dims())
    if (d <= 0)
      throw Error(ErrorKind::shape, fmt::format("graph: value '{}' has shape {}: dimensions must be > 0", name, shape.str()));
  ValueInfo info;
  info.name = name;
  info.shape = shape;
  info.dtype = dtype;
  info.kind = kind;
  graph_.values_.push_back(std::move(info));
  return Value{static_cast<int32_t>(graph_.values_.size() - 1)};
}

Value GraphBuilder::input(const std::string& name, const Shape& shape, DType dtype) {
  return add_value(name, shape, dtype, PARITY_VALUE_INPUT);
}
Value GraphBuilder::parameter(const std::string& name, const Shape& shape) {
  return add_value(name, shape, DType::f32, PARITY_VALUE_PARAM);
}
Value GraphBuilder::state(const std::string& name, const Shape& shape) {
  return add_value(name, shape, DType::f32, PARITY_VALUE_STATE);
}

std::string GraphBuilder::unique_name(const std::string& wanted, parity_op op) {
  if (!wanted.empty()) return wanted;
  (void)ops::rule(op);  // an unknown op is an error here, before anything is named after it
  return fmt::format("{}_{}", ops::lower_name(op), graph_.nodes_.size());
}

void GraphBuilder::rename(Value v, const std::string& name) {
  if (graph_.value(v).name == name) return;
  if (graph_.has(name)) throw Error(ErrorKind::invalid_argument, fmt::format("graph: value name '{}' is taken", name));
  graph_.values_[static_cast<size_t>(v.id)].name = name;
}

std::vector<Value> GraphBuilder::node(parity_op op, const parity_op_params& params, const std::vector<Value>& inputs,
                                      const std::string& name) {
  const ops::OpRule& rule = ops::rule(op);
  std::string node_name = unique_name(name, op);
  const parity_op_info arity = parity_op_info_of(op);
  const int count = static_cast<int>(inputs.size());
  if (count < arity.min_inputs || count > arity.num_inputs)
    throw Error(ErrorKind::invalid_argument,
                arity.min_inputs == arity.num_inputs
                    ? fmt::format("{} '{}': takes {} inputs, got {}", rule.name, node_name, rule.num_inputs, count)
                    : fmt::format("{} '{}': takes {} to {} inputs, got {}", rule.name, node_name, arity.min_inputs,
                                  arity.num_inputs, count));
  std::vector<const ValueInfo*> infos;
  for (Value v : inputs) infos.push_back(&graph_.value(v));
  std::vector<ops::OutputSpec> outs = rule.infer(ops::OpCall{node_name, params, infos, op});

  Node n;
  n.name = node_name;
  n.op = op;
  n.params = params;
  for (Value v : inputs) n.inputs.push_back(v.id);
  std::vector<Value> results;
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string value_name = outs.size() == 1 ? node_name : fmt::format("{}:{}", node_name, i);
    Value v = add_value(value_name, outs[i].shape, outs[i].dtype, PARITY_VALUE_TEMP);
    graph_.values_[static_cast<size_t>(v.id)].producer = static_cast<int32_t>(graph_.nodes_.size());
    n.outputs.push_back(v.id);
    results.push_back(v);
  }
  graph_.nodes_.push_back(std::move(n));
  return results;
}

namespace {
parity_op_params no_params() { return parity_op_params{}; }
}  // namespace

Value GraphBuilder::conv2d(Value x, Value w, Value b, int stride, int pad, const std::string& name) {
  parity_op_params p = no_params();
  p.conv2d.stride_h = p.conv2d.stride_w = stride;
  p.conv2d.pad_h = p.conv2d.pad_w = pad;
  return node(PARITY_OP_CONV2D, p, {x, w, b}, name)[0];
}

namespace {
// Conv2dOptions as params; the ABI reads dilation and groups 0 as 1, so the builder refuses
// them (and anything below) before they could mean 1.
parity_op_params conv2d_params(const Conv2dOptions& o, const std::string& node_name) {
  auto refuse = [&](const std::string& what) {
    throw Error(ErrorKind::invalid_argument, fmt::format("conv2d '{}': {}", node_name, what));
  };
  if (o.dilation_h < 1 || o.dilation_w < 1)
    refuse(fmt::format("dilation must be >= 1, got {}x{}", o.dilation_h, o.dilation_w));
  if (o.groups < 1) refuse(fmt::format("groups must be >= 1, got {}", o.groups));
  parity_op_params p = no_params();
  parity_conv2d_params& c = p.conv2d;
  c.stride_h = o.stride_h, c.stride_w = o.stride_w;
  c.pad_h = o.pad_h, c.pad_w = o.pad_w;
  c.pad_end_given = o.pad_end ? 1 : 0;
  c.pad_bottom = o.pad_end ? o.pad_bottom : 0, c.pad_right = o.pad_end ? o.pad_right : 0;
  c.dilation_h = o.dilation_h, c.dilation_w = o.dilation_w;
  c.groups = o.groups;
  return p;
}
}  // namespace

Value GraphBuilder::conv2d(Value x, Value w, Value b, const Conv2dOptions& options, const std::string& name) {
  const std::string node_name = unique_name(name, PARITY_OP_CONV2D);
  return node(PARITY_OP_CONV2D, conv2d_params(options, node_name), {x, w, b}, node_name)[0];
}

Value GraphBuilder::conv2d(Value x, Value w, const Conv2dOptions& options, const std::string& name) {
  const std::string node_name = unique_name(name, PARITY_OP_CONV2D);
  return node(PARITY_OP_CONV2D, conv2d_params(options, node_name), {x, w}, node_name)[0];
}

Value GraphBuilder::maxpool2d(Value x, int kernel, int stride, const std::string& name) {
  return maxpool2d(x, kernel, stride, 0, false, 1, name);
}

Value GraphBuilder::maxpool2d(Value x, int kernel, int stride, int pad, bool ceil_mode, int dilation,
                              const std::string& name) {
  parity_op_params p = no_params();
  p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = kernel;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = stride;
  p.maxpool2d.pad_h = p.maxpool2d.pad_w = pad;
  p.maxpool2d.dilation_h = p.maxpool2d.dilation_w = dilation;
  p.maxpool2d.ceil_mode = ceil_mode ? 1 : 0;
  std::vector<Value> outs = node(PARITY_OP_MAXPOOL2D, p, {x}, name);
  // The pooled values carry the node's own name; the indices are "<name>.indices".
  std::string node_name = graph_.nodes_.back().name;
  graph_.values_[static_cast<size_t>(outs[1].id)].name = node_name + ".indices";
  graph_.values_[static_cast<size_t>(outs[0].id)].name = node_name;
  return outs[0];
}

Value GraphBuilder::avgpool2d(Value x, int kernel, int stride, const std::string& name) {
  return avgpool2d(x, kernel, stride, 0, false, true, name);
}

Value GraphBuilder::avgpool2d(Value x, int kernel, int stride, int pad, bool ceil_mode, bool count_include_pad,
                              const std::string& name) {
  parity_op_params p = no_params();
  p.avgpool2d.kernel_h = p.avgpool2d.kernel_w = kernel;
  p.avgpool2d.stride_h = p.avgpool2d.stride_w = stride;
  p.avgpool2d.pad_h = p.avgpool2d.pad_w = pad;
  p.avgpool2d.ceil_mode = ceil_mode ? 1 : 0;
  p.avgpool2d.count_include_pad = count_include_pad ? 1 : 0;
  return node(PARITY_OP_AVGPOOL2D, p, {x}, name)[0];
}

Value GraphBuilder::reshape(Value x, const Shape& shape, const std::string& name) {
  const ValueInfo& in = graph_.value(x);
  std::string node_name = unique_name(name, PARITY_OP_RESHAPE);
  if (shape.numel() != in.shape.numel())
    throw Error(ErrorKind::shape, fmt::format("reshape '{}': cannot view '{}' {} as {}: element counts differ",
                                              node_name, in.name, in.shape.str(), shape.str()));
  Value y = node(PARITY_OP_RESHAPE, no_params(), {x}, node_name)[0];
  graph_.values_[static_cast<size_t>(y.id)].shape = shape;
  return y;
}

Value GraphBuilder::flatten(Value x, const std::string& name) {
  const Shape& s = graph_.value(x).shape;
  if (s.rank() < 1) throw Error(ErrorKind::shape, "flatten: input must have a batch dimension");
  return reshape(x, Shape{s[0], s.numel() / s[0]}, name);
}

// The methods PARITY_OP_LIST generates (see parity/graph.h).
#define PARITY_BUILDER_DEFINE_1(id, op)                                 \
  Value GraphBuilder::op(Value in0, const std::string& name) {          \
    return node(PARITY_OP_##id, no_params(), {in0}, name)[0];           \
  }
#define PARITY_BUILDER_DEFINE_2(id, op)                                       \
  Value GraphBuilder::op(Value in0, Value in1, const std::string& name) {     \
    return node(PARITY_OP_##id, no_params(), {in0, in1}, name)[0];            \
  }
#define PARITY_BUILDER_DEFINE_3(id, op)                                                 \
  Value GraphBuilder::op(Value in0, Value in1, Value in2, const std::string& name) {    \
    return node(PARITY_OP_##id, no_params(), {in0, in1, in2}, name)[0];                 \
  }
#define PARITY_BUILDER_DEFINE_IF_0(id, op, inputs)
#define PARITY_BUILDER_DEFINE_IF_1(id, op, inputs) PARITY_BUILDER_DEFINE_##inputs(id, op)
#define PARITY_BUILDER_DEFINE(id, op, inputs, outputs, builder) PARITY_BUILDER_DEFINE_IF_##builder(id, op, inputs)
PARITY_OP_LIST(PARITY_BUILDER_DEFINE)
#undef PARITY_BUILDER_DEFINE
Value GraphBuilder::fill(float value, const std::string& name) {
  parity_op_params p = no_params();
  p.fill.value = value;
  return node(PARITY_OP_FILL, p, {}, name)[0];
}

Value GraphBuilder::leaky_relu(Value x, float negative_slope, const std::string& name) {
  parity_op_params p = no_params();
  p.leaky_relu.negative_slope = negative_slope;
  return node(PARITY_OP_LEAKY_RELU, p, {x}, name)[0];
}

Value GraphBuilder::softmax_xent(Value logits, Value labels, parity_reduction reduction,
                                 std::optional<int32_t> ignore_index, const std::string& name) {
  parity_op_params p = no_params();
  p.softmax_xent.reduction = reduction;
  p.softmax_xent.has_ignore_index = ignore_index ? 1 : 0;
  p.softmax_xent.ignore_index = ignore_index.value_or(0);
  return node(PARITY_OP_SOFTMAX_XENT, p, {logits, labels}, name)[0];
}

Value GraphBuilder::softmax(Value x, int dim, const std::string& name) {
  parity_op_params p = no_params();
  p.softmax.dim = dim;
  p.softmax.has_dim = 1;
  return node(PARITY_OP_SOFTMAX, p, {x}, name)[0];
}

Value GraphBuilder::log_softmax(Value x, int dim, const std::string& name) {
  parity_op_params p = no_params();
  p.softmax.dim = dim;
  p.softmax.has_dim = 1;
  return node(PARITY_OP_LOG_SOFTMAX, p, {x}, name)[0];
}

Value GraphBuilder::concat(const std::vector<Value>& inputs, const std::string& name) {
  const std::string node_name = unique_name(name, PARITY_OP_CONCAT);
  // The whole list against the rule first, so a mismatch names this concat, not a part of it.
  std::vector<const ValueInfo*> infos;
  for (Value v : inputs) infos.push_back(&graph_.value(v));
  const parity_op_params p = no_params();
  (void)ops::rule(PARITY_OP_CONCAT).infer(ops::OpCall{node_name, p, infos, PARITY_OP_CONCAT});
  // Groups of up to PARITY_MAX_NODE_INPUTS, in order, until one node takes what is left.
  std::vector<Value> level = inputs;
  int part = 0;
  while (level.size() > PARITY_MAX_NODE_INPUTS) {
    std::vector<Value> next;
    for (size_t i = 0; i < level.size(); i += PARITY_MAX_NODE_INPUTS) {
      const size_t end = std::min(level.size(), i + PARITY_MAX_NODE_INPUTS);
      std::vector<Value> group(level.begin() + static_cast<std::ptrdiff_t>(i), level.begin() + static_cast<std::ptrdiff_t>(end));
      next.push_back(group.size() == 1 ? group[0]
                                       : node(PARITY_OP_CONCAT, p, group, fmt::format("{}.part{}", node_name, part++))[0]);
    }
    level = std::move(next);
  }
  return node(PARITY_OP_CONCAT, p, level, node_name)[0];
}

Value GraphBuilder::hardtanh(Value x, float min_val, float max_val, const std::string& name) {
  parity_op_params p = no_params();
  p.hardtanh.min_val = min_val;
  p.hardtanh.max_val = max_val;
  return node(PARITY_OP_HARDTANH, p, {x}, name)[0];
}

Value GraphBuilder::cast(Value x, DType dtype, const std::string& name) {
  parity_op_params p = no_params();
  p.cast.dtype = static_cast<int32_t>(dtype);
  return node(PARITY_OP_CAST, p, {x}, name)[0];
}

Value GraphBuilder::dropout(Value x, Value step, float p, uint64_t seed, int64_t first_sample, const std::string& name) {
  const std::string node_name = unique_name(name, PARITY_OP_DROPOUT);
  if (first_sample < 0 || first_sample > INT32_MAX)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("dropout '{}': first_sample must be in [0, 2^31), got {}", node_name, first_sample));
  parity_op_params params = no_params();
  params.dropout.p = p;
  params.dropout.seed_lo = static_cast<uint32_t>(seed);
  params.dropout.seed_hi = static_cast<uint32_t>(seed >> 32);
  params.dropout.node_key = dropout_node_key(node_name);
  params.dropout.first_sample = static_cast<int32_t>(first_sample);
  return node(PARITY_OP_DROPOUT, params, {x, step}, node_name)[0];
}

uint32_t dropout_node_key(const std::string& node_name) {
  const uint64_t hash = kernels::fnv1a64(node_name.data(), node_name.size());
  return static_cast<uint32_t>(hash) ^ static_cast<uint32_t>(hash >> 32);
}

Value GraphBuilder::relu6(Value x, const std::string& name) {
  return hardtanh(x, 0.0f, 6.0f, name.empty() ? fmt::format("relu6_{}", graph_.nodes_.size()) : name);
}

Value GraphBuilder::batchnorm2d_train(Value x, Value gamma, Value beta, Value running_mean, Value running_var,
                                      float eps, float momentum, parity_batchnorm_convention convention,
                                      const std::string& name) {
  parity_op_params p = no_params();
  p.batchnorm2d.eps = eps;
  p.batchnorm2d.momentum = momentum;
  p.batchnorm2d.convention = convention;
  p.batchnorm2d.training = 1;
  std::vector<Value> outs = node(PARITY_OP_BATCHNORM2D_TRAIN, p, {x, gamma, beta, running_mean, running_var}, name);
  // y carries the node's own name (as in an evaluation graph); the statistics its backward
  // reads are "<name>.saved_mean" and "<name>.saved_invstd".
  const std::string node_name = graph_.nodes_.back().name;
  graph_.values_[static_cast<size_t>(outs[1].id)].name = node_name + ".saved_mean";
  graph_.values_[static_cast<size_t>(outs[2].id)].name = node_name + ".saved_invstd";
  graph_.values_[static_cast<size_t>(outs[0].id)].name = node_name;
  return outs[0];
}

Value GraphBuilder::batchnorm2d_eval(Value x, Value gamma, Value beta, Value running_mean, Value running_var,
                                     float eps, const std::string& name) {
  parity_op_params p = no_params();
  p.batchnorm2d.eps = eps;
  return node(PARITY_OP_BATCHNORM2D_EVAL, p, {x, gamma, beta, running_mean, running_var}, name)[0];
}

}  // namespace parity
