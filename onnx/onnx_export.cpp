// onnx/onnx_export.cpp — a parity graph written as an ONNX ModelProto at opset 13: the nodes the
// outputs need, each mapped in one switch over parity_op (a new op is a compiler warning here);
// parameters and state as initializers under their parity names; then onnx's checker and strict
// shape inference, whose inferred shape of every value is compared with parity's.
#include "onnx/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <array>
#include <exception>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "onnx/onnx_model.h"
#include "onnx/tensor_proto.h"
#include "parity/error.h"

namespace parity {
namespace {

void set_int(onnx::NodeProto* node, const char* name, int64_t value) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void set_ints(onnx::NodeProto* node, const char* name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

void set_float(onnx::NodeProto* node, const char* name, float value) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

// onnx.checker.check_model(model, full_check=True): shape inference with type checks and its
// errors fatal (strict mode) leaves the inferred shapes of the values in model.graph.value_info.
void check_and_infer(onnx::ModelProto& model) {
  onnx::checker::check_model(model);
  onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                     onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict_mode=*/1));
}

// An inferred shape for messages: "[batch,16,28,28]", "?" for a dim onnx left unknown.
std::string onnx_shape_text(const onnx::TensorShapeProto& shape) {
  std::vector<std::string> dims;
  for (const auto& d : shape.dim())
    dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : d.has_dim_param() ? d.dim_param() : "?");
  return fmt::format("[{}]", fmt::join(dims, ","));
}

// The slice of the graph that the outputs depend on: which nodes, and which values they read.
struct Needed {
  std::vector<bool> nodes, values;
};

class Exporter {
 public:
  Exporter(const Graph& graph, const std::map<std::string, Tensor>& weights, const OnnxExportOptions& options)
      : graph_(graph), weights_(weights), options_(options) {}

  OnnxExported run();

 private:
  const ValueInfo& info(int32_t v) const { return graph_.values()[static_cast<size_t>(v)]; }
  const std::string& name_of(int32_t v) const { return info(v).name; }
  const Shape& shape_of(int32_t v) const { return info(v).shape; }
  [[noreturn]] void refuse(const Node& node, const std::string& why) const {
    throw OnnxUnsupported(fmt::format("export to ONNX: node '{}' ({}): {}", node.name, parity_op_name(node.op), why));
  }

  Needed needed() const;
  void add_port(onnx::ValueInfoProto* port, int32_t v);
  void add_initializer(int32_t v);
  void add_node(const Node& node);
  onnx::NodeProto* onnx_node(const Node& node, const char* op_type, std::vector<std::string> inputs);
  std::vector<std::string> input_names(const Node& node) const;
  std::string constant(const std::string& wanted, const Tensor& value);
  std::string fresh_name(const std::string& wanted);
  void require_batch_operands(const Node& node) const;
  void require_same_pool_windows(const Node& node, const std::array<int64_t, 2>& kernel,
                                 const std::array<int64_t, 2>& stride, const std::array<int64_t, 2>& pad,
                                 const std::array<int64_t, 2>& dilation, bool ceil_mode, bool empty_window_differs) const;
  void compare_inferred_shapes(const onnx::ModelProto& inferred) const;

  const Graph& graph_;
  const std::map<std::string, Tensor>& weights_;
  const OnnxExportOptions& options_;
  onnx::ModelProto model_;
  std::set<std::string> names_;  // every value name of the ONNX graph so far, and parity's
  std::vector<bool> batched_;    // per parity value: computed from a graph input, so dim 0 is the batch
  OnnxExported result_;
};

Needed Exporter::needed() const {
  Needed n{std::vector<bool>(graph_.nodes().size(), false), std::vector<bool>(graph_.values().size(), false)};
  for (const std::string& name : options_.outputs) n.values[static_cast<size_t>(graph_.find(name).id)] = true;
  for (size_t i = graph_.nodes().size(); i-- > 0;) {
    const Node& node = graph_.nodes()[i];
    for (int32_t out : node.outputs) n.nodes[i] = n.nodes[i] || n.values[static_cast<size_t>(out)];
    if (!n.nodes[i]) continue;
    for (int32_t in : node.inputs) n.values[static_cast<size_t>(in)] = true;
  }
  return n;
}

// A graph input or output: its dtype, and its dims with dim 0 the batch symbol when it is batched.
void Exporter::add_port(onnx::ValueInfoProto* port, int32_t v) {
  port->set_name(name_of(v));
  auto* type = port->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx_dtype_of(info(v).dtype));
  auto* shape = type->mutable_shape();
  const Shape& dims = shape_of(v);
  for (int i = 0; i < dims.rank(); ++i) {
    auto* d = shape->add_dim();
    if (i == 0 && batched_[static_cast<size_t>(v)]) d->set_dim_param(options_.batch_symbol);
    else d->set_dim_value(dims[i]);
  }
}

void Exporter::add_initializer(int32_t v) {
  const ValueInfo& value = info(v);
  auto it = weights_.find(value.name);
  if (it == weights_.end())
    throw Error(ErrorKind::data, fmt::format("{}: missing tensor '{}' (expected {} {})", options_.weights_source,
                                             value.name, to_string(value.dtype), value.shape.str()));
  const Tensor& t = it->second;
  if (t.dtype() != value.dtype || t.shape() != value.shape)
    throw Error(ErrorKind::data, fmt::format("{}: tensor '{}' is {} {}, the graph needs {} {}", options_.weights_source,
                                             value.name, to_string(t.dtype()), t.shape().str(), to_string(value.dtype),
                                             value.shape.str()));
  tensor_to_onnx(t, value.name, model_.mutable_graph()->add_initializer());
  result_.initializers.push_back(value.name);
}

std::string Exporter::fresh_name(const std::string& wanted) {
  std::string name = wanted;
  for (int i = 1; names_.count(name); ++i) name = fmt::format("{}.{}", wanted, i);
  names_.insert(name);
  return name;
}

// A Constant node holding `value`; returns the name of its output.
std::string Exporter::constant(const std::string& wanted, const Tensor& value) {
  const std::string name = fresh_name(wanted);
  onnx::NodeProto* n = model_.mutable_graph()->add_node();
  n->set_op_type("Constant");
  n->set_name(name);
  n->add_output(name);
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  tensor_to_onnx(value, name, a->mutable_t());
  ++result_.nodes;
  return name;
}

std::vector<std::string> Exporter::input_names(const Node& node) const {
  std::vector<std::string> names;
  for (int32_t in : node.inputs) names.push_back(name_of(in));
  return names;
}

// The ONNX node of `node`: its name, the op type, the inputs given and the node's first output
// (every op exported here has one output that ONNX sees: a MaxPool's indices stay unwritten).
onnx::NodeProto* Exporter::onnx_node(const Node& node, const char* op_type, std::vector<std::string> inputs) {
  onnx::NodeProto* n = model_.mutable_graph()->add_node();
  n->set_op_type(op_type);
  n->set_name(node.name);
  for (const std::string& in : inputs) n->add_input(in);
  n->add_output(name_of(node.outputs[0]));
  ++result_.nodes;
  return n;
}

// ADD, MUL and CONCAT combine their operands sample by sample: an operand that is not batched
// but whose dim 0 is not 1 would tie the export to this graph's batch.
void Exporter::require_batch_operands(const Node& node) const {
  bool any_batched = false;
  for (int32_t in : node.inputs) any_batched = any_batched || batched_[static_cast<size_t>(in)];
  if (!any_batched) return;
  for (int32_t in : node.inputs) {
    const Shape& s = shape_of(in);
    const bool broadcasts = node.op != PARITY_OP_CONCAT && s.rank() > 0 && s[0] == 1;
    if (!batched_[static_cast<size_t>(in)] && !broadcasts)
      refuse(node, fmt::format("operand '{}' {} does not depend on the graph inputs, yet its dim 0 meets the batch "
                               "dimension: the export would only hold for a batch of {}",
                               name_of(in), s.str(), s.rank() > 0 ? s[0] : 0));
  }
}

// A pool has an ONNX form when ONNX computes the same windows. Its output size per axis, ceil or
// floor of (in + 2 pad - dilated kernel) / stride, + 1, keeps a last ceil_mode window that starts
// in the end padding, which PyTorch (and parity) drop. And a window of padding only, possible when
// the padding is as wide as the dilated kernel, is 0 in parity but -inf in ONNX's MaxPool and 0/0
// in its AveragePool without count_include_pad (`empty_window_differs`).
void Exporter::require_same_pool_windows(const Node& node, const std::array<int64_t, 2>& kernel,
                                         const std::array<int64_t, 2>& stride, const std::array<int64_t, 2>& pad,
                                         const std::array<int64_t, 2>& dilation, bool ceil_mode,
                                         bool empty_window_differs) const {
  const Shape& in = shape_of(node.inputs[0]);
  const Shape& out = shape_of(node.outputs[0]);
  for (int axis = 0; axis < 2; ++axis) {
    const int64_t span = (kernel[axis] - 1) * dilation[axis] + 1;
    if (empty_window_differs && pad[axis] >= span)
      refuse(node, fmt::format("padding {} as wide as its window {} (dilated): a window of padding only is 0 in parity "
                               "and not in ONNX",
                               pad[axis], span));
    const int64_t room = in[2 + axis] + 2 * pad[axis] - span;
    const int64_t onnx_size = (ceil_mode ? (room + stride[axis] - 1) / stride[axis] : room / stride[axis]) + 1;
    if (onnx_size != out[2 + axis])
      refuse(node, fmt::format("its output {} has {} {} where ONNX's formula gives {}: with ceil_mode, ONNX keeps a "
                               "last window that starts in the padding, which PyTorch and parity drop",
                               out.str(), axis == 0 ? "height" : "width", out[2 + axis], onnx_size));
  }
}

void Exporter::add_node(const Node& node) {
  const char* const gradient = "a gradient op: export the evaluation forward graph (build_forward with training false)";
  switch (node.op) {
    case PARITY_OP_CONV2D: {
      const parity_conv2d_params& p = node.params.conv2d;
      const Shape& w = shape_of(node.inputs[1]);
      onnx::NodeProto* n = onnx_node(node, "Conv", input_names(node));
      set_ints(n, "kernel_shape", {w[2], w[3]});
      set_ints(n, "strides", {p.stride_h, p.stride_w});
      // ONNX orders pads [top, left, bottom, right].
      set_ints(n, "pads", {p.pad_h, p.pad_w, parity_conv2d_pad_bottom(&p), parity_conv2d_pad_right(&p)});
      set_ints(n, "dilations", {parity_conv2d_dilation_h(&p), parity_conv2d_dilation_w(&p)});
      set_int(n, "group", parity_conv2d_groups(&p));
      return;
    }
    case PARITY_OP_RELU: onnx_node(node, "Relu", input_names(node)); return;
    case PARITY_OP_CAST:  // ONNX Cast rounds to nearest even as CAST does (NaN payloads are not specified)
      set_int(onnx_node(node, "Cast", input_names(node)), "to", onnx_dtype_of(static_cast<DType>(node.params.cast.dtype)));
      return;
    case PARITY_OP_SIGMOID: onnx_node(node, "Sigmoid", input_names(node)); return;
    case PARITY_OP_TANH: onnx_node(node, "Tanh", input_names(node)); return;
    case PARITY_OP_LEAKY_RELU:
      set_float(onnx_node(node, "LeakyRelu", input_names(node)), "alpha", node.params.leaky_relu.negative_slope);
      return;
    case PARITY_OP_HARDTANH: {
      // Clip (opset 11 on) takes its bounds as scalar inputs.
      const std::string lo = constant(node.name + ".min", Tensor::from_f32(Shape{}, {node.params.hardtanh.min_val}));
      const std::string hi = constant(node.name + ".max", Tensor::from_f32(Shape{}, {node.params.hardtanh.max_val}));
      onnx_node(node, "Clip", {name_of(node.inputs[0]), lo, hi});
      return;
    }
    case PARITY_OP_MAXPOOL2D: {
      const parity_maxpool2d_params& p = node.params.maxpool2d;
      require_same_pool_windows(node, {p.kernel_h, p.kernel_w}, {p.stride_h, p.stride_w}, {p.pad_h, p.pad_w},
                                {p.dilation_h > 0 ? p.dilation_h : 1, p.dilation_w > 0 ? p.dilation_w : 1},
                                p.ceil_mode != 0, /*empty_window_differs=*/true);
      onnx::NodeProto* n = onnx_node(node, "MaxPool", input_names(node));
      set_ints(n, "kernel_shape", {p.kernel_h, p.kernel_w});
      set_ints(n, "strides", {p.stride_h, p.stride_w});
      set_ints(n, "pads", {p.pad_h, p.pad_w, p.pad_h, p.pad_w});
      set_ints(n, "dilations", {p.dilation_h > 0 ? p.dilation_h : 1, p.dilation_w > 0 ? p.dilation_w : 1});
      set_int(n, "ceil_mode", p.ceil_mode != 0);
      return;
    }
    case PARITY_OP_AVGPOOL2D: {
      const parity_avgpool2d_params& p = node.params.avgpool2d;
      require_same_pool_windows(node, {p.kernel_h, p.kernel_w}, {p.stride_h, p.stride_w}, {p.pad_h, p.pad_w}, {1, 1},
                                p.ceil_mode != 0, /*empty_window_differs=*/p.count_include_pad == 0);
      onnx::NodeProto* n = onnx_node(node, "AveragePool", input_names(node));
      set_ints(n, "kernel_shape", {p.kernel_h, p.kernel_w});
      set_ints(n, "strides", {p.stride_h, p.stride_w});
      set_ints(n, "pads", {p.pad_h, p.pad_w, p.pad_h, p.pad_w});
      set_int(n, "ceil_mode", p.ceil_mode != 0);
      // Written even when 0: ONNX's default (0) is not torch's (1).
      set_int(n, "count_include_pad", p.count_include_pad != 0);
      return;
    }
    case PARITY_OP_GLOBAL_AVGPOOL: onnx_node(node, "GlobalAveragePool", input_names(node)); return;
    case PARITY_OP_BATCHNORM2D_EVAL:
      // BatchNormalization-9 (opset 13) is the inference form: inputs x, scale, B, mean, var.
      set_float(onnx_node(node, "BatchNormalization", input_names(node)), "epsilon", node.params.batchnorm2d.eps);
      return;
    case PARITY_OP_LINEAR: set_int(onnx_node(node, "Gemm", input_names(node)), "transB", 1); return;
    case PARITY_OP_RESHAPE: {
      const int32_t x = node.inputs[0];
      const Shape& in = shape_of(x);
      const Shape& out = shape_of(node.outputs[0]);
      if (!batched_[static_cast<size_t>(x)]) {
        Tensor target(Shape{out.rank()}, DType::i64);
        std::copy(out.dims().begin(), out.dims().end(), target.i64());
        onnx_node(node, "Reshape", {name_of(x), constant(node.name + ".shape", target)});
        return;
      }
      if (out.rank() == 0 || in.rank() == 0 || out[0] != in[0])
        refuse(node, fmt::format("reshapes {} to {}, which moves the batch dimension: the export keeps dim 0 dynamic",
                                 in.str(), out.str()));
      if (out.rank() == 2) {
        set_int(onnx_node(node, "Flatten", {name_of(x)}), "axis", 1);
        return;
      }
      // Dim 0 of Reshape's shape is 0: copy the input's, whatever the batch.
      Tensor target(Shape{out.rank()}, DType::i64);
      std::copy(out.dims().begin(), out.dims().end(), target.i64());
      target.i64()[0] = 0;
      onnx_node(node, "Reshape", {name_of(x), constant(node.name + ".shape", target)});
      return;
    }
    case PARITY_OP_ADD:
    case PARITY_OP_MUL:
      require_batch_operands(node);
      onnx_node(node, node.op == PARITY_OP_ADD ? "Add" : "Mul", input_names(node));
      return;
    case PARITY_OP_SOFTMAX:
    case PARITY_OP_LOG_SOFTMAX: {
      const parity_softmax_params& p = node.params.softmax;
      const int rank = shape_of(node.inputs[0]).rank();
      const int64_t axis = p.has_dim ? (p.dim < 0 ? p.dim + rank : p.dim) : 1;
      set_int(onnx_node(node, node.op == PARITY_OP_SOFTMAX ? "Softmax" : "LogSoftmax", input_names(node)), "axis", axis);
      return;
    }
    case PARITY_OP_CONCAT:
      require_batch_operands(node);
      set_int(onnx_node(node, "Concat", input_names(node)), "axis", 1);
      return;

    case PARITY_OP_DROPOUT:
      refuse(node, "training-mode dropout: in an evaluation graph dropout is the identity and has no node");
    case PARITY_OP_BATCHNORM2D_TRAIN:
      refuse(node, "a batch norm in training form (batch statistics): export the evaluation graph, whose batch norms "
                   "read the running statistics");
    case PARITY_OP_GELU: refuse(node, "ONNX has no Gelu before opset 20, and the export is at opset 13");
    case PARITY_OP_SOFTMAX_XENT:
    case PARITY_OP_ACCURACY:
    case PARITY_OP_ARGMAX:
      refuse(node, "a loss or metric, not part of the inference graph: export the logits");
    case PARITY_OP_FILL:
    case PARITY_OP_SLICE:
    case PARITY_OP_REDUCE_SUM:
    case PARITY_OP_CLIP_COEF:
    case PARITY_OP_ADAM_STEP:
    case PARITY_OP_SGD_STEP:
      refuse(node, "an op of the training step (autodiff, gradient clipping, optimizer), not of inference");
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT:
    case PARITY_OP_RELU_BWD:
    case PARITY_OP_MAXPOOL2D_BWD:
    case PARITY_OP_LINEAR_BWD_DATA:
    case PARITY_OP_LINEAR_BWD_WEIGHT:
    case PARITY_OP_SOFTMAX_XENT_BWD:
    case PARITY_OP_SIGMOID_BWD:
    case PARITY_OP_TANH_BWD:
    case PARITY_OP_LEAKY_RELU_BWD:
    case PARITY_OP_GELU_BWD:
    case PARITY_OP_HARDTANH_BWD:
    case PARITY_OP_DROPOUT_BWD:
    case PARITY_OP_BATCHNORM2D_BWD:
    case PARITY_OP_AVGPOOL2D_BWD:
    case PARITY_OP_GLOBAL_AVGPOOL_BWD:
    case PARITY_OP_SOFTMAX_BWD:
    case PARITY_OP_LOG_SOFTMAX_BWD:
      refuse(node, gradient);
    case PARITY_OP_COUNT: break;
  }
  refuse(node, "not an op of parity/op_list.h");
}

// Shape inference ran with parity's graph inputs and outputs declared; every value it inferred
// must have parity's shape (dim 0 of a batched value is the symbol), or an op is mapped wrong.
void Exporter::compare_inferred_shapes(const onnx::ModelProto& inferred) const {
  auto compare = [&](const onnx::ValueInfoProto& port) {
    if (!graph_.has(port.name()) || !port.type().has_tensor_type() || !port.type().tensor_type().has_shape()) return;
    const int32_t v = graph_.find(port.name()).id;
    const Shape& expected = shape_of(v);
    const onnx::TensorShapeProto& got = port.type().tensor_type().shape();
    bool same = got.dim_size() == expected.rank();
    for (int i = 0; same && i < got.dim_size(); ++i) {
      if (i == 0 && batched_[static_cast<size_t>(v)]) {
        same = !got.dim(0).has_dim_value();
      } else {
        same = !got.dim(i).has_dim_value() || got.dim(i).dim_value() == expected[i];
      }
    }
    if (!same)
      throw Error(ErrorKind::internal,
                  fmt::format("export to ONNX: onnx's shape inference gives '{}' the shape {}, parity's graph {}{}: an "
                              "op's mapping is wrong",
                              port.name(), onnx_shape_text(got), expected.str(),
                              batched_[static_cast<size_t>(v)] ? " (dim 0 the batch)" : ""));
  };
  for (const auto& port : inferred.graph().value_info()) compare(port);
  for (const auto& port : inferred.graph().output()) compare(port);
}

OnnxExported Exporter::run() {
  for (const ValueInfo& v : graph_.values()) names_.insert(v.name);
  for (const std::string& name : options_.inputs)
    if (!graph_.has(name) || graph_.value(graph_.find(name)).kind != PARITY_VALUE_INPUT)
      throw Error(ErrorKind::invalid_argument, fmt::format("export to ONNX: graph input '{}' is not an INPUT value of the "
                                                           "graph", name));
  for (const std::string& name : options_.outputs)
    if (!graph_.has(name) || graph_.value(graph_.find(name)).producer < 0)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("export to ONNX: graph output '{}' is not a value computed by a node of the graph", name));
  if (options_.outputs.empty())
    throw Error(ErrorKind::invalid_argument, "export to ONNX: no graph outputs to export");

  model_.set_ir_version(kOnnxExportIrVersion);
  model_.set_producer_name("parity");
  model_.set_producer_version(PARITY_VERSION_STRING);
  onnx::OperatorSetIdProto* opset = model_.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxExportOpset);
  onnx::GraphProto* g = model_.mutable_graph();
  g->set_name(options_.graph_name);

  const Needed slice = needed();
  for (size_t v = 0; v < slice.values.size(); ++v) {
    const ValueInfo& value = graph_.values()[v];
    if (!slice.values[v] || value.kind != PARITY_VALUE_INPUT) continue;
    if (std::find(options_.inputs.begin(), options_.inputs.end(), value.name) == options_.inputs.end())
      throw OnnxUnsupported(fmt::format("export to ONNX: the outputs ({}) need INPUT '{}', which is not among the graph "
                                        "inputs of the export ({})",
                                        fmt::join(options_.outputs, ", "), value.name, fmt::join(options_.inputs, ", ")));
  }
  for (size_t v = 0; v < slice.values.size(); ++v) {
    const parity_value_kind kind = graph_.values()[v].kind;
    if (slice.values[v] && (kind == PARITY_VALUE_PARAM || kind == PARITY_VALUE_STATE))
      add_initializer(static_cast<int32_t>(v));
  }
  batched_.assign(graph_.values().size(), false);
  for (const std::string& name : options_.inputs) batched_[static_cast<size_t>(graph_.find(name).id)] = true;
  for (size_t i = 0; i < graph_.nodes().size(); ++i) {
    const Node& node = graph_.nodes()[i];
    if (!slice.nodes[i]) continue;
    bool batched = false;
    for (int32_t in : node.inputs) batched = batched || batched_[static_cast<size_t>(in)];
    for (int32_t out : node.outputs) batched_[static_cast<size_t>(out)] = batched;
    // Only output 0 has an ONNX name: a needed second output (a max-pool's indices) cannot be exported.
    for (size_t k = 1; k < node.outputs.size(); ++k)
      if (slice.values[static_cast<size_t>(node.outputs[k])])
        refuse(node, fmt::format("output {} ('{}') is needed, and only output 0 of this op is exported", k,
                                 name_of(node.outputs[k])));
    add_node(node);
  }
  for (const std::string& name : options_.inputs) add_port(g->add_input(), graph_.find(name).id);
  for (const std::string& name : options_.outputs) add_port(g->add_output(), graph_.find(name).id);

  if (model_.ByteSizeLong() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorKind::invalid_argument,
                fmt::format("export to ONNX: {} bytes is above protobuf's 2 GB limit", model_.ByteSizeLong()));
  onnx::ModelProto inferred = model_;
  try {
    check_and_infer(inferred);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::internal, fmt::format("export to ONNX: onnx's checker refuses the exported model: {}", e.what()));
  }
  compare_inferred_shapes(inferred);
  model_.SerializeToString(&result_.bytes);
  return std::move(result_);
}

}  // namespace

OnnxExported export_onnx(const Graph& graph, const std::map<std::string, Tensor>& weights,
                         const OnnxExportOptions& options) {
  return Exporter(graph, weights, options).run();
}

void check_onnx_model(const std::string& bytes, const std::string& name) {
  onnx::ModelProto model;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw Error(ErrorKind::data, fmt::format("{}: not an ONNX model (the protobuf does not parse)", name));
  try {
    check_and_infer(model);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::data, fmt::format("{}: onnx's checker refuses it: {}", name, e.what()));
  }
}

}  // namespace parity
