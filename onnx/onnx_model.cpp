// onnx/onnx_model.cpp — reading an ONNX model (structure, opsets, initializers checked once) and
// adding its graph to a GraphBuilder: one function per op type, constants folded at import.
#include "onnx/onnx_model.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "onnx/tensor_proto.h"

namespace parity {

namespace {

// Opsets before 7 are read too: each op's handler interprets the node by the version of the op
// that the model's opset selects (BatchNormalization's and Dropout's is_test, Concat's default
// axis, Reshape's and Pad's attributes), and refuses the legacy forms it does not map.
constexpr int64_t kMinOpset = 1, kMaxOpset = 17;
constexpr int64_t kMaxFileBytes = int64_t{1} << 31;  // protobuf's own limit is 2 GB
constexpr int kMaxNodes = 1 << 20;

bool default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// Parity's name for an ONNX name (OnnxBuilt's comment): the name itself up to 52 characters,
// else its first 35, '~' and its FNV-1a 64 hash, so that suffixes of up to 11 characters fit.
constexpr size_t kMaxImportedName = 52;
std::string parity_name(const std::string& onnx_name) {
  if (onnx_name.size() <= kMaxImportedName) return onnx_name;
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : onnx_name) hash = (hash ^ c) * 1099511628211ull;
  return fmt::format("{}~{:016x}", onnx_name.substr(0, 35), hash);
}

std::string node_label(const onnx::NodeProto& node, int index) {
  return fmt::format("node {} '{}' ({})", index, node.name().empty() ? node.output_size() ? node.output(0) : "" : node.name(),
                     node.op_type());
}

}  // namespace

struct OnnxModel::Impl {
  onnx::ModelProto proto;
  std::string name, folder;
  int64_t opset = 0;
  std::vector<OnnxPort> inputs, outputs;
  std::map<std::string, Tensor> initializers;  // f32, as the PARAM/STATE values hold them
  std::map<std::string, Tensor> constants;     // every initializer as read (i64 shapes too)
};

namespace {

OnnxPort port_of(const onnx::ValueInfoProto& info, const std::string& model, bool input) {
  OnnxPort port;
  port.name = info.name();
  const char* what = input ? "input" : "output";
  if (!info.type().has_tensor_type())
    throw OnnxUnsupported(fmt::format("{}: graph {} '{}' is not a tensor (sequences, maps and optionals are not supported)",
                                      model, what, info.name()));
  const auto& type = info.type().tensor_type();
  if (!onnx_dtype_supported(type.elem_type()))
    throw OnnxUnsupported(fmt::format("{}: graph {} '{}' has data type {} (FLOAT, INT32 and INT64 are supported)", model,
                                      what, info.name(), onnx_dtype_name(type.elem_type())),
                          fmt::format("data type {}", onnx_dtype_name(type.elem_type())));
  port.dtype = type.elem_type() == onnx::TensorProto::FLOAT   ? DType::f32
               : type.elem_type() == onnx::TensorProto::INT32 ? DType::i32
                                                              : DType::i64;
  if (!type.has_shape()) {
    if (input)
      throw OnnxUnsupported(fmt::format("{}: graph input '{}' has no shape (its rank and dims are needed)", model, info.name()));
    return port;
  }
  if (type.shape().dim_size() > PARITY_MAX_RANK)
    throw OnnxUnsupported(fmt::format("{}: graph {} '{}' has rank {} (parity's values have at most {} dims)", model,
                                      what, info.name(), type.shape().dim_size(), PARITY_MAX_RANK),
                          fmt::format("rank above {}", PARITY_MAX_RANK));
  for (int i = 0; i < type.shape().dim_size(); ++i) {
    const auto& dim = type.shape().dim(i);
    if (dim.has_dim_value()) {
      if (dim.dim_value() < 0 || dim.dim_value() >= (int64_t{1} << 31))
        throw Error(ErrorKind::data, fmt::format("{}: graph {} '{}' dim {} is {}: dims must be in [0, 2^31)", model,
                                                 what, info.name(), i, dim.dim_value()));
      if (dim.dim_value() == 0)
        throw OnnxUnsupported(fmt::format("{}: graph {} '{}' dim {} is 0 (parity's values are not empty)", model, what,
                                          info.name(), i),
                              "an empty tensor (a dim of 0)");
      port.dims.push_back(dim.dim_value());
    } else {
      port.dims.push_back(-1);
      if (i == 0) port.batch_symbolic = true;
    }
  }
  return port;
}

// Checks what a model must satisfy whatever it is used for; fills `impl`.
void read_model(OnnxModel::Impl& impl) {
  const auto& graph = impl.proto.graph();
  const std::string& model = impl.name;
  if (!impl.proto.has_graph())
    throw Error(ErrorKind::data, fmt::format("{}: not an ONNX model (no graph)", model));
  bool have_default = false;
  for (const auto& opset : impl.proto.opset_import()) {
    if (default_domain(opset.domain())) {
      impl.opset = opset.version();
      have_default = true;
    }
  }
  if (!have_default) {
    if (impl.proto.opset_import_size() > 0) {
      // A valid model of other domains only (e.g. ai.onnx.preview.training's Adam).
      std::vector<std::string> domains;
      for (const auto& opset : impl.proto.opset_import()) domains.push_back(opset.domain());
      throw OnnxUnsupported(fmt::format("{}: the model imports only the domain(s) {}, no opset of the default ONNX "
                                        "domain (parity maps the default domain only)",
                                        model, fmt::join(domains, ", ")),
                            fmt::format("domain {}", fmt::join(domains, ", ")));
    }
    if (impl.proto.ir_version() >= 3 || impl.proto.ir_version() <= 0)
      throw Error(ErrorKind::data, fmt::format("{}: no opset_import for the default ONNX domain", model));
    impl.opset = 1;
  }
  if (impl.opset < kMinOpset || impl.opset > kMaxOpset)
    throw OnnxUnsupported(fmt::format("{}: opset {} of the default domain is outside the supported {} to {}", model,
                                      impl.opset, kMinOpset, kMaxOpset),
                          fmt::format("opset {}", impl.opset));
  if (graph.node_size() > kMaxNodes)
    throw Error(ErrorKind::data, fmt::format("{}: {} nodes (more than {} is not a CNN)", model, graph.node_size(), kMaxNodes));

  std::set<std::string> defined;
  for (const auto& init : graph.initializer()) {
    if (init.name().empty()) throw Error(ErrorKind::data, fmt::format("{}: an initializer has no name", model));
    if (!defined.insert(init.name()).second)
      throw Error(ErrorKind::data, fmt::format("{}: initializer '{}' is defined twice", model, init.name()));
    const std::string what = fmt::format("{}: initializer '{}'", model, init.name());
    if (!onnx_dtype_supported(init.data_type()))
      throw OnnxUnsupported(fmt::format("{} has data type {} (FLOAT, INT32 and INT64 are supported)", what,
                                        onnx_dtype_name(init.data_type())),
                            fmt::format("data type {}", onnx_dtype_name(init.data_type())));
    Tensor tensor = tensor_from_onnx(init, impl.folder, what);
    if (tensor.dtype() == DType::f32) impl.initializers[init.name()] = tensor;
    impl.constants[init.name()] = std::move(tensor);
  }
  if (graph.sparse_initializer_size() > 0)
    throw OnnxUnsupported(fmt::format("{}: sparse initializers are not supported", model));
  for (const auto& input : graph.input()) {
    if (defined.count(input.name())) continue;  // IR < 4 lists initializers as inputs too
    impl.inputs.push_back(port_of(input, model, true));
    defined.insert(input.name());
  }
  // Every node reads only values defined before it: a cycle, or a value nobody produces, is an
  // error naming the node (ONNX requires topological order).
  std::set<std::string> produced_later;
  for (const auto& node : graph.node())
    for (const auto& out : node.output()) produced_later.insert(out);
  for (int i = 0; i < graph.node_size(); ++i) {
    const auto& node = graph.node(i);
    for (const auto& in : node.input()) {
      if (in.empty() || defined.count(in)) continue;
      if (produced_later.count(in))
        throw Error(ErrorKind::data, fmt::format("{}: {} reads '{}', which a later node produces: the graph has a cycle "
                                                 "or is not in topological order",
                                                 model, node_label(node, i), in));
      throw Error(ErrorKind::data, fmt::format("{}: {} reads '{}', which no node, initializer or graph input produces",
                                               model, node_label(node, i), in));
    }
    for (const auto& out : node.output()) {
      if (out.empty()) continue;
      if (!defined.insert(out).second)
        throw Error(ErrorKind::data, fmt::format("{}: {} writes '{}', which is already defined", model, node_label(node, i), out));
    }
  }
  for (const auto& output : graph.output()) {
    if (!defined.count(output.name()))
      throw Error(ErrorKind::data, fmt::format("{}: graph output '{}' is produced by no node", model, output.name()));
    impl.outputs.push_back(port_of(output, model, false));
  }
  if (impl.outputs.empty()) throw Error(ErrorKind::data, fmt::format("{}: the graph has no outputs", model));
}

// ---- building ------------------------------------------------------------------------------

// A value during import: a graph value, or a tensor known at import (folded), possibly with a
// zero padding waiting to be folded into the conv or pool that reads it.
struct Entry {
  Value value;
  std::optional<Tensor> constant;
  std::vector<int64_t> pending_pads;  // [top, left, bottom, right] of a folded Pad
  // A graph input not made yet: it becomes an INPUT when a node reads it as a tensor, so an
  // input read only for its known value (a Reshape's shape) is no value of the graph.
  std::optional<ValueInfo> deferred_input;
};

class Importer {
 public:
  Importer(const OnnxModel::Impl& impl, GraphBuilder& builder, const OnnxBuildOptions& options)
      : impl_(impl), b_(builder), options_(options) {}

  OnnxBuilt run();

 private:
  using Handler = void (Importer::*)();
  static const std::map<std::string, Handler>& handlers();

  // The node being imported.
  const onnx::NodeProto* node_ = nullptr;
  int index_ = 0;
  std::string where() const {
    return fmt::format("{}: {} at opset {}", impl_.name, node_label(*node_, index_), impl_.opset);
  }
  // `category`: `what` without this node's names and numbers, when it has any (for grouping).
  [[noreturn]] void unsupported(const std::string& what, const std::string& category = "") const {
    throw OnnxUnsupported(fmt::format("{}: {}", where(), what),
                          fmt::format("{}: {}", node_->op_type(), category.empty() ? what : category));
  }

  // Attributes.
  const onnx::AttributeProto* attr(const std::string& name) const {
    for (const auto& a : node_->attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  int64_t attr_int(const std::string& name, int64_t fallback) const {
    const auto* a = attr(name);
    return a ? a->i() : fallback;
  }
  float attr_float(const std::string& name, float fallback) const {
    const auto* a = attr(name);
    return a ? a->f() : fallback;
  }
  std::string attr_string(const std::string& name, const std::string& fallback) const {
    const auto* a = attr(name);
    return a ? a->s() : fallback;
  }
  std::vector<int64_t> attr_ints(const std::string& name) const {
    const auto* a = attr(name);
    return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
  }
  // Refuses any attribute outside `known`.
  void only_attributes(std::initializer_list<const char*> known) const {
    for (const auto& a : node_->attribute()) {
      bool ok = false;
      for (const char* k : known) ok = ok || a.name() == k;
      if (!ok) unsupported(fmt::format("attribute '{}' is not supported", a.name()));
    }
  }

  // Inputs and outputs.
  int inputs() const { return node_->input_size(); }
  bool has_input(int i) const { return i < node_->input_size() && !node_->input(i).empty(); }
  const Entry& entry(int i) const {
    if (!has_input(i)) unsupported(fmt::format("input {} is missing", i));
    return values_.at(node_->input(i));
  }
  Value value(int i) {
    const Entry& e = entry(i);
    if (!e.pending_pads.empty())
      unsupported(fmt::format("input {} ('{}') is the output of a Pad that parity can fold only into a Conv, "
                              "AveragePool or MaxPool reading it", i, node_->input(i)));
    return graph_value(node_->input(i));
  }
  const Tensor* constant(int i) const {
    if (!has_input(i)) return nullptr;
    const Entry& e = entry(i);
    return e.constant ? &*e.constant : nullptr;
  }
  // A constant, or a graph input whose value the caller gave (OnnxBuildOptions::known_inputs):
  // the graph is then built for that value (OnnxBuilt::fixed).
  const Tensor& require_constant(int i, const char* what) {
    if (const Tensor* t = constant(i)) return *t;
    const std::string& name = node_->input(i);
    auto known = options_.known_inputs.find(name);
    if (known != options_.known_inputs.end() && graph_inputs_.count(name)) {
      if (std::find(built_.fixed.begin(), built_.fixed.end(), name) == built_.fixed.end()) built_.fixed.push_back(name);
      return known->second;
    }
    unsupported(fmt::format("input {} ('{}', {}) must be known at import (a constant, an initializer, or a graph "
                            "input whose value is given)",
                            i, name, what),
                fmt::format("input {} ({}) computed at run time", i, what));
  }
  Shape shape_of(int i) {
    const Entry& e = entry(i);
    if (e.constant) return e.constant->shape();
    if (e.deferred_input) return e.deferred_input->shape;
    return b_.graph().value(e.value).shape;
  }
  DType dtype_of(int i) {
    const Entry& e = entry(i);
    if (e.constant) return e.constant->dtype();
    if (e.deferred_input) return e.deferred_input->dtype;
    return b_.graph().value(e.value).dtype;
  }
  std::string out_name(int i = 0) const { return parity_name(node_->output(i)); }
  bool output_used(int i) const { return i < node_->output_size() && !node_->output(i).empty() && used_.count(node_->output(i)); }
  void require_outputs(int max_used) const {
    for (int i = max_used; i < node_->output_size(); ++i)
      if (output_used(i)) unsupported(fmt::format("output {} ('{}') is not supported", i, node_->output(i)));
  }
  void set_value(int i, Value v) { values_[node_->output(i)] = Entry{v, std::nullopt, {}, std::nullopt}; }
  void set_constant(int i, Tensor t) { values_[node_->output(i)] = Entry{Value{}, std::move(t), {}, std::nullopt}; }

  // The graph value of an ONNX value: made now for a deferred graph input, materialized for a
  // constant.
  Value graph_value(const std::string& name) {
    Entry& e = values_.at(name);
    if (e.value.valid()) return e.value;
    if (e.deferred_input) {
      e.value = b_.input(e.deferred_input->name, e.deferred_input->shape, e.deferred_input->dtype);
      e.deferred_input.reset();
      return e.value;
    }
    return materialize(name);
  }

  // A constant that a graph op reads: an initializer of f32 data becomes a PARAM (BatchNorm's
  // running statistics a STATE), any other constant a STATE holding it.
  Value materialize(const std::string& name, bool as_state = false) {
    Entry& e = values_.at(name);
    if (e.value.valid()) return e.value;
    const Tensor& t = *e.constant;
    if (t.dtype() != DType::f32)
      unsupported(fmt::format("'{}' ({} constant) cannot be a graph operand: parity's ops read f32 here", name, to_string(t.dtype())));
    const bool initializer = impl_.initializers.count(name) > 0;
    const std::string held = parity_name(name);
    if (initializer && !as_state) {
      e.value = b_.parameter(held, t.shape());
      built_.params.push_back(held);
    } else {
      e.value = b_.state(held, t.shape());
      built_.state.push_back(held);
    }
    built_.values[held] = t;
    return e.value;
  }

  // Makes rank `rank` by prepending 1s (numpy's broadcasting of a lower rank).
  Value broadcast_rank(Value v, int rank, const std::string& name) {
    const Shape s = b_.graph().value(v).shape;
    if (s.rank() == rank) return v;
    std::vector<int64_t> dims(static_cast<size_t>(rank - s.rank()), 1);
    dims.insert(dims.end(), s.dims().begin(), s.dims().end());
    return b_.reshape(v, Shape(dims), name);
  }

  int normalize_axis(int64_t axis, int rank, const char* what) const {
    if (axis < -rank || axis >= std::max(rank, 1))
      unsupported(fmt::format("{} {} is outside the rank {}", what, axis, rank));
    return static_cast<int>(axis < 0 ? axis + rank : axis);
  }

  // Ops.
  void op_identity();
  void op_constant();
  void op_unary();
  void op_leaky_relu();
  void op_clip();
  void op_conv();
  void op_maxpool();
  void op_avgpool();
  void op_global_avgpool();
  void op_batchnorm();
  void op_gemm();
  void op_matmul();
  void op_binary();
  void op_concat();
  void op_flatten();
  void op_reshape();
  void op_squeeze();
  void op_unsqueeze();
  void op_dropout();
  void op_softmax();
  void op_pad();
  void op_shape();
  void op_gather();
  void op_slice();
  void op_cast();

  // Helpers of the pool and conv ops.
  struct Window {
    std::vector<int64_t> kernel, strides, dilations, pads;  // pads: [top, left, bottom, right]
  };
  Window window(int64_t input_h, int64_t input_w, bool has_kernel_attr, const std::vector<int64_t>& kernel_from_weight);
  std::vector<int64_t> take_pending_pads(int i) const {
    const Entry& e = entry(i);
    return e.pending_pads.empty() ? std::vector<int64_t>{0, 0, 0, 0} : e.pending_pads;
  }
  Value conv_input(int i) {
    (void)entry(i);
    return graph_value(node_->input(i));
  }

  const OnnxModel::Impl& impl_;
  GraphBuilder& b_;
  const OnnxBuildOptions& options_;
  std::unordered_map<std::string, Entry> values_;
  std::set<std::string> used_;          // every value some node or graph output reads
  std::set<std::string> graph_inputs_;  // the ONNX names of the graph inputs
  OnnxBuilt built_;
};

template <typename T>
std::vector<int64_t> as_i64(const Tensor& t) {
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  const T* p = static_cast<const T*>(t.data());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int64_t>(p[i]);
  return out;
}

std::vector<int64_t> int_values(const Tensor& t) {
  if (t.dtype() == DType::i64) return as_i64<int64_t>(t);
  if (t.dtype() == DType::i32) return as_i64<int32_t>(t);
  return as_i64<float>(t);
}

Tensor i64_tensor(const std::vector<int64_t>& values, bool scalar = false) {
  Tensor t(scalar ? Shape{} : Shape{static_cast<int64_t>(values.size())}, DType::i64);
  std::copy(values.begin(), values.end(), t.i64());
  return t;
}

const std::map<std::string, Importer::Handler>& Importer::handlers() {
  static const std::map<std::string, Handler> table = {
      {"Identity", &Importer::op_identity},
      {"Constant", &Importer::op_constant},
      {"Relu", &Importer::op_unary},
      {"Sigmoid", &Importer::op_unary},
      {"Tanh", &Importer::op_unary},
      {"LeakyRelu", &Importer::op_leaky_relu},
      {"Clip", &Importer::op_clip},
      {"Conv", &Importer::op_conv},
      {"MaxPool", &Importer::op_maxpool},
      {"AveragePool", &Importer::op_avgpool},
      {"GlobalAveragePool", &Importer::op_global_avgpool},
      {"BatchNormalization", &Importer::op_batchnorm},
      {"Gemm", &Importer::op_gemm},
      {"MatMul", &Importer::op_matmul},
      {"Add", &Importer::op_binary},
      {"Mul", &Importer::op_binary},
      {"Concat", &Importer::op_concat},
      {"Flatten", &Importer::op_flatten},
      {"Reshape", &Importer::op_reshape},
      {"Squeeze", &Importer::op_squeeze},
      {"Unsqueeze", &Importer::op_unsqueeze},
      {"Dropout", &Importer::op_dropout},
      {"Softmax", &Importer::op_softmax},
      {"LogSoftmax", &Importer::op_softmax},
      {"Pad", &Importer::op_pad},
      {"Shape", &Importer::op_shape},
      {"Gather", &Importer::op_gather},
      {"Slice", &Importer::op_slice},
      {"Cast", &Importer::op_cast},
  };
  return table;
}

OnnxBuilt Importer::run() {
  const auto& graph = impl_.proto.graph();
  for (const auto& node : graph.node())
    for (const auto& in : node.input()) used_.insert(in);
  for (const auto& out : graph.output()) used_.insert(out.name());

  for (const auto& [name, tensor] : impl_.constants) values_[name] = Entry{Value{}, tensor, {}, std::nullopt};
  for (const OnnxPort& port : impl_.inputs) {
    std::vector<int64_t> dims = port.dims;
    graph_inputs_.insert(port.name);
    auto known = options_.known_inputs.find(port.name);
    if (known != options_.known_inputs.end()) {
      // The tensor it will be fed gives the symbolic dims; the fixed ones must agree with it.
      const Shape& fed = known->second.shape();
      bool agrees = fed.rank() == static_cast<int>(dims.size()) && known->second.dtype() == port.dtype;
      for (size_t i = 0; agrees && i < dims.size(); ++i) agrees = dims[i] < 0 || dims[i] == fed[static_cast<int>(i)];
      if (!agrees)
        throw Error(ErrorKind::data, fmt::format("{}: graph input '{}' is {} {} (-1: symbolic), but its given value is {} {}",
                                                 impl_.name, port.name, to_string(port.dtype), Shape(dims).str(),
                                                 to_string(known->second.dtype()), fed.str()));
      for (int64_t d : fed.dims())
        if (d == 0)
          throw OnnxUnsupported(fmt::format("{}: graph input '{}' is given an empty tensor {} (parity's values are not empty)",
                                            impl_.name, port.name, fed.str()),
                                "an empty tensor (a dim of 0)");
      dims = fed.dims();
    }
    for (size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] >= 0) {
        if (i == 0 && options_.batch > 0 && dims[0] != options_.batch)
          throw Error(ErrorKind::invalid_argument,
                      fmt::format("{}: graph input '{}' has a fixed batch dimension {}, but the batch is {}", impl_.name,
                                  port.name, dims[0], options_.batch));
        continue;
      }
      if (i != 0 || options_.batch <= 0)
        throw OnnxUnsupported(fmt::format("{}: graph input '{}' dim {} is symbolic; only the batch dimension (dim 0) may be, "
                                          "and its size must be given",
                                          impl_.name, port.name, i),
                              "a symbolic dim other than the batch");
      dims[i] = options_.batch;
    }
    auto given = options_.inputs.find(port.name);
    if (given != options_.inputs.end()) {
      const Value v = given->second;
      const ValueInfo& info = b_.graph().value(v);
      if (info.shape != Shape(dims) || info.dtype != port.dtype)
        throw Error(ErrorKind::shape, fmt::format("{}: graph input '{}' is {} {}, but it is fed {} {} ('{}')", impl_.name,
                                                  port.name, to_string(port.dtype), Shape(dims).str(),
                                                  to_string(info.dtype), info.shape.str(), info.name));
      values_[port.name] = Entry{v, std::nullopt, {}, std::nullopt};
    } else {
      ValueInfo deferred;
      deferred.name = parity_name(port.name);
      deferred.shape = Shape(dims);
      deferred.dtype = port.dtype;
      deferred.kind = PARITY_VALUE_INPUT;
      values_[port.name] = Entry{Value{}, std::nullopt, {}, deferred};
    }
  }

  for (index_ = 0; index_ < graph.node_size(); ++index_) {
    node_ = &graph.node(index_);
    if (!default_domain(node_->domain()))
      unsupported(fmt::format("domain '{}' is not supported (only the default ONNX domain is)", node_->domain()));
    auto handler = handlers().find(node_->op_type());
    if (handler == handlers().end()) unsupported("this op type is not supported");
    (this->*handler->second)();
    for (int i = 0; i < node_->output_size(); ++i)
      if (!node_->output(i).empty() && !values_.count(node_->output(i)) && output_used(i))
        unsupported(fmt::format("output {} ('{}') is not supported", i, node_->output(i)));
  }
  node_ = nullptr;

  for (const auto& port : impl_.outputs) {
    const Entry& e = values_.at(port.name);
    if (!e.pending_pads.empty())
      throw OnnxUnsupported(fmt::format("{}: graph output '{}' is a Pad's output, which parity folds only into a conv or pool",
                                        impl_.name, port.name));
    if (e.value.valid() || e.deferred_input) {
      built_.outputs.push_back(graph_value(port.name));
    } else {
      built_.constant_outputs[port.name] = *e.constant;
      built_.outputs.push_back(Value{});
    }
  }
  // Inputs read only for their known values, or not at all, are no values of the graph.
  for (const OnnxPort& port : impl_.inputs) built_.inputs.push_back(values_.at(port.name).value);
  return std::move(built_);
}

// ---- the ops ---------------------------------------------------------------------------------

void Importer::op_identity() {
  if (entry(0).deferred_input) (void)graph_value(node_->input(0));  // one INPUT for both names
  values_[node_->output(0)] = entry(0);
}

void Importer::op_constant() {
  const auto& attrs = node_->attribute();
  if (attrs.size() != 1) unsupported("a Constant needs exactly one value attribute");
  const auto& a = attrs[0];
  const std::string what = where() + " attribute '" + a.name() + "'";
  if (a.name() == "value") {
    set_constant(0, tensor_from_onnx(a.t(), impl_.folder, what));
  } else if (a.name() == "value_float") {
    set_constant(0, Tensor::from_f32(Shape{}, {a.f()}));
  } else if (a.name() == "value_floats") {
    set_constant(0, Tensor::from_f32(Shape{a.floats_size()}, std::vector<float>(a.floats().begin(), a.floats().end())));
  } else if (a.name() == "value_int") {
    set_constant(0, i64_tensor({a.i()}, true));
  } else if (a.name() == "value_ints") {
    set_constant(0, i64_tensor(std::vector<int64_t>(a.ints().begin(), a.ints().end())));
  } else {
    unsupported(fmt::format("attribute '{}' is not supported", a.name()));
  }
}

void Importer::op_unary() {
  only_attributes({});
  const std::string& type = node_->op_type();
  if (dtype_of(0) != DType::f32) unsupported(fmt::format("input type {} (f32 only)", to_string(dtype_of(0))));
  const Value x = value(0);
  if (type == "Relu") set_value(0, b_.relu(x, out_name()));
  else if (type == "Sigmoid") set_value(0, b_.sigmoid(x, out_name()));
  else set_value(0, b_.tanh(x, out_name()));
}

void Importer::op_leaky_relu() {
  only_attributes({"alpha"});
  set_value(0, b_.leaky_relu(value(0), attr_float("alpha", 0.01f), out_name()));
}

void Importer::op_clip() {
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
  if (impl_.opset < 11) {
    only_attributes({"min", "max"});
    lo = attr_float("min", lo);
    hi = attr_float("max", hi);
  } else {
    only_attributes({});
    auto bound = [&](int i, float& out) {
      if (!has_input(i)) return;
      const Tensor& t = require_constant(i, i == 1 ? "min" : "max");
      if (t.dtype() != DType::f32 || t.numel() != 1) unsupported(fmt::format("input {} must be an f32 scalar", i));
      out = t.f32()[0];
    };
    bound(1, lo);
    bound(2, hi);
  }
  if (dtype_of(0) != DType::f32) unsupported(fmt::format("input type {} (f32 only)", to_string(dtype_of(0))));
  const Value x = value(0);
  if (lo == 0.0f && std::isinf(hi) && hi > 0) return set_value(0, b_.relu(x, out_name()));
  if (std::isnan(lo) || std::isnan(hi)) unsupported("a NaN bound");
  if (lo > hi) unsupported(fmt::format("min {} above max {} (ONNX then gives max everywhere; parity's hardtanh refuses it)", lo, hi));
  // hardtanh with an infinite bound is a one-sided clamp: the largest finite float stands in.
  const float big = std::numeric_limits<float>::max();
  set_value(0, b_.hardtanh(x, std::max(lo, -big), std::min(hi, big), out_name()));
}

Importer::Window Importer::window(int64_t input_h, int64_t input_w, bool has_kernel_attr,
                                  const std::vector<int64_t>& kernel_from_weight) {
  Window w;
  w.kernel = attr_ints("kernel_shape");
  if (w.kernel.empty()) {
    if (has_kernel_attr) unsupported("attribute 'kernel_shape' is required");
    w.kernel = kernel_from_weight;
  }
  if (w.kernel.size() != 2) unsupported(fmt::format("a {}-d window (parity has 2-d convolutions and pooling)", w.kernel.size()));
  w.strides = attr_ints("strides");
  if (w.strides.empty()) w.strides = {1, 1};
  w.dilations = attr_ints("dilations");
  if (w.dilations.empty()) w.dilations = {1, 1};
  if (w.strides.size() != 2 || w.dilations.size() != 2) unsupported("strides and dilations must have 2 values");
  for (int i = 0; i < 2; ++i)
    if (w.kernel[i] < 1 || w.strides[i] < 1 || w.dilations[i] < 1 || w.kernel[i] > 1 << 20 || w.strides[i] > 1 << 20 ||
        w.dilations[i] > 1 << 20)
      unsupported(fmt::format("kernel {}, strides {}, dilations {}: each must be in [1, 2^20]", fmt::join(w.kernel, ","),
                              fmt::join(w.strides, ","), fmt::join(w.dilations, ",")));
  const std::string auto_pad = attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> pads = attr_ints("pads");
  if (auto_pad == "NOTSET") {
    if (pads.empty()) pads = {0, 0, 0, 0};
    if (pads.size() != 4) unsupported(fmt::format("pads has {} values (4 for a 2-d window)", pads.size()));
    // ONNX orders pads [top, left, bottom, right].
    w.pads = pads;
  } else if (auto_pad == "VALID") {
    w.pads = {0, 0, 0, 0};
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const int64_t in[2] = {input_h, input_w};
    w.pads.assign(4, 0);
    for (int i = 0; i < 2; ++i) {
      const int64_t out = (in[i] + w.strides[i] - 1) / w.strides[i];
      const int64_t total =
          std::max<int64_t>(0, (out - 1) * w.strides[i] + (w.kernel[i] - 1) * w.dilations[i] + 1 - in[i]);
      const int64_t small = total / 2, large = total - small;
      w.pads[i] = auto_pad == "SAME_UPPER" ? small : large;
      w.pads[i + 2] = auto_pad == "SAME_UPPER" ? large : small;
    }
  } else {
    unsupported(fmt::format("auto_pad '{}' is not an ONNX value", auto_pad));
  }
  for (int64_t p : w.pads)
    if (p < 0 || p > 1 << 20) unsupported(fmt::format("pads {}: each must be in [0, 2^20]", fmt::join(w.pads, ",")));
  return w;
}

void Importer::op_conv() {
  only_attributes({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
  const Shape xs = shape_of(0), ws = shape_of(1);
  if (xs.rank() != 4 || ws.rank() != 4)
    unsupported(fmt::format("input {} and weight {}: parity's Conv is 2-d (rank-4 NCHW)", xs.str(), ws.str()));
  if (dtype_of(0) != DType::f32) unsupported("input type must be f32");
  Window w = window(xs[2], xs[3], false, {ws[2], ws[3]});
  if (w.kernel[0] != ws[2] || w.kernel[1] != ws[3])
    unsupported(fmt::format("kernel_shape {} differs from the weight's {}", fmt::join(w.kernel, ","), ws.str()));
  const std::vector<int64_t> folded = take_pending_pads(0);
  for (int i = 0; i < 4; ++i) w.pads[i] += folded[i];
  Conv2dOptions options;
  options.stride_h = static_cast<int>(w.strides[0]);
  options.stride_w = static_cast<int>(w.strides[1]);
  options.dilation_h = static_cast<int>(w.dilations[0]);
  options.dilation_w = static_cast<int>(w.dilations[1]);
  const int64_t group = attr_int("group", 1);
  if (group < 1 || group > xs[1]) unsupported(fmt::format("group {} for {} input channels", group, xs[1]));
  options.groups = static_cast<int>(group);
  options.pad_h = static_cast<int>(w.pads[0]);
  options.pad_w = static_cast<int>(w.pads[1]);
  if (w.pads[2] != w.pads[0] || w.pads[3] != w.pads[1]) {
    options.pad_end = true;
    options.pad_bottom = static_cast<int>(w.pads[2]);
    options.pad_right = static_cast<int>(w.pads[3]);
  }
  const Value x = conv_input(0), weight = value(1);
  if (has_input(2)) {
    if (shape_of(2).rank() != 1) unsupported(fmt::format("bias {} must be 1-d", shape_of(2).str()));
    set_value(0, b_.conv2d(x, weight, value(2), options, out_name()));
  } else {
    set_value(0, b_.conv2d(x, weight, options, out_name()));
  }
}

void Importer::op_maxpool() {
  only_attributes({"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"});
  require_outputs(1);
  if (attr_int("storage_order", 0) != 0) unsupported("storage_order 1 (column-major indices)");
  const Shape xs = shape_of(0);
  if (xs.rank() != 4) unsupported(fmt::format("input {}: parity's MaxPool is 2-d (rank-4 NCHW)", xs.str()));
  if (dtype_of(0) != DType::f32) unsupported(fmt::format("input type {} (f32 only)", to_string(dtype_of(0))));
  if (!entry(0).pending_pads.empty())
    unsupported("a zero Pad before a MaxPool cannot be folded into it: the padded zeros take part in the max");
  const Window w = window(xs[2], xs[3], true, {});
  if (w.pads[0] != w.pads[2] || w.pads[1] != w.pads[3])
    unsupported(fmt::format("asymmetric pads {} (parity's pooling pads both sides equally)", fmt::join(w.pads, ",")));
  parity_op_params p{};
  p.maxpool2d.kernel_h = static_cast<int32_t>(w.kernel[0]);
  p.maxpool2d.kernel_w = static_cast<int32_t>(w.kernel[1]);
  p.maxpool2d.stride_h = static_cast<int32_t>(w.strides[0]);
  p.maxpool2d.stride_w = static_cast<int32_t>(w.strides[1]);
  p.maxpool2d.pad_h = static_cast<int32_t>(w.pads[0]);
  p.maxpool2d.pad_w = static_cast<int32_t>(w.pads[1]);
  p.maxpool2d.dilation_h = static_cast<int32_t>(w.dilations[0]);
  p.maxpool2d.dilation_w = static_cast<int32_t>(w.dilations[1]);
  p.maxpool2d.ceil_mode = attr_int("ceil_mode", 0) ? 1 : 0;
  set_value(0, b_.node(PARITY_OP_MAXPOOL2D, p, {value(0)}, out_name())[0]);
}

void Importer::op_avgpool() {
  only_attributes({"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"});
  const Shape xs = shape_of(0);
  if (xs.rank() != 4) unsupported(fmt::format("input {}: parity's AveragePool is 2-d (rank-4 NCHW)", xs.str()));
  Window w = window(xs[2], xs[3], true, {});
  bool count_include_pad = attr_int("count_include_pad", 0) != 0;
  const std::vector<int64_t> folded = take_pending_pads(0);
  if (folded != std::vector<int64_t>{0, 0, 0, 0}) {
    // Padded zeros of a folded Pad are elements of the input: they count in the divisor, which is
    // count_include_pad's rule only when the pool adds no padding of its own or counts it too.
    if (!count_include_pad && w.pads != std::vector<int64_t>{0, 0, 0, 0})
      unsupported("a zero Pad before an AveragePool with its own pads and count_include_pad 0 cannot be folded");
    count_include_pad = true;
    for (int i = 0; i < 4; ++i) w.pads[i] += folded[i];
  }
  if (w.pads[0] != w.pads[2] || w.pads[1] != w.pads[3])
    unsupported(fmt::format("asymmetric pads {} (parity's pooling pads both sides equally)", fmt::join(w.pads, ",")));
  parity_op_params p{};
  p.avgpool2d.kernel_h = static_cast<int32_t>(w.kernel[0]);
  p.avgpool2d.kernel_w = static_cast<int32_t>(w.kernel[1]);
  p.avgpool2d.stride_h = static_cast<int32_t>(w.strides[0]);
  p.avgpool2d.stride_w = static_cast<int32_t>(w.strides[1]);
  p.avgpool2d.pad_h = static_cast<int32_t>(w.pads[0]);
  p.avgpool2d.pad_w = static_cast<int32_t>(w.pads[1]);
  p.avgpool2d.ceil_mode = attr_int("ceil_mode", 0) ? 1 : 0;
  p.avgpool2d.count_include_pad = count_include_pad ? 1 : 0;
  set_value(0, b_.node(PARITY_OP_AVGPOOL2D, p, {conv_input(0)}, out_name())[0]);
}

void Importer::op_global_avgpool() {
  only_attributes({});
  const Shape xs = shape_of(0);
  if (xs.rank() != 4) unsupported(fmt::format("input {}: parity's GlobalAveragePool is 2-d (rank-4 NCHW)", xs.str()));
  set_value(0, b_.global_avgpool(value(0), out_name()));
}

void Importer::op_batchnorm() {
  only_attributes({"epsilon", "momentum", "training_mode", "spatial", "is_test", "consumed_inputs"});
  if (attr("spatial") && attr_int("spatial", 1) != 1) unsupported("spatial 0 (per-element statistics)");
  const Shape xs = shape_of(0);
  if (xs.rank() != 4) unsupported(fmt::format("input {}: parity's BatchNormalization is for NCHW (rank 4)", xs.str()));
  const float eps = attr_float("epsilon", 1e-5f);
  const float onnx_momentum = attr_float("momentum", 0.9f);
  // The file's own training form: training_mode (opset 14+), the extra outputs of opsets 7 to
  // 13, and is_test 0 (its default) before opset 7.
  bool file_training = attr_int("training_mode", 0) != 0;
  if (impl_.opset < 14 && impl_.opset >= 7) file_training = file_training || node_->output_size() > 1;
  if (impl_.opset < 7) file_training = attr_int("is_test", 0) == 0;
  require_outputs(1);
  for (int i = 1; i < 5; ++i)
    if (shape_of(i) != Shape{xs[1]})
      unsupported(fmt::format("input {} is {}: scale, B, mean and var must be [{}]", i, shape_of(i).str(), xs[1]));
  const Value x = value(0), gamma = value(1), beta = value(2);
  const bool training = options_.training || (file_training && options_.batch == 0);
  if (training) {
    for (int i = 3; i < 5; ++i)
      if (!constant(i) && b_.graph().value(value(i)).kind != PARITY_VALUE_STATE)
        unsupported(fmt::format("input {} ('{}'): training updates the running statistics, which must be initializers", i,
                                node_->input(i)));
    const Value mean = materialize(node_->input(3), true), var = materialize(node_->input(4), true);
    // ONNX's momentum weighs the running value (PyTorch's 1 - momentum), and its running
    // variance takes the biased batch variance (PARITY_BATCHNORM_ONNX).
    set_value(0, b_.batchnorm2d_train(x, gamma, beta, mean, var, eps, onnx_momentum, PARITY_BATCHNORM_ONNX, out_name()));
  } else {
    Value mean = has_input(3) && constant(3) ? materialize(node_->input(3), true) : value(3);
    Value var = has_input(4) && constant(4) ? materialize(node_->input(4), true) : value(4);
    set_value(0, b_.batchnorm2d_eval(x, gamma, beta, mean, var, eps, out_name()));
  }
}

void Importer::op_gemm() {
  only_attributes({"alpha", "beta", "transA", "transB", "broadcast"});
  const float alpha = attr_float("alpha", 1.0f), beta = attr_float("beta", 1.0f);
  if (attr_int("transA", 0) != 0) unsupported("transA 1 (parity's linear reads A as [M, K])");
  const Shape as = shape_of(0), bs = shape_of(1);
  if (as.rank() != 2 || bs.rank() != 2) unsupported(fmt::format("A {} and B {} must be 2-d", as.str(), bs.str()));
  const bool trans_b = attr_int("transB", 0) != 0;
  const std::string& b_name = node_->input(1);
  Value w;
  if (trans_b) {
    w = value(1);
  } else if (impl_.initializers.count(b_name)) {
    // parity's LINEAR reads its weight [N, K]: the initializer is held transposed.
    w = values_.at(b_name).value.valid() ? values_.at(b_name).value : materialize(b_name);
    if (b_.graph().value(w).shape != Shape{bs[1], bs[0]})
      unsupported(fmt::format("initializer '{}' is read both transposed and not", b_name));
  } else {
    unsupported("transB 0 with a B computed at run time (parity's linear reads its weight as [N, K]; there is no transpose op)");
  }
  const int64_t n = b_.graph().value(w).shape[0];
  if (b_.graph().value(w).shape[1] != as[1])
    unsupported(fmt::format("A {} and B {} (transB {}) do not multiply", as.str(), bs.str(), trans_b ? 1 : 0));
  Value bias;
  bool bias_after = false;
  if (has_input(2) && beta != 0.0f) {
    const Shape cs = shape_of(2);
    if (beta == 1.0f && cs.numel() == n && (cs == Shape{n} || cs == Shape{1, n})) {
      bias = value(2);
      if (cs.rank() == 2) bias = b_.reshape(bias, Shape{n}, out_name() + ".bias");
    } else {
      bias_after = true;
    }
  }
  if (!bias.valid()) {
    const std::string zero = out_name() + ".no_bias";
    values_[zero] = Entry{Value{}, Tensor(Shape{n}, DType::f32), {}, std::nullopt};
    bias = materialize(zero, true);
  }
  const bool scale = alpha != 1.0f;
  Value y = b_.linear(value(0), w, bias, scale || bias_after ? out_name() + ".linear" : out_name());
  auto scalar_const = [&](float v, const std::string& name) {
    values_[name] = Entry{Value{}, Tensor::from_f32(Shape{1, 1}, {v}), {}, std::nullopt};
    return materialize(name, true);
  };
  if (scale) y = b_.mul(y, scalar_const(alpha, out_name() + ".alpha"), bias_after ? out_name() + ".scaled" : out_name());
  if (bias_after) {
    Value c = broadcast_rank(value(2), 2, out_name() + ".c2d");
    if (beta != 1.0f) c = b_.mul(c, scalar_const(beta, out_name() + ".beta"), out_name() + ".betac");
    y = b_.add(y, c, out_name());
  }
  set_value(0, y);
}

void Importer::op_matmul() {
  only_attributes({});
  const Shape as = shape_of(0), bs = shape_of(1);
  const std::string& b_name = node_->input(1);
  if (bs.rank() != 2 || !impl_.initializers.count(b_name))
    unsupported(fmt::format("B ('{}', {}) must be a 2-d initializer: parity's linear reads a weight, and has no batched "
                            "matrix product or transpose",
                            b_name, bs.str()));
  if (as.rank() < 2 || as[as.rank() - 1] != bs[0])
    unsupported(fmt::format("A {} and B {} do not multiply", as.str(), bs.str()));
  const Value w = values_.at(b_name).value.valid() ? values_.at(b_name).value : materialize(b_name);
  if (b_.graph().value(w).shape != Shape{bs[1], bs[0]})
    unsupported(fmt::format("initializer '{}' is read both transposed and not", b_name));
  const std::string zero = out_name() + ".no_bias";
  values_[zero] = Entry{Value{}, Tensor(Shape{bs[1]}, DType::f32), {}, std::nullopt};
  const Value bias = materialize(zero, true);
  Value a = value(0);
  int64_t rows = 1;
  for (int i = 0; i + 1 < as.rank(); ++i) rows *= as[i];
  if (as.rank() != 2) a = b_.reshape(a, Shape{rows, bs[0]}, out_name() + ".rows");
  Value y = b_.linear(a, w, bias, as.rank() == 2 ? out_name() : out_name() + ".linear");
  if (as.rank() != 2) {
    std::vector<int64_t> dims = as.dims();
    dims.back() = bs[1];
    y = b_.reshape(y, Shape(dims), out_name());
  }
  set_value(0, y);
}

void Importer::op_binary() {
  only_attributes({"broadcast", "axis"});
  const bool add = node_->op_type() == "Add";
  if (impl_.opset < 7 && attr_int("broadcast", 0) != 0) unsupported("legacy broadcast attribute");
  const Tensor* ca = constant(0);
  const Tensor* cb = constant(1);
  // Shape arithmetic on integer constants is folded (PyTorch emits it around view()).
  if (ca && cb && ca->dtype() != DType::f32 && cb->dtype() == ca->dtype() && ca->numel() == cb->numel()) {
    std::vector<int64_t> x = int_values(*ca), y = int_values(*cb);
    for (size_t i = 0; i < x.size(); ++i) x[i] = add ? x[i] + y[i] : x[i] * y[i];
    Tensor out = i64_tensor(x, ca->shape().rank() == 0);
    return set_constant(0, out);
  }
  if (dtype_of(0) != DType::f32 || dtype_of(1) != DType::f32)
    unsupported(fmt::format("operand types {} and {} (f32 only)", to_string(dtype_of(0)), to_string(dtype_of(1))));
  const Shape as = shape_of(0), bs = shape_of(1);
  const int rank = std::max(as.rank(), bs.rank());
  if (rank == 0) unsupported("scalar operands (rank 0)");
  Value a = broadcast_rank(value(0), rank, out_name() + ".a");
  Value b = broadcast_rank(value(1), rank, out_name() + ".b");
  set_value(0, add ? b_.add(a, b, out_name()) : b_.mul(a, b, out_name()));
}

void Importer::op_concat() {
  only_attributes({"axis"});
  // Concat-1 defaults axis to 1; from Concat-4 it is required.
  if (!attr("axis") && impl_.opset >= 4) unsupported("attribute 'axis' is required");
  bool all_constant = true;
  for (int i = 0; i < inputs(); ++i) all_constant = all_constant && constant(i);
  if (all_constant && inputs() > 0 && constant(0)->dtype() != DType::f32) {
    std::vector<int64_t> joined;
    for (int i = 0; i < inputs(); ++i) {
      if (constant(i)->shape().rank() != 1) unsupported("integer constants to join must be 1-d");
      const auto v = int_values(*constant(i));
      joined.insert(joined.end(), v.begin(), v.end());
    }
    return set_constant(0, i64_tensor(joined));
  }
  const Shape first = shape_of(0);
  const int rank = first.rank();
  const int axis = normalize_axis(attr_int("axis", 1), rank, "axis");
  for (int i = 0; i < inputs(); ++i)
    if (dtype_of(i) != DType::f32) unsupported(fmt::format("input {} is {} (parity's concat joins f32)", i, to_string(dtype_of(i))));
  if (axis == 1 && rank >= 2) {
    std::vector<Value> parts;
    for (int i = 0; i < inputs(); ++i) parts.push_back(value(i));
    return set_value(0, b_.concat(parts, out_name()));
  }
  // Joining dim `axis` of row-major tensors is joining dim 1 of their [outer, dim, inner] views
  // (outer: the dims before the axis, inner: those after), so each input is viewed so, joined
  // by parity's concat and the result viewed as the output's dims: the same bytes in order.
  std::vector<Value> parts;
  std::vector<int64_t> dims = first.dims();
  dims[static_cast<size_t>(axis)] = 0;
  for (int i = 0; i < inputs(); ++i) {
    const Shape xs = shape_of(i);
    if (xs.rank() != rank) unsupported(fmt::format("input {} {} and input 0 {} differ in rank", i, xs.str(), first.str()));
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < rank; ++d) {
      if (d != axis && xs[d] != first[d])
        unsupported(fmt::format("input {} {} and input 0 {} differ in dim {}", i, xs.str(), first.str(), d));
      if (d < axis) outer *= xs[d];
      if (d > axis) inner *= xs[d];
    }
    dims[static_cast<size_t>(axis)] += xs[axis];
    parts.push_back(b_.reshape(value(i), Shape{outer, xs[axis], inner}, fmt::format("{}.in{}", out_name(), i)));
  }
  const Value joined = b_.concat(parts, out_name() + ".3d");
  set_value(0, b_.reshape(joined, Shape(dims), out_name()));
}

void Importer::op_flatten() {
  only_attributes({"axis"});
  const Shape xs = shape_of(0);
  // axis in [-r, r] (negative from opset 11): a negative one counts from the rank, not rank + 1.
  const int64_t given = attr_int("axis", 1);
  if (given < -xs.rank() || given > xs.rank()) unsupported(fmt::format("axis {} is outside [-{}, {}]", given, xs.rank(), xs.rank()));
  const int axis = static_cast<int>(given < 0 ? given + xs.rank() : given);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < xs.rank(); ++i) (i < axis ? outer : inner) *= xs[i];
  if (const Tensor* c = constant(0)) {
    Tensor t = *c;
    Tensor out(Shape{outer, inner}, t.dtype());
    std::memcpy(out.data(), t.data(), t.nbytes());
    return set_constant(0, out);
  }
  set_value(0, b_.reshape(value(0), Shape{outer, inner}, out_name()));
}

void Importer::op_reshape() {
  Shape xs = shape_of(0);
  std::vector<int64_t> target;
  bool allow_zero = false;
  if (impl_.opset < 5) {
    only_attributes({"shape"});
    target = attr_ints("shape");
  } else {
    only_attributes({"allowzero"});
    allow_zero = attr_int("allowzero", 0) != 0;
    const Tensor& t = require_constant(1, "the shape");
    if (t.dtype() != DType::i64 || t.shape().rank() != 1) unsupported("the shape must be a 1-d int64 tensor");
    target = int_values(t);
  }
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allow_zero) {
      if (static_cast<int>(i) >= xs.rank()) unsupported(fmt::format("shape {}: dim {} copies a dim the input lacks", fmt::join(target, ","), i));
      target[i] = xs[static_cast<int>(i)];
    }
    if (target[i] == -1) {
      if (infer >= 0) unsupported(fmt::format("shape {} has two -1", fmt::join(target, ",")));
      infer = static_cast<int>(i);
      continue;
    }
    if (target[i] < 0) unsupported(fmt::format("shape {} has a negative dim", fmt::join(target, ",")));
    known *= target[i];
  }
  const int64_t count = xs.numel();
  if (infer >= 0) {
    if (known == 0 || count % known != 0)
      unsupported(fmt::format("shape {} does not fit {} elements ({})", fmt::join(target, ","), count, xs.str()));
    target[static_cast<size_t>(infer)] = count / known;
  } else if (known != count) {
    unsupported(fmt::format("shape {} holds {} elements, the input {} has {}", fmt::join(target, ","), known, xs.str(), count));
  }
  if (const Tensor* c = constant(0)) {
    Tensor out(Shape(target), c->dtype());
    std::memcpy(out.data(), c->data(), c->nbytes());
    return set_constant(0, out);
  }
  set_value(0, b_.reshape(value(0), Shape(target), out_name()));
}

void Importer::op_squeeze() {
  const Shape xs = shape_of(0);
  std::vector<int64_t> axes;
  if (impl_.opset < 13) {
    only_attributes({"axes"});
    axes = attr_ints("axes");
  } else {
    only_attributes({});
    if (has_input(1)) axes = int_values(require_constant(1, "axes"));
  }
  std::set<int> drop;
  if (axes.empty()) {
    for (int i = 0; i < xs.rank(); ++i)
      if (xs[i] == 1) drop.insert(i);
  }
  for (int64_t a : axes) {
    const int axis = normalize_axis(a, xs.rank(), "axis");
    if (xs[axis] != 1) unsupported(fmt::format("axis {} of {} is not 1", axis, xs.str()));
    drop.insert(axis);
  }
  std::vector<int64_t> dims;
  for (int i = 0; i < xs.rank(); ++i)
    if (!drop.count(i)) dims.push_back(xs[i]);
  if (const Tensor* c = constant(0)) {
    Tensor out(Shape(dims), c->dtype());
    std::memcpy(out.data(), c->data(), c->nbytes());
    return set_constant(0, out);
  }
  set_value(0, b_.reshape(value(0), Shape(dims), out_name()));
}

void Importer::op_unsqueeze() {
  const Shape xs = shape_of(0);
  std::vector<int64_t> axes;
  if (impl_.opset < 13) {
    only_attributes({"axes"});
    axes = attr_ints("axes");
  } else {
    only_attributes({});
    axes = int_values(require_constant(1, "axes"));
  }
  const int rank = xs.rank() + static_cast<int>(axes.size());
  std::set<int> added;
  for (int64_t a : axes)
    if (!added.insert(normalize_axis(a, rank, "axis")).second) unsupported("an axis is repeated");
  std::vector<int64_t> dims;
  int next = 0;
  for (int i = 0; i < rank; ++i) dims.push_back(added.count(i) ? 1 : xs[next++]);
  if (const Tensor* c = constant(0)) {
    Tensor out(Shape(dims), c->dtype());
    std::memcpy(out.data(), c->data(), c->nbytes());
    return set_constant(0, out);
  }
  set_value(0, b_.reshape(value(0), Shape(dims), out_name()));
}

void Importer::op_dropout() {
  float ratio = 0.5f;
  bool file_training = false;
  if (impl_.opset < 12) {
    only_attributes({"ratio", "is_test"});
    ratio = attr_float("ratio", 0.5f);
    // Before opset 7, is_test 0 (the default) asks for training-mode dropout.
    file_training = impl_.opset < 7 && attr_int("is_test", 0) == 0;
  } else {
    only_attributes({"seed"});
    if (has_input(1)) {
      const Tensor& r = require_constant(1, "ratio");
      if (r.dtype() != DType::f32 || r.numel() != 1) unsupported("ratio must be an f32 scalar");
      ratio = r.f32()[0];
    }
    if (has_input(2)) {
      const Tensor& t = require_constant(2, "training_mode");
      file_training = t.numel() == 1 && int_values(t)[0] != 0;
    }
  }
  require_outputs(1);
  if (file_training && !options_.training)
    unsupported("training_mode true: its mask comes from the runtime's generator, which parity does not reproduce");
  if (!options_.training || ratio == 0.0f) return set_value(0, value(0));
  if (!(ratio > 0.0f && ratio < 1.0f)) unsupported(fmt::format("ratio {} (parity's dropout takes [0, 1))", ratio));
  if (!options_.step.valid()) throw Error(ErrorKind::internal, where() + ": a training graph with dropout needs the step value");
  set_value(0, b_.dropout(value(0), options_.step, ratio, options_.seed, options_.first_sample, out_name()));
}

void Importer::op_softmax() {
  only_attributes({"axis"});
  const bool log = node_->op_type() == "LogSoftmax";
  const Shape xs = shape_of(0);
  if (dtype_of(0) != DType::f32) unsupported("input type must be f32");
  if (impl_.opset >= 13) {
    const int axis = normalize_axis(attr_int("axis", -1), xs.rank(), "axis");
    parity_op_params p{};
    p.softmax.dim = axis;
    p.softmax.has_dim = 1;
    return set_value(0, b_.node(log ? PARITY_OP_LOG_SOFTMAX : PARITY_OP_SOFTMAX, p, {value(0)}, out_name())[0]);
  }
  // Before opset 13 the input is coerced to 2-d at axis (default 1) and normalised over the rest.
  const int axis = normalize_axis(attr_int("axis", 1), xs.rank(), "axis");
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < xs.rank(); ++i) (i < axis ? outer : inner) *= xs[i];
  const bool flat = xs.rank() == 2 && axis == 1;
  Value x = flat ? value(0) : b_.reshape(value(0), Shape{outer, inner}, out_name() + ".2d");
  Value y = log ? b_.log_softmax(x, 1, flat ? out_name() : out_name() + ".norm")
                : b_.softmax(x, 1, flat ? out_name() : out_name() + ".norm");
  if (!flat) y = b_.reshape(y, xs, out_name());
  set_value(0, y);
}

void Importer::op_pad() {
  std::string mode;
  std::vector<int64_t> pads;
  float fill = 0.0f;
  if (impl_.opset < 11) {
    only_attributes({"mode", "pads", "value"});
    mode = attr_string("mode", "constant");
    pads = attr_ints("pads");
    fill = attr_float("value", 0.0f);
  } else {
    only_attributes({"mode"});
    mode = attr_string("mode", "constant");
    pads = int_values(require_constant(1, "pads"));
    if (has_input(2)) {
      const Tensor& v = require_constant(2, "constant_value");
      if (v.dtype() != DType::f32 || v.numel() != 1) unsupported("constant_value must be an f32 scalar");
      fill = v.f32()[0];
    }
    if (has_input(3)) unsupported("input 3 (axes) is not supported");
  }
  if (mode != "constant") unsupported(fmt::format("mode '{}' (only zero 'constant' padding is supported)", mode));
  if (fill != 0.0f) unsupported(fmt::format("constant value {} (only zero padding folds into a conv or pool)", fill));
  const Shape xs = shape_of(0);
  if (xs.rank() != 4 || pads.size() != 8)
    unsupported(fmt::format("pads {} on {} (parity folds a Pad of H and W of NCHW)", fmt::join(pads, ","), xs.str()));
  // [x1_begin, x2_begin, ..., x1_end, ...]: N, C untouched; H, W begin and end, none negative.
  if (pads[0] || pads[1] || pads[4] || pads[5])
    unsupported(fmt::format("pads {} pad N or C", fmt::join(pads, ",")));
  for (int64_t p : pads)
    if (p < 0 || p > 1 << 20) unsupported(fmt::format("pads {}: each must be in [0, 2^20]", fmt::join(pads, ",")));
  const Entry& in = entry(0);
  if (in.constant) unsupported("padding a constant");
  std::vector<int64_t> folded = in.pending_pads.empty() ? std::vector<int64_t>{0, 0, 0, 0} : in.pending_pads;
  folded[0] += pads[2];
  folded[1] += pads[3];
  folded[2] += pads[6];
  folded[3] += pads[7];
  values_[node_->output(0)] = Entry{graph_value(node_->input(0)), std::nullopt, folded, std::nullopt};
}

void Importer::op_shape() {
  only_attributes({"start", "end"});
  const Shape xs = shape_of(0);
  const int rank = xs.rank();
  auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + rank : v, 0, rank); };
  const int64_t start = clamp(attr_int("start", 0)), end = clamp(attr_int("end", rank));
  std::vector<int64_t> dims;
  for (int64_t i = start; i < end; ++i) dims.push_back(xs[static_cast<int>(i)]);
  set_constant(0, i64_tensor(dims));
}

void Importer::op_gather() {
  only_attributes({"axis"});
  const Tensor* data = constant(0);
  if (!data || data->dtype() == DType::f32)
    unsupported("Gather is folded only on integer constants (shape arithmetic); parity has no gather op");
  const Tensor& indices = require_constant(1, "indices");
  const int rank = data->shape().rank();
  if (rank != 1) unsupported("Gather is folded only on 1-d constants");
  normalize_axis(attr_int("axis", 0), rank, "axis");
  const auto values = int_values(*data);
  std::vector<int64_t> out;
  for (int64_t i : int_values(indices)) {
    if (i < -data->numel() || i >= data->numel()) unsupported(fmt::format("index {} outside [0, {})", i, data->numel()));
    out.push_back(values[static_cast<size_t>(i < 0 ? i + data->numel() : i)]);
  }
  Tensor result = i64_tensor(out, indices.shape().rank() == 0);
  if (indices.shape().rank() > 1) unsupported("indices of rank above 1");
  set_constant(0, result);
}

void Importer::op_slice() {
  const Tensor* data = constant(0);
  if (!data || data->dtype() == DType::f32 || data->shape().rank() != 1)
    unsupported("Slice is folded only on 1-d integer constants (shape arithmetic)");
  std::vector<int64_t> starts, ends, axes, steps;
  if (impl_.opset < 10) {
    only_attributes({"starts", "ends", "axes"});
    starts = attr_ints("starts");
    ends = attr_ints("ends");
    axes = attr_ints("axes");
  } else {
    only_attributes({});
    starts = int_values(require_constant(1, "starts"));
    ends = int_values(require_constant(2, "ends"));
    if (has_input(3)) axes = int_values(require_constant(3, "axes"));
    if (has_input(4)) steps = int_values(require_constant(4, "steps"));
  }
  if (starts.size() != 1 || ends.size() != 1 || (!axes.empty() && (axes.size() != 1 || (axes[0] != 0 && axes[0] != -1))) ||
      (!steps.empty() && (steps.size() != 1 || steps[0] != 1)))
    unsupported("only a step-1 slice of the one axis of a 1-d constant is folded");
  const int64_t n = data->numel();
  auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + n : v, 0, n); };
  const auto values = int_values(*data);
  std::vector<int64_t> out;
  for (int64_t i = clamp(starts[0]); i < clamp(ends[0]); ++i) out.push_back(values[static_cast<size_t>(i)]);
  set_constant(0, i64_tensor(out));
}

void Importer::op_cast() {
  only_attributes({"to", "saturate"});
  if (attr("to") && attr("to")->type() != onnx::AttributeProto::INT)
    unsupported("attribute 'to' is not an int (Cast-1 names the type as a string)");
  const int64_t to = attr_int("to", 0);
  if (!onnx_dtype_supported(static_cast<int>(to))) unsupported(fmt::format("cast to {}", onnx_dtype_name(static_cast<int>(to))));
  const DType target = to == onnx::TensorProto::FLOAT ? DType::f32 : to == onnx::TensorProto::INT32 ? DType::i32 : DType::i64;
  if (const Tensor* c = constant(0)) {
    if (c->dtype() == target) return set_constant(0, *c);
    if (target == DType::f32 || c->dtype() == DType::f32) unsupported("casting a constant between float and integer");
    const auto v = int_values(*c);
    Tensor out(c->shape(), target);
    for (size_t i = 0; i < v.size(); ++i) {
      if (target == DType::i32) out.i32()[i] = static_cast<int32_t>(v[i]);
      else out.i64()[i] = v[i];
    }
    return set_constant(0, out);
  }
  if (dtype_of(0) != target) unsupported(fmt::format("a cast of a computed {} to {} (parity has no cast op)", to_string(dtype_of(0)), to_string(target)));
  set_value(0, value(0));
}

}  // namespace

// ---- OnnxModel -------------------------------------------------------------------------------

OnnxModel OnnxModel::parse(const void* data, size_t size, const std::string& folder, const std::string& name) {
  if (size > static_cast<size_t>(kMaxFileBytes))
    throw Error(ErrorKind::data, fmt::format("{}: {} bytes is above protobuf's 2 GB limit", name, size));
  auto impl = std::make_shared<Impl>();
  impl->name = name;
  impl->folder = folder;
  if (!impl->proto.ParseFromArray(data, static_cast<int>(size)))
    throw Error(ErrorKind::data, fmt::format("{}: not an ONNX model (the protobuf does not parse: truncated or not ONNX)", name));
  read_model(*impl);
  // Initializers that a MatMul, or a Gemm with transB 0, reads are held as parity's LINEAR
  // reads its weight: [N, K].
  std::set<std::string> transposed;
  for (const auto& node : impl->proto.graph().node()) {
    if (!default_domain(node.domain()) || node.input_size() < 2) continue;
    bool trans_b = false;
    for (const auto& a : node.attribute())
      if (a.name() == "transB") trans_b = a.i() != 0;
    if (node.op_type() == "MatMul" || (node.op_type() == "Gemm" && !trans_b)) transposed.insert(node.input(1));
  }
  for (const std::string& name_t : transposed) {
    auto it = impl->initializers.find(name_t);
    if (it == impl->initializers.end() || it->second.shape().rank() != 2) continue;
    const Tensor& w = it->second;
    const int64_t rows = w.shape()[0], cols = w.shape()[1];
    Tensor t(Shape{cols, rows}, DType::f32);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) t.f32()[c * rows + r] = w.f32()[r * cols + c];
    impl->constants[name_t] = t;
    it->second = std::move(t);
  }
  return OnnxModel(std::move(impl));
}

OnnxModel OnnxModel::read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, fmt::format("cannot open ONNX model {}", path));
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  if (error) throw Error(ErrorKind::io, fmt::format("cannot read ONNX model {}: {}", path, error.message()));
  if (size > static_cast<uintmax_t>(kMaxFileBytes))
    throw Error(ErrorKind::data, fmt::format("{}: {} bytes is above protobuf's 2 GB limit", path, size));
  std::string bytes(static_cast<size_t>(size), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size)))
    throw Error(ErrorKind::io, fmt::format("reading ONNX model {} failed", path));
  std::string folder = std::filesystem::path(path).parent_path().string();
  return parse(bytes.data(), bytes.size(), folder.empty() ? "." : folder, path);
}

const std::string& OnnxModel::name() const { return impl_->name; }
int64_t OnnxModel::opset() const { return impl_->opset; }
const std::vector<OnnxPort>& OnnxModel::inputs() const { return impl_->inputs; }
const std::vector<OnnxPort>& OnnxModel::outputs() const { return impl_->outputs; }
const std::map<std::string, Tensor>& OnnxModel::initializers() const { return impl_->initializers; }

std::vector<std::string> OnnxModel::op_types() const {
  std::vector<std::string> types;
  for (const auto& node : impl_->proto.graph().node())
    if (std::find(types.begin(), types.end(), node.op_type()) == types.end()) types.push_back(node.op_type());
  return types;
}

OnnxBuilt OnnxModel::build(GraphBuilder& builder, const OnnxBuildOptions& options) const {
  return Importer(*impl_, builder, options).run();
}

}  // namespace parity
