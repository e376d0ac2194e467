// onnx/onnx_model.cpp — reading an ONNX model (structure, opsets, initializers checked once) and
// adding its graph to a GraphBuilder: one function per op type, constants folded at import.
#include "onnx/onnx_model.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
  std::set<std::string> transposed;            // initializers held transposed for LINEAR ([N, K])
};

namespace {

OnnxPort port_of(const onnx::ValueInfoProto& info, const std::string& model, bool input) {
  OnnxPort port;
  port.name = info.name();
  const char* what = input ? "input" : "output";
  if (!info.type().has_tensor_type())
    throw OnnxUnsupported(fmt::format("{}: graph {} '{}' is not a tensor (sequences, maps and optionals are not supported)",
                                      model, what, info.name()),
                          fmt::format("a sequence, map or optional graph {}", what));
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
                            fmt::format("domain {} is not supported", fmt::join(domains, ", ")));
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
    if (!e.pending_pads.empty()) return materialize_pad(node_->input(i));
    return graph_value(node_->input(i));
  }
  // A tensor the import itself makes (a fill, a clip bound, a zero bias): at most 2^24 elements,
  // so that dims a hostile file claims never become a huge allocation.
  Tensor import_tensor(const Shape& shape, DType dtype) const {
    int64_t count = 1;
    for (int64_t d : shape.dims()) {
      if (d < 0 || (d > 0 && count > (int64_t{1} << 24) / d))
        unsupported(fmt::format("a constant of {} made at import: more than 2^24 elements", shape.str()),
                    "a constant of more than 2^24 elements made at import");
      count *= d;
    }
    return Tensor(shape, dtype);
  }
  const Tensor* constant(int i) const {
    if (!has_input(i)) return nullptr;
    const Entry& e = entry(i);
    return e.constant ? &*e.constant : nullptr;
  }
  // A constant, or a graph input whose value the caller gave (OnnxBuildOptions::known_inputs):
  // the graph is then built for that value (OnnxBuilt::fixed).
  const Tensor& require_constant(int i, const char* what) {
    if (!has_input(i)) unsupported(fmt::format("input {} ({}) is missing", i, what), "a required input missing");
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
  // running statistics a STATE), any other constant a STATE holding it. An initializer held
  // transposed (Impl::transposed) is read only as LINEAR's weight.
  Value materialize(const std::string& name, bool as_state = false, bool as_linear_weight = false) {
    Entry& e = values_.at(name);
    if (e.value.valid()) return e.value;
    if (impl_.transposed.count(name) && !as_linear_weight)
      unsupported(fmt::format("initializer '{}' is held transposed as a MatMul or Gemm weight, and read here as it is "
                              "stored", name), "an initializer read both as a MatMul or Gemm weight and otherwise");
    const bool initializer = is_parameter_source(name);
    const Tensor& t = impl_.initializers.count(name) && !as_state ? impl_.initializers.at(name) : *e.constant;
    const std::string given_name = parity_name(name);
    auto given = options_.inputs.find(given_name);
    if (given != options_.inputs.end()) {
      const ValueInfo& info = b_.graph().value(given->second);
      if (info.shape != t.shape() || info.dtype != t.dtype())
        throw Error(ErrorKind::shape, fmt::format("{}: '{}' is {} {} in the file, but it is fed {} {}", impl_.name, name,
                                                  to_string(t.dtype()), t.shape().str(), to_string(info.dtype),
                                                  info.shape.str()));
      e.value = given->second;
      (info.kind == PARITY_VALUE_PARAM ? built_.params : built_.state).push_back(given_name);
      built_.values[given_name] = t;
      return e.value;
    }
    if (t.dtype() != DType::f32)
      unsupported(fmt::format("'{}' ({} constant) cannot be a graph operand: parity's ops read f32 here", name, to_string(t.dtype())),
                  "an integer constant as a tensor operand (parity's ops read f32)");
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

  // Whether a constant is a parameter: an f32 initializer, or an Identity copy of one.
  bool is_parameter_source(const std::string& name) const {
    return impl_.initializers.count(name) > 0 || parameter_copies_.count(name) > 0;
  }

  // Makes rank `rank` by prepending 1s (numpy's broadcasting of a lower rank).
  Value broadcast_rank(Value v, int rank, const std::string& name) {
    const Shape s = b_.graph().value(v).shape;
    if (s.rank() == rank) return v;
    std::vector<int64_t> dims(static_cast<size_t>(rank - s.rank()), 1);
    dims.insert(dims.end(), s.dims().begin(), s.dims().end());
    return b_.reshape(v, Shape(dims), name);
  }

  // parity's ops compute f32; integer arithmetic is folded only on constants (shape arithmetic).
  void require_f32(int i) {
    if (dtype_of(i) != DType::f32)
      unsupported(fmt::format("input {} ('{}') is {}: parity's ops compute f32 (integer constants are folded only "
                              "as shape arithmetic)", i, node_->input(i), to_string(dtype_of(i))),
                  "a non-f32 operand (parity's ops compute f32)");
  }

  int normalize_axis(int64_t axis, int rank, const char* what) const {
    if (axis < -rank || axis >= std::max(rank, 1))
      unsupported(fmt::format("{} {} is outside the rank {}", what, axis, rank));
    return static_cast<int>(axis < 0 ? axis + rank : axis);
  }

  // ---- helpers that build an ONNX op from parity's ops ----
  // Names of the intermediate values of the node being imported: "<output>.<k>".
  std::string tmp() { return fmt::format("{}.{}", tmp_base_, tmp_count_++); }
  Shape shape(Value v) const { return b_.graph().value(v).shape; }
  Value view(Value v, const Shape& s) { return shape(v) == s ? v : b_.reshape(v, s, tmp()); }
  Value constant_value(const Tensor& t) {
    const std::string key = tmp();
    values_[key] = Entry{Value{}, t, {}, std::nullopt};
    return materialize(key, true);
  }
  // k as a constant of v's rank with every dim 1, which MUL and ADD broadcast.
  Value scalar_like(Value v, float k) {
    Tensor c(Shape(std::vector<int64_t>(static_cast<size_t>(shape(v).rank()), 1)), DType::f32);
    c.f32()[0] = k;
    return constant_value(c);
  }
  // v * k (exact for k = -1) and v + k; an empty name stands for tmp().
  Value scaled(Value v, float k, const std::string& name) {
    return b_.mul(v, scalar_like(v, k), name.empty() ? tmp() : name);
  }
  Value plus(Value v, float k, const std::string& name) { return b_.add(v, scalar_like(v, k), name.empty() ? tmp() : name); }
  Value slice_axis(Value v, int axis, int64_t start, int64_t length);
  Value concat_axis(const std::vector<Value>& parts, int axis, const std::string& name);
  Value reduce_sum(Value v, const std::vector<int>& axes, const std::string& name);
  Value reduce_max(Value v, const std::vector<int>& axes);
  Value stacked_max(const std::vector<Value>& parts, const std::string& name);
  Value absolute(Value v, const std::string& name);
  Value broadcast_to(Value v, const Shape& target, const std::string& name);
  Value pad_axis(Value v, int axis, int64_t begin, int64_t end, const std::string& mode, float fill);
  Value materialize_pad(const std::string& name);
  Value linear_weight(const std::string& name) { return materialize(name, false, true); }
  Value matmul_by_reduce(Value a, Value b, bool trans_a, bool trans_b, int64_t m, int64_t k, int64_t n,
                         const std::string& name);
  Shape broadcast_shapes(const std::vector<Shape>& shapes);

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
  std::vector<int64_t> axes_operand(bool required);
  void op_squeeze();
  void op_unsqueeze();
  void op_dropout();
  void op_softmax();
  void op_softmax_cross_entropy();
  void op_pad();
  void op_shape();
  void op_gather();
  void op_slice();
  void op_cast();
  void op_sub_neg();
  void op_abs();
  void op_variadic();
  void op_prelu();
  void op_hard_sigmoid();
  void op_reduce();
  void op_global_maxpool();
  void op_conv_transpose();
  void op_split();
  void op_tile();
  void op_expand();
  void op_instance_norm();
  void op_constant_of_shape();
  void op_size();

  // Helpers of the pool and conv ops.
  struct Window {
    std::vector<int64_t> kernel, strides, dilations, pads;  // pads: [top, left, bottom, right]
  };
  // The window of a 1-d (rank-3 input, viewed as [N, C, 1, L]) or 2-d node, as 2-d.
  Window window(const Shape& xs, bool has_kernel_attr, const std::vector<int64_t>& kernel_from_weight);
  // MAXPOOL2D or AVGPOOL2D on a rank-4 x; asymmetric pads as the larger on both sides, then the
  // extra outputs cropped.
  Value pool(Value x, const Window& w, parity_op op, bool ceil_mode, bool count_include_pad, const std::string& name);
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
  std::set<std::string> parameter_copies_;  // Identity outputs of initializers (is_parameter_source)
  std::set<std::string> graph_inputs_;  // the ONNX names of the graph inputs
  std::string tmp_base_;                // tmp()'s prefix: the node's first output
  int tmp_count_ = 0;
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

// A constant's elements under new dims (a folded Reshape, Flatten, Squeeze or Unsqueeze).
Tensor reshaped(const Tensor& t, const Shape& shape) {
  Tensor out(shape, t.dtype());
  if (t.nbytes() > 0) std::memcpy(out.data(), t.data(), t.nbytes());
  return out;
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
      {"SoftmaxCrossEntropyLoss", &Importer::op_softmax_cross_entropy},
      {"LogSoftmax", &Importer::op_softmax},
      {"Pad", &Importer::op_pad},
      {"Shape", &Importer::op_shape},
      {"Gather", &Importer::op_gather},
      {"Slice", &Importer::op_slice},
      {"Cast", &Importer::op_cast},
      {"Sub", &Importer::op_sub_neg},
      {"Neg", &Importer::op_sub_neg},
      {"Abs", &Importer::op_abs},
      {"Sum", &Importer::op_variadic},
      {"Mean", &Importer::op_variadic},
      {"Max", &Importer::op_variadic},
      {"Min", &Importer::op_variadic},
      {"PRelu", &Importer::op_prelu},
      {"HardSigmoid", &Importer::op_hard_sigmoid},
      {"HardSwish", &Importer::op_hard_sigmoid},
      {"ReduceSum", &Importer::op_reduce},
      {"ReduceMean", &Importer::op_reduce},
      {"ReduceSumSquare", &Importer::op_reduce},
      {"ReduceL1", &Importer::op_reduce},
      {"ReduceMax", &Importer::op_reduce},
      {"ReduceMin", &Importer::op_reduce},
      {"GlobalMaxPool", &Importer::op_global_maxpool},
      {"ConvTranspose", &Importer::op_conv_transpose},
      {"Split", &Importer::op_split},
      {"Tile", &Importer::op_tile},
      {"Expand", &Importer::op_expand},
      {"InstanceNormalization", &Importer::op_instance_norm},
      {"ConstantOfShape", &Importer::op_constant_of_shape},
      {"Size", &Importer::op_size},
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
    // Every op parity imports writes its output 0 (the handlers name values after it).
    if (node_->output_size() == 0 || node_->output(0).empty()) unsupported("the node has no output 0");
    tmp_base_ = out_name();
    tmp_count_ = 0;
    (this->*handler->second)();
    for (int i = 0; i < node_->output_size(); ++i)
      if (!node_->output(i).empty() && !values_.count(node_->output(i)) && output_used(i))
        unsupported(fmt::format("output {} ('{}') is not supported", i, node_->output(i)));
  }
  node_ = nullptr;

  for (const auto& port : impl_.outputs) {
    tmp_base_ = parity_name(port.name);
    tmp_count_ = 0;
    if (!values_.at(port.name).pending_pads.empty()) (void)materialize_pad(port.name);
    const Entry& e = values_.at(port.name);
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

// ---- helpers: ONNX ops built from parity's ---------------------------------------------------

// Dim `axis` of a row-major tensor is dim 1 of its [outer, dim, inner] view (outer: the product
// of the dims before it, inner: of those after), which is what SLICE and CONCAT take: viewing,
// slicing or joining, and viewing back moves the same bytes as the ONNX op. Exact (copies).
Value Importer::slice_axis(Value v, int axis, int64_t start, int64_t length) {
  const Shape s = shape(v);
  if (start == 0 && length == s[axis]) return v;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < s.rank(); ++d) {
    if (d < axis) outer *= s[d];
    if (d > axis) inner *= s[d];
  }
  parity_op_params p{};
  p.slice.start = static_cast<int32_t>(start);
  p.slice.length = static_cast<int32_t>(length);
  const Value y = b_.node(PARITY_OP_SLICE, p, {view(v, Shape{outer, s[axis], inner})}, tmp())[0];
  Shape out = s;
  out[axis] = length;
  return view(y, out);
}

Value Importer::concat_axis(const std::vector<Value>& parts, int axis, const std::string& name) {
  const Shape first = shape(parts[0]);
  if (parts.size() == 1) return parts[0];
  if (axis == 1 && first.rank() >= 2) return b_.concat(parts, name);
  std::vector<Value> views;
  std::vector<int64_t> dims = first.dims();
  dims[static_cast<size_t>(axis)] = 0;
  for (const Value part : parts) {
    const Shape s = shape(part);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < s.rank(); ++d) {
      if (d < axis) outer *= s[d];
      if (d > axis) inner *= s[d];
    }
    dims[static_cast<size_t>(axis)] += s[axis];
    views.push_back(view(part, Shape{outer, s[axis], inner}));
  }
  return b_.reshape(b_.concat(views, tmp()), Shape(dims), name);
}

// REDUCE_SUM over `axes`, which keeps them with size 1.
Value Importer::reduce_sum(Value v, const std::vector<int>& axes, const std::string& name) {
  parity_op_params p{};
  for (int a : axes) p.reduce_sum.dims |= 1u << a;
  return b_.node(PARITY_OP_REDUCE_SUM, p, {v}, name)[0];
}

// The maximum over `axes`, kept with size 1: each run of consecutive axes is the H of a
// [1, outer, R, inner] view, which a MAXPOOL2D with an R x 1 window reduces. A selection, so
// exact; NaN wins its window, as numpy's max propagates it.
Value Importer::reduce_max(Value v, const std::vector<int>& axes) {
  std::vector<int> sorted = axes;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    const Shape s = shape(v);
    int64_t outer = 1, run = 1, inner = 1;
    for (int d = 0; d < s.rank(); ++d) {
      if (d < sorted[i]) outer *= s[d];
      else if (d <= sorted[j]) run *= s[d];
      else inner *= s[d];
    }
    Shape kept = s;
    for (size_t r = i; r <= j; ++r) kept[sorted[r]] = 1;
    if (run > 1) {
      parity_op_params p{};
      p.maxpool2d.kernel_h = static_cast<int32_t>(run);
      p.maxpool2d.kernel_w = 1;
      p.maxpool2d.stride_h = p.maxpool2d.stride_w = 1;
      v = b_.node(PARITY_OP_MAXPOOL2D, p, {view(v, Shape{1, outer, run, inner})}, tmp())[0];
    }
    v = view(v, kept);
    i = j + 1;
  }
  return v;
}

// The elementwise maximum of same-shape tensors: stacked as the H of a [1, 1, n, T] view and
// reduced by an n x 1 MAXPOOL2D window.
Value Importer::stacked_max(const std::vector<Value>& parts, const std::string& name) {
  const Shape s = shape(parts[0]);
  if (parts.size() == 1) return parts[0];
  std::vector<Value> rows;
  for (const Value part : parts) rows.push_back(view(part, Shape{1, 1, s.numel()}));
  const Value stacked = view(b_.concat(rows, tmp()), Shape{1, 1, static_cast<int64_t>(parts.size()), s.numel()});
  parity_op_params p{};
  p.maxpool2d.kernel_h = static_cast<int32_t>(parts.size());
  p.maxpool2d.kernel_w = 1;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = 1;
  const Value max = b_.node(PARITY_OP_MAXPOOL2D, p, {stacked}, tmp())[0];
  return b_.reshape(max, s, name);
}

// |x| = relu(x) + relu(-x): one of the two is 0, so the sum is exact; NaN stays NaN.
Value Importer::absolute(Value v, const std::string& name) {
  return b_.add(b_.relu(v, tmp()), b_.relu(scaled(v, -1.0f, ""), tmp()), name);
}

// v broadcast (numpy) to `target`: multiplied by ones where it has size 1, which is exact.
Value Importer::broadcast_to(Value v, const Shape& target, const std::string& name) {
  v = broadcast_rank(v, target.rank(), tmp());
  const Shape s = shape(v);
  if (s == target) return v;
  std::vector<int64_t> ones_dims;
  for (int d = 0; d < s.rank(); ++d) {
    if (s[d] != target[d] && s[d] != 1)
      unsupported(fmt::format("{} does not broadcast to {}", s.str(), target.str()));
    ones_dims.push_back(s[d] == target[d] ? 1 : target[d]);
  }
  Tensor ones = import_tensor(Shape(ones_dims), DType::f32);
  std::fill(ones.f32(), ones.f32() + ones.numel(), 1.0f);
  return b_.mul(v, constant_value(ones), name.empty() ? tmp() : name);
}

Shape Importer::broadcast_shapes(const std::vector<Shape>& shapes) {
  int rank = 0;
  for (const Shape& s : shapes) rank = std::max(rank, s.rank());
  std::vector<int64_t> out(static_cast<size_t>(rank), 1);
  for (const Shape& s : shapes)
    for (int d = 0; d < s.rank(); ++d) {
      int64_t& o = out[static_cast<size_t>(rank - s.rank() + d)];
      if (s[d] != o && s[d] != 1 && o != 1)
        unsupported(fmt::format("shapes {} do not broadcast", s.str()), "operands that do not broadcast");
      o = std::max(o, s[d]);
    }
  return Shape(out);
}

// Pads (or, negative, crops) dim `axis`: constant pieces of `fill`, or copies of the edge rows
// (edge), or of the rows next to the edge in reverse order (reflect), joined to it. Exact.
Value Importer::pad_axis(Value v, int axis, int64_t begin, int64_t end, const std::string& mode, float fill) {
  int64_t d = shape(v)[axis];
  if (begin < 0 || end < 0) {
    const int64_t from = begin < 0 ? -begin : 0, to = end < 0 ? d + end : d;
    if (to <= from) unsupported(fmt::format("pads {} and {} leave dim {} of {} empty", begin, end, axis, d));
    v = slice_axis(v, axis, from, to - from);
    d = to - from;
    begin = std::max<int64_t>(begin, 0), end = std::max<int64_t>(end, 0);
  }
  if (begin == 0 && end == 0) return v;
  constexpr int64_t kMaxPieces = 256;
  if (mode != "constant" && begin + end > kMaxPieces)
    unsupported(fmt::format("{} padding of {} rows (parity copies each: at most {})", mode, begin + end, kMaxPieces));
  if (mode == "reflect" && (begin > d - 1 || end > d - 1))
    unsupported(fmt::format("reflect padding {} and {} of a dim of {} (at most {})", begin, end, d, d - 1));
  std::vector<Value> parts;
  auto filled = [&](int64_t rows) {
    Shape s = shape(v);
    s[axis] = rows;
    Tensor t = import_tensor(s, DType::f32);
    std::fill(t.f32(), t.f32() + t.numel(), fill);
    return constant_value(t);
  };
  if (begin > 0) {
    if (mode == "constant") parts.push_back(filled(begin));
    for (int64_t i = 0; mode != "constant" && i < begin; ++i)
      parts.push_back(slice_axis(v, axis, mode == "edge" ? 0 : begin - i, 1));
  }
  parts.push_back(v);
  if (end > 0) {
    if (mode == "constant") parts.push_back(filled(end));
    for (int64_t i = 0; mode != "constant" && i < end; ++i)
      parts.push_back(slice_axis(v, axis, mode == "edge" ? d - 1 : d - 2 - i, 1));
  }
  return concat_axis(parts, axis, tmp());
}

// A Pad folded for a Conv or pool that something else reads as a tensor: the zeros made.
Value Importer::materialize_pad(const std::string& name) {
  const Entry e = values_.at(name);
  Value y = pad_axis(e.value, 2, e.pending_pads[0], e.pending_pads[2], "constant", 0.0f);
  y = pad_axis(y, 3, e.pending_pads[1], e.pending_pads[3], "constant", 0.0f);
  values_[name] = Entry{y, std::nullopt, {}, std::nullopt};
  return y;
}

// ---- the ops ---------------------------------------------------------------------------------

void Importer::op_identity() {
  if (entry(0).deferred_input) (void)graph_value(node_->input(0));  // one INPUT for both names
  values_[node_->output(0)] = entry(0);
  // torch.onnx.export stores equal initializers once and gives the others as Identity nodes named
  // after them (resnet8's batch norms at their initial ones and zeros): each is a parameter of
  // its own, with the shared initial value.
  if (!entry(0).value.valid() && entry(0).constant && is_parameter_source(node_->input(0)))
    parameter_copies_.insert(node_->output(0));
}

void Importer::op_constant() {
  const auto& attrs = node_->attribute();
  if (attrs.size() != 1) unsupported("a Constant needs exactly one value attribute");
  const auto& a = attrs[0];
  const std::string what = where() + " attribute '" + a.name() + "'";
  if (a.name() == "value" && a.t().data_type() == onnx::TensorProto::BOOL) {
    // A flag (Dropout's training_mode): held as i32 0/1 for folding; no op reads it as data.
    const auto& t = a.t();
    const int64_t count = checked_onnx_numel(t, what);
    const int64_t held = t.has_raw_data() ? static_cast<int64_t>(t.raw_data().size()) : t.int32_data_size();
    if (held != count) unsupported(fmt::format("attribute 'value': {} BOOL values for {} elements", held, count));
    Tensor flags(Shape(std::vector<int64_t>(t.dims().begin(), t.dims().end())), DType::i32);
    for (int64_t i = 0; i < count; ++i)
      flags.i32()[i] = t.has_raw_data() ? t.raw_data()[static_cast<size_t>(i)] != 0 : t.int32_data(static_cast<int>(i)) != 0;
    set_constant(0, flags);
  } else if (a.name() == "value") {
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
  require_f32(0);
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
  // Clip-6 to -10 default their bounds to the float range; from Clip-11 a missing bound is no
  // bound at all (an infinite input stays infinite).
  const float big = std::numeric_limits<float>::max(), inf = std::numeric_limits<float>::infinity();
  float lo = impl_.opset < 11 ? -big : -inf, hi = impl_.opset < 11 ? big : inf;
  if (impl_.opset < 11) {
    only_attributes({"min", "max"});
    if (impl_.opset < 6 && (!attr("min") || !attr("max")))
      unsupported("Clip-1 without both min and max (its bounds have no defaults)");
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
  require_f32(0);
  if (std::isnan(lo) || std::isnan(hi)) unsupported("a NaN bound");
  if (lo > hi) unsupported(fmt::format("min {} above max {} (ONNX then gives max everywhere; parity's hardtanh refuses it)", lo, hi));
  const Value x = value(0);
  const bool lower = lo != -inf, upper = hi != inf;
  if (!lower && !upper) return set_value(0, x);
  if (lower && upper) return set_value(0, b_.hardtanh(x, lo, hi, out_name()));
  if (lo == 0.0f && !upper) return set_value(0, b_.relu(x, out_name()));
  // One bound: max(x, lo), or -max(-x, -hi), as the maximum of x and a tensor of the bound
  // (stacked_max: a selection, so an infinite x stays infinite and NaN stays NaN).
  const Shape xs = shape(x);
  Tensor bound = import_tensor(xs, DType::f32);
  std::fill(bound.f32(), bound.f32() + bound.numel(), lower ? lo : -hi);
  if (lower) return set_value(0, stacked_max({x, constant_value(bound)}, out_name()));
  set_value(0, scaled(stacked_max({scaled(x, -1.0f, ""), constant_value(bound)}, tmp()), -1.0f, out_name()));
}

Importer::Window Importer::window(const Shape& xs, bool has_kernel_attr, const std::vector<int64_t>& kernel_from_weight) {
  const int spatial = xs.rank() - 2;  // 1 or 2: the callers check
  std::vector<int64_t> kernel = attr_ints("kernel_shape");
  if (kernel.empty()) {
    if (has_kernel_attr) unsupported("attribute 'kernel_shape' is required");
    kernel = kernel_from_weight;
  }
  auto sized = [&](std::vector<int64_t> v, int64_t fallback, const char* what) {
    if (v.empty()) v.assign(static_cast<size_t>(spatial), fallback);
    if (static_cast<int>(v.size()) != spatial)
      unsupported(fmt::format("{} has {} values for {} spatial dims", what, v.size(), spatial),
                  fmt::format("{} of another length than the spatial dims", what));
    return v;
  };
  Window w;
  w.kernel = sized(kernel, 1, "kernel_shape");
  w.strides = sized(attr_ints("strides"), 1, "strides");
  w.dilations = sized(attr_ints("dilations"), 1, "dilations");
  for (int i = 0; i < spatial; ++i)
    if (w.kernel[i] < 1 || w.strides[i] < 1 || w.dilations[i] < 1 || w.kernel[i] > 1 << 20 || w.strides[i] > 1 << 20 ||
        w.dilations[i] > 1 << 20)
      unsupported(fmt::format("kernel {}, strides {}, dilations {}: each must be in [1, 2^20]", fmt::join(w.kernel, ","),
                              fmt::join(w.strides, ","), fmt::join(w.dilations, ",")));
  const std::string auto_pad = attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> pads = attr_ints("pads");  // ONNX: [x1_begin, x2_begin, ..., x1_end, x2_end, ...]
  if (auto_pad == "NOTSET") {
    if (pads.empty()) pads.assign(static_cast<size_t>(2 * spatial), 0);
    if (static_cast<int>(pads.size()) != 2 * spatial)
      unsupported(fmt::format("pads has {} values ({} for {} spatial dims)", pads.size(), 2 * spatial, spatial),
                  "pads of another length than twice the spatial dims");
  } else if (auto_pad == "VALID") {
    pads.assign(static_cast<size_t>(2 * spatial), 0);
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    // The output is ceil(in / stride); the padding that takes, split with the odd one at the end
    // (SAME_UPPER) or at the beginning (SAME_LOWER).
    pads.assign(static_cast<size_t>(2 * spatial), 0);
    for (int i = 0; i < spatial; ++i) {
      const int64_t in = xs[2 + i];
      const int64_t out = (in + w.strides[i] - 1) / w.strides[i];
      const int64_t total =
          std::max<int64_t>(0, (out - 1) * w.strides[i] + (w.kernel[i] - 1) * w.dilations[i] + 1 - in);
      const int64_t small = total / 2, large = total - small;
      pads[i] = auto_pad == "SAME_UPPER" ? small : large;
      pads[i + spatial] = auto_pad == "SAME_UPPER" ? large : small;
    }
  } else {
    unsupported(fmt::format("auto_pad '{}' is not an ONNX value", auto_pad));
  }
  for (int64_t p : pads)
    if (p < 0 || p > 1 << 20) unsupported(fmt::format("pads {}: each must be in [0, 2^20]", fmt::join(pads, ",")));
  if (spatial == 1) {  // a 1-d window is a 2-d one of height 1
    w.kernel.insert(w.kernel.begin(), 1);
    w.strides.insert(w.strides.begin(), 1);
    w.dilations.insert(w.dilations.begin(), 1);
    w.pads = {0, pads[0], 0, pads[1]};
  } else {
    w.pads = pads;  // [top, left, bottom, right]
  }
  return w;
}

Value Importer::pool(Value x, const Window& w, parity_op op, bool ceil_mode, bool count_include_pad, const std::string& name) {
  const Shape xs = shape(x);
  // Asymmetric pads (begin b, end e): padding both sides by p = max(b, e) moves the windows by
  // p - b positions, so when that is a whole number of strides the windows ONNX wants are a run
  // of those parity computes: drop the first (p - b) / stride outputs and keep ONNX's count. A
  // kept window reaches neither past -b nor past in - 1 + e, so no element of the extra padding
  // enters it: the max ignores padding anyway, and an average divides by the same count.
  int64_t pad[2] = {0, 0}, drop[2] = {0, 0}, keep[2] = {0, 0};
  bool crop[2] = {false, false};
  for (int a = 0; a < 2; ++a) {
    const int64_t begin = w.pads[static_cast<size_t>(a)], end = w.pads[static_cast<size_t>(a + 2)];
    const int64_t k = w.kernel[static_cast<size_t>(a)], s = w.strides[static_cast<size_t>(a)],
                  d = w.dilations[static_cast<size_t>(a)], in = xs[2 + a];
    pad[a] = std::max(begin, end);
    if (begin == end) continue;
    if (ceil_mode)
      unsupported(fmt::format("asymmetric pads {} with ceil_mode 1", fmt::join(w.pads, ",")), "asymmetric pads with ceil_mode 1");
    if ((pad[a] - begin) % s != 0)
      unsupported(fmt::format("asymmetric pads {} whose difference is not a multiple of the stride {}", fmt::join(w.pads, ","), s),
                  "asymmetric pads whose difference is not a multiple of the stride");
    drop[a] = (pad[a] - begin) / s;
    keep[a] = (in + begin + end - d * (k - 1) - 1) / s + 1;
    const int64_t symmetric = (in + 2 * pad[a] - d * (k - 1) - 1) / s + 1;
    if (in + begin + end < d * (k - 1) + 1 || drop[a] + keep[a] > symmetric)
      unsupported(fmt::format("pads {} on an input of {}: the window does not fit", fmt::join(w.pads, ","), in));
    crop[a] = true;
  }
  parity_op_params p{};
  auto fill = [&](auto& q) {
    q.kernel_h = static_cast<int32_t>(w.kernel[0]);
    q.kernel_w = static_cast<int32_t>(w.kernel[1]);
    q.stride_h = static_cast<int32_t>(w.strides[0]);
    q.stride_w = static_cast<int32_t>(w.strides[1]);
    q.pad_h = static_cast<int32_t>(pad[0]);
    q.pad_w = static_cast<int32_t>(pad[1]);
    q.ceil_mode = ceil_mode ? 1 : 0;
  };
  if (op == PARITY_OP_MAXPOOL2D) {
    fill(p.maxpool2d);
    p.maxpool2d.dilation_h = static_cast<int32_t>(w.dilations[0]);
    p.maxpool2d.dilation_w = static_cast<int32_t>(w.dilations[1]);
  } else {
    if (w.dilations[0] != 1 || w.dilations[1] != 1)
      unsupported(fmt::format("dilations {} (parity's average pool has none)", fmt::join(w.dilations, ",")), "dilations");
    fill(p.avgpool2d);
    p.avgpool2d.count_include_pad = count_include_pad ? 1 : 0;
  }
  Value y = b_.node(op, p, {x}, crop[0] || crop[1] ? tmp() : name)[0];
  for (int a = 0; a < 2; ++a)
    if (crop[a]) y = slice_axis(y, 2 + a, drop[a], keep[a]);
  return y;
}







void Importer::op_conv() {
  only_attributes({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
  const Shape xs = shape_of(0), ws = shape_of(1);
  const bool one_d = xs.rank() == 3 && ws.rank() == 3;
  if (!one_d && (xs.rank() != 4 || ws.rank() != 4))
    unsupported(fmt::format("input {} and weight {}: parity's Conv is 2-d (rank-4 NCHW; a 1-d one is viewed as 2-d)",
                            xs.str(), ws.str()),
                fmt::format("a {}-d convolution (parity's is 2-d; 1-d is viewed as 2-d)", xs.rank() - 2));
  require_f32(0);
  Window w = window(xs, false, one_d ? std::vector<int64_t>{ws[2]} : std::vector<int64_t>{ws[2], ws[3]});
  const int64_t kernel_h = one_d ? 1 : ws[2], kernel_w = one_d ? ws[2] : ws[3];
  if (w.kernel[0] != kernel_h || w.kernel[1] != kernel_w)
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
  Value x = conv_input(0), weight = value(1);
  if (one_d) {
    // [N, C, L] as [N, C, 1, L] and the weight [K, C/G, R] as [K, C/G, 1, R]: the same sums.
    x = view(x, Shape{xs[0], xs[1], 1, xs[2]});
    weight = view(weight, Shape{ws[0], ws[1], 1, ws[2]});
  }
  const std::string name = one_d ? tmp() : out_name();
  Value y;
  if (has_input(2)) {
    if (shape_of(2).rank() != 1) unsupported(fmt::format("bias {} must be 1-d", shape_of(2).str()));
    y = b_.conv2d(x, weight, value(2), options, name);
  } else {
    y = b_.conv2d(x, weight, options, name);
  }
  if (one_d) {
    const Shape ys = shape(y);
    y = b_.reshape(y, Shape{ys[0], ys[1], ys[3]}, out_name());
  }
  set_value(0, y);
}

void Importer::op_maxpool() {
  only_attributes({"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"});
  require_outputs(1);
  if (attr_int("storage_order", 0) != 0) unsupported("storage_order 1 (column-major indices)");
  const Shape xs = shape_of(0);
  if (xs.rank() != 4 && xs.rank() != 3)
    unsupported(fmt::format("input {}: parity's MaxPool is 2-d (rank-4 NCHW; a 1-d one is viewed as 2-d)", xs.str()),
                fmt::format("a {}-d pool (parity's is 2-d; 1-d is viewed as 2-d)", xs.rank() - 2));
  require_f32(0);
  const Window w = window(xs, true, {});
  // A zero Pad before a MaxPool is not folded into it (its zeros take part in the max): value()
  // makes the padded tensor.
  Value x = value(0);
  if (xs.rank() == 3) x = view(x, Shape{xs[0], xs[1], 1, xs[2]});
  Value y = pool(x, w, PARITY_OP_MAXPOOL2D, attr_int("ceil_mode", 0) != 0, false, xs.rank() == 3 ? tmp() : out_name());
  if (xs.rank() == 3) y = b_.reshape(y, Shape{xs[0], xs[1], shape(y)[3]}, out_name());
  set_value(0, y);
}

void Importer::op_avgpool() {
  only_attributes({"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"});
  const Shape xs = shape_of(0);
  if (xs.rank() != 4 && xs.rank() != 3)
    unsupported(fmt::format("input {}: parity's AveragePool is 2-d (rank-4 NCHW; a 1-d one is viewed as 2-d)", xs.str()),
                fmt::format("a {}-d pool (parity's is 2-d; 1-d is viewed as 2-d)", xs.rank() - 2));
  require_f32(0);
  Window w = window(xs, true, {});
  bool count_include_pad = attr_int("count_include_pad", 0) != 0;
  const std::vector<int64_t> folded = take_pending_pads(0);
  const bool own_pads = w.pads != std::vector<int64_t>{0, 0, 0, 0};
  Value x;
  if (folded != std::vector<int64_t>{0, 0, 0, 0} && (count_include_pad || !own_pads)) {
    // Padded zeros of a folded Pad are elements of the input: they count in the divisor, which is
    // count_include_pad's rule when the pool adds no padding of its own or counts it too.
    count_include_pad = true;
    for (int i = 0; i < 4; ++i) w.pads[i] += folded[i];
    x = conv_input(0);
  } else {
    x = value(0);  // the Pad, if any, made as a tensor
  }
  if (xs.rank() == 3) x = view(x, Shape{xs[0], xs[1], 1, xs[2]});
  Value y = pool(x, w, PARITY_OP_AVGPOOL2D, attr_int("ceil_mode", 0) != 0, count_include_pad,
                 xs.rank() == 3 ? tmp() : out_name());
  if (xs.rank() == 3) y = b_.reshape(y, Shape{xs[0], xs[1], shape(y)[3]}, out_name());
  set_value(0, y);
}

void Importer::op_global_avgpool() {
  only_attributes({});
  const Shape xs = shape_of(0);
  if (xs.rank() < 3) unsupported(fmt::format("input {}: GlobalAveragePool needs [N, C, spatial...]", xs.str()));
  require_f32(0);
  if (xs.rank() == 4) return set_value(0, b_.global_avgpool(value(0), out_name()));
  // Any number of spatial dims: the mean of each (n, c) block, viewed as one [S, 1] plane.
  int64_t plane = 1;
  for (int i = 2; i < xs.rank(); ++i) plane *= xs[i];
  std::vector<int64_t> dims(static_cast<size_t>(xs.rank()), 1);
  dims[0] = xs[0], dims[1] = xs[1];
  const Value y = b_.global_avgpool(view(value(0), Shape{xs[0], xs[1], plane, 1}), tmp());
  set_value(0, b_.reshape(y, Shape(dims), out_name()));
}

void Importer::op_global_maxpool() {
  only_attributes({});
  const Shape xs = shape_of(0);
  if (xs.rank() < 3) unsupported(fmt::format("input {}: GlobalMaxPool needs [N, C, spatial...]", xs.str()));
  require_f32(0);
  std::vector<int> axes;
  for (int i = 2; i < xs.rank(); ++i) axes.push_back(i);
  set_value(0, reduce_max(value(0), axes));
}

void Importer::op_batchnorm() {
  only_attributes({"epsilon", "momentum", "training_mode", "spatial", "is_test", "consumed_inputs"});
  if (attr("spatial") && attr_int("spatial", 1) != 1) unsupported("spatial 0 (per-element statistics)");
  const Shape xs = shape_of(0);
  if (xs.rank() < 2) unsupported(fmt::format("input {}: BatchNormalization needs [N, C, ...]", xs.str()));
  require_f32(0);
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
  // Per channel, the statistics and the affine map see a [N, C, spatial...] tensor as [N, C, S, 1]
  // with S the product of its spatial dims (1 for [N, C]): the same elements per channel.
  Value x = value(0);
  int64_t plane = 1;
  for (int i = 2; i < xs.rank(); ++i) plane *= xs[i];
  if (xs.rank() != 4) x = view(x, Shape{xs[0], xs[1], plane, 1});
  const std::string name = xs.rank() == 4 ? out_name() : tmp();
  const Value gamma = value(1), beta = value(2);
  const bool training = options_.form == OnnxBuildOptions::Form::training ||
                        (options_.form == OnnxBuildOptions::Form::as_file && file_training);
  Value y;
  if (training) {
    for (int i = 3; i < 5; ++i)
      if (!constant(i) && b_.graph().value(value(i)).kind != PARITY_VALUE_STATE)
        unsupported(fmt::format("input {} ('{}'): training updates the running statistics, which must be initializers", i,
                                node_->input(i)),
                    "training mode with running statistics computed at run time");
    const Value mean = materialize(node_->input(3), true), var = materialize(node_->input(4), true);
    // ONNX's momentum weighs the running value (PyTorch's 1 - momentum), and its running
    // variance takes the biased batch variance (PARITY_BATCHNORM_ONNX).
    y = b_.batchnorm2d_train(x, gamma, beta, mean, var, eps, onnx_momentum, PARITY_BATCHNORM_ONNX, name);
  } else {
    Value mean = has_input(3) && constant(3) ? materialize(node_->input(3), true) : value(3);
    Value var = has_input(4) && constant(4) ? materialize(node_->input(4), true) : value(4);
    y = b_.batchnorm2d_eval(x, gamma, beta, mean, var, eps, name);
  }
  if (xs.rank() != 4) y = b_.reshape(y, xs, out_name());
  set_value(0, y);
}

// A 2-d product without a weight LINEAR can read: a broadcasting MUL of A and B viewed as
// rank-3 tensors that meet along the contracted axis, and a REDUCE_SUM over it. Each output
// element is the float sum of its K products (in the backend's order), as LINEAR's is; the
// product tensor takes M*K*N floats. A [K, M] with B [N, K] (both transposed) would put N before
// M in the product and is refused.
Value Importer::matmul_by_reduce(Value a, Value b, bool trans_a, bool trans_b, int64_t m, int64_t k, int64_t n,
                                 const std::string& name) {
  if (trans_a && trans_b)
    unsupported("transA 1 and transB 1 with B computed at run time (parity has no transpose op)",
                "transA 1 and transB 1 with B computed at run time");
  Shape a3, b3;
  int axis = 0;
  if (!trans_a && !trans_b) a3 = Shape{m, k, 1}, b3 = Shape{1, k, n}, axis = 1;  // [M, K, N]
  if (trans_a) a3 = Shape{k, m, 1}, b3 = Shape{k, 1, n}, axis = 0;               // [K, M, N]
  if (trans_b) a3 = Shape{m, 1, k}, b3 = Shape{1, n, k}, axis = 2;               // [M, N, K]
  const Value product = b_.mul(view(a, a3), view(b, b3), tmp());
  return b_.reshape(reduce_sum(product, {axis}, tmp()), Shape{m, n}, name);
}

void Importer::op_gemm() {
  only_attributes({"alpha", "beta", "transA", "transB", "broadcast"});
  const float alpha = attr_float("alpha", 1.0f), beta = attr_float("beta", 1.0f);
  const bool trans_a = attr_int("transA", 0) != 0, trans_b = attr_int("transB", 0) != 0;
  const Shape as = shape_of(0), bs = shape_of(1);
  if (as.rank() != 2 || bs.rank() != 2) unsupported(fmt::format("A {} and B {} must be 2-d", as.str(), bs.str()));
  require_f32(0);
  require_f32(1);
  const int64_t m = trans_a ? as[1] : as[0], k = trans_a ? as[0] : as[1];
  const int64_t k_b = trans_b ? bs[1] : bs[0], n = trans_b ? bs[0] : bs[1];
  if (k != k_b)
    unsupported(fmt::format("A {} and B {} (transA {}, transB {}) do not multiply", as.str(), bs.str(), trans_a ? 1 : 0,
                            trans_b ? 1 : 0));
  // B as LINEAR's weight [N, K]: as it is with transB 1, or an initializer held transposed.
  const std::string& b_name = node_->input(1);
  Value w;
  if (!trans_a && trans_b) w = value(1);
  if (!trans_a && !trans_b && impl_.transposed.count(b_name)) w = linear_weight(b_name);
  Value bias;
  bool bias_after = false;
  if (has_input(2) && beta != 0.0f) {
    const Shape cs = shape_of(2);
    if (w.valid() && beta == 1.0f && cs.numel() == n && (cs == Shape{n} || cs == Shape{1, n})) {
      bias = value(2);
      if (cs.rank() == 2) bias = b_.reshape(bias, Shape{n}, out_name() + ".bias");
    } else {
      bias_after = true;
    }
  }
  const bool scale = alpha != 1.0f;
  const std::string product_name = scale || bias_after ? out_name() + ".linear" : out_name();
  Value y;
  if (w.valid()) {
    if (!bias.valid()) bias = constant_value(import_tensor(Shape{n}, DType::f32));  // LINEAR's zero bias
    y = b_.linear(value(0), w, bias, product_name);
  } else {
    y = matmul_by_reduce(value(0), value(1), trans_a, trans_b, m, k, n, product_name);
  }
  if (scale) y = scaled(y, alpha, bias_after ? tmp() : out_name());
  if (bias_after) {
    Value c = broadcast_rank(value(2), 2, tmp());
    if (beta != 1.0f) c = scaled(c, beta, "");
    y = b_.add(y, c, out_name());
  }
  set_value(0, y);
}

void Importer::op_matmul() {
  only_attributes({});
  const Shape as = shape_of(0), bs = shape_of(1);
  require_f32(0);
  require_f32(1);
  const std::string& b_name = node_->input(1);
  if (impl_.transposed.count(b_name)) {
    // A weight (an initializer only MatMuls and Gemms read as B): LINEAR on A's rows.
    if (as.rank() < 2 || as[as.rank() - 1] != bs[0])
      unsupported(fmt::format("A {} and B {} do not multiply as rows of A times the weight", as.str(), bs.str()));
    const Value w = linear_weight(b_name);
    const Value bias = constant_value(import_tensor(Shape{bs[1]}, DType::f32));  // LINEAR's zero bias
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
    return set_value(0, y);
  }
  // numpy.matmul: a 1-d A is a row [1, K], a 1-d B a column [K, 1], each dropped from the result;
  // the dims before the last two broadcast. The product of A viewed [..., M, K, 1] and B viewed
  // [..., 1, K, N] is summed over K (matmul_by_reduce's argument, batched).
  if (as.rank() < 1 || bs.rank() < 1) unsupported("scalar operands (rank 0)");
  std::vector<int64_t> ad = as.dims(), bd = bs.dims();
  if (ad.size() == 1) ad.insert(ad.begin(), 1);
  if (bd.size() == 1) bd.push_back(1);
  const int64_t m = ad[ad.size() - 2], k = ad.back(), n = bd.back();
  if (bd[bd.size() - 2] != k) unsupported(fmt::format("A {} and B {} do not multiply", as.str(), bs.str()));
  const size_t batch_rank = std::max(ad.size(), bd.size()) - 2;
  if (batch_rank + 3 > PARITY_MAX_RANK)
    unsupported(fmt::format("A {} and B {}: the product would have rank {} (parity holds {})", as.str(), bs.str(),
                            batch_rank + 3, PARITY_MAX_RANK),
                "a batched product of rank above 6");
  auto batch_of = [&](const std::vector<int64_t>& d) {
    std::vector<int64_t> batch(batch_rank - (d.size() - 2), 1);
    batch.insert(batch.end(), d.begin(), d.end() - 2);
    return batch;
  };
  const std::vector<int64_t> a_batch = batch_of(ad), b_batch = batch_of(bd);
  std::vector<int64_t> out;
  for (size_t i = 0; i < batch_rank; ++i) {
    if (a_batch[i] != b_batch[i] && a_batch[i] != 1 && b_batch[i] != 1)
      unsupported(fmt::format("A {} and B {}: batch dims do not broadcast", as.str(), bs.str()));
    out.push_back(std::max(a_batch[i], b_batch[i]));
  }
  std::vector<int64_t> a_view = a_batch, b_view = b_batch;
  a_view.insert(a_view.end(), {m, k, 1});
  b_view.insert(b_view.end(), {1, k, n});
  const Value product = b_.mul(view(value(0), Shape(a_view)), view(value(1), Shape(b_view)), tmp());
  const Value sum = reduce_sum(product, {static_cast<int>(batch_rank + 1)}, tmp());
  if (as.rank() > 1) out.push_back(m);
  if (bs.rank() > 1) out.push_back(n);
  set_value(0, b_.reshape(sum, Shape(out), out_name()));
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
  require_f32(0);
  require_f32(1);
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
  std::vector<Value> parts;
  for (int i = 0; i < inputs(); ++i) {
    if (dtype_of(i) != DType::f32) unsupported(fmt::format("input {} is {} (parity's concat joins f32)", i, to_string(dtype_of(i))));
    const Shape xs = shape_of(i);
    bool same = xs.rank() == rank;
    for (int d = 0; same && d < rank; ++d) same = d == axis || xs[d] == first[d];
    if (!same) unsupported(fmt::format("input {} {} and input 0 {} differ outside axis {}", i, xs.str(), first.str(), axis));
    parts.push_back(value(i));
  }
  // concat_axis: dim `axis` joined as dim 1 of [outer, dim, inner] views.
  set_value(0, parts.size() == 1 ? parts[0] : concat_axis(parts, axis, out_name()));
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
  if (const Tensor* c = constant(0)) return set_constant(0, reshaped(*c, Shape{outer, inner}));
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
  const int64_t count = xs.numel();
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
    // Past the input's element count the product can never fit; stopping there also keeps it from overflowing.
    if (target[i] > 0 && known > count / target[i])
      unsupported(fmt::format("shape {} holds more elements than the input {} ({})", fmt::join(target, ","), xs.str(), count));
    known *= target[i];
  }
  if (infer >= 0) {
    if (known == 0 || count % known != 0)
      unsupported(fmt::format("shape {} does not fit {} elements ({})", fmt::join(target, ","), count, xs.str()));
    target[static_cast<size_t>(infer)] = count / known;
  } else if (known != count) {
    unsupported(fmt::format("shape {} holds {} elements, the input {} has {}", fmt::join(target, ","), known, xs.str(), count));
  }
  if (const Tensor* c = constant(0)) return set_constant(0, reshaped(*c, Shape(target)));
  set_value(0, b_.reshape(value(0), Shape(target), out_name()));
}

// Squeeze's and Unsqueeze's axes: the attribute before opset 13, input 1 (known at import) from it.
std::vector<int64_t> Importer::axes_operand(bool required) {
  if (impl_.opset < 13) {
    only_attributes({"axes"});
    return attr_ints("axes");
  }
  only_attributes({});
  if (!required && !has_input(1)) return {};
  return int_values(require_constant(1, "axes"));
}

void Importer::op_squeeze() {
  const Shape xs = shape_of(0);
  const std::vector<int64_t> axes = axes_operand(false);
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
  if (const Tensor* c = constant(0)) return set_constant(0, reshaped(*c, Shape(dims)));
  set_value(0, b_.reshape(value(0), Shape(dims), out_name()));
}

void Importer::op_unsqueeze() {
  const Shape xs = shape_of(0);
  const std::vector<int64_t> axes = axes_operand(true);
  const int rank = xs.rank() + static_cast<int>(axes.size());
  std::set<int> added;
  for (int64_t a : axes)
    if (!added.insert(normalize_axis(a, rank, "axis")).second) unsupported("an axis is repeated");
  std::vector<int64_t> dims;
  int next = 0;
  for (int i = 0; i < rank; ++i) dims.push_back(added.count(i) ? 1 : xs[next++]);
  if (const Tensor* c = constant(0)) return set_constant(0, reshaped(*c, Shape(dims)));
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
  const bool training = options_.form == OnnxBuildOptions::Form::training ||
                        (options_.form == OnnxBuildOptions::Form::as_file && file_training);
  if (!training || ratio == 0.0f) return set_value(0, value(0));
  if (options_.form == OnnxBuildOptions::Form::as_file)
    unsupported("training_mode true: its mask comes from the runtime's generator, which parity does not reproduce");
  if (!(ratio > 0.0f && ratio < 1.0f)) unsupported(fmt::format("ratio {} (parity's dropout takes [0, 1))", ratio));
  if (!options_.step.valid()) throw Error(ErrorKind::internal, where() + ": a training graph with dropout needs the step value");
  set_value(0, b_.dropout(value(0), options_.step, ratio, options_.seed, options_.first_sample, out_name()));
}

// SoftmaxCrossEntropyLoss (opset 12+) on [N, C] scores: parity's SOFTMAX_XENT with torch's
// reduction and ignore_index (ABI 7). Labels are class indices: an int64 graph input is read as
// int32 (the caller converts, refusing values outside int32). Class weights, more than 2 dims
// and the log_prob output are not supported.
void Importer::op_softmax_cross_entropy() {
  only_attributes({"reduction", "ignore_index"});
  if (has_input(2)) unsupported("input 2 (class weights) is not supported", "SoftmaxCrossEntropyLoss with class weights");
  require_outputs(1);
  const Shape xs = shape_of(0), ls = shape_of(1);
  if (xs.rank() != 2 || ls != Shape{xs[0]})
    unsupported(fmt::format("scores {} and labels {}: parity's loss takes [N, C] and [N]", xs.str(), ls.str()),
                "SoftmaxCrossEntropyLoss beyond [N, C] scores");
  require_f32(0);
  const std::string reduction = attr_string("reduction", "mean");
  const parity_reduction r = reduction == "mean" ? PARITY_REDUCTION_MEAN
                             : reduction == "sum" ? PARITY_REDUCTION_SUM
                             : reduction == "none" ? PARITY_REDUCTION_NONE
                                                   : (unsupported(fmt::format("reduction '{}'", reduction)), PARITY_REDUCTION_MEAN);
  std::optional<int32_t> ignore;
  if (attr("ignore_index")) {
    const int64_t i = attr_int("ignore_index", 0);
    if (i < INT32_MIN || i > INT32_MAX) unsupported(fmt::format("ignore_index {} outside int32", i));
    ignore = static_cast<int32_t>(i);
  }
  Entry& labels = values_.at(node_->input(1));
  if (labels.deferred_input && labels.deferred_input->dtype == DType::i64) labels.deferred_input->dtype = DType::i32;
  if (dtype_of(1) != DType::i32)
    unsupported(fmt::format("labels '{}' are {} (class indices from a graph input are read as int32)", node_->input(1),
                            to_string(dtype_of(1))),
                "SoftmaxCrossEntropyLoss labels computed in the graph");
  if (options_.stop_before_final_loss && impl_.outputs.size() == 1 && node_->output(0) == impl_.outputs[0].name) {
    if (!graph_inputs_.count(node_->input(1)))
      unsupported(fmt::format("labels '{}' are not a graph input: a model's own loss reads the labels it is given",
                              node_->input(1)),
                  "SoftmaxCrossEntropyLoss labels computed in the graph");
    built_.final_loss = OnnxLoss{node_->name().empty() ? node_->output(0) : node_->name(), node_->input(1), r, ignore};
    return set_value(0, value(0));
  }
  if (r == PARITY_REDUCTION_NONE) return set_value(0, b_.softmax_xent(value(0), value(1), r, ignore, out_name()));
  // ONNX's mean and sum are scalars (rank 0); parity's loss is [1].
  const Value loss = b_.softmax_xent(value(0), value(1), r, ignore, out_name() + ".loss");
  set_value(0, b_.reshape(loss, Shape{}, out_name()));
}

void Importer::op_softmax() {
  only_attributes({"axis"});
  const bool log = node_->op_type() == "LogSoftmax";
  const Shape xs = shape_of(0);
  require_f32(0);
  const int64_t default_axis = impl_.opset >= 13 ? -1 : 1;
  if (options_.stop_before_final_softmax && impl_.outputs.size() == 1 && out_name() == impl_.outputs[0].name &&
      xs.rank() == 2 && normalize_axis(attr_int("axis", default_axis), 2, "axis") == 1) {
    built_.final_softmax = node_->op_type();
    return set_value(0, value(0));
  }
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
  if (mode != "constant" && mode != "edge" && mode != "reflect") unsupported(fmt::format("mode '{}'", mode));
  const Shape xs = shape_of(0);
  if (static_cast<int>(pads.size()) != 2 * xs.rank())
    unsupported(fmt::format("pads {} for rank {} (2 values per dim)", fmt::join(pads, ","), xs.rank()));
  for (int64_t p : pads)
    if (p < -(1 << 20) || p > 1 << 20) unsupported(fmt::format("pads {}: each must be in [-2^20, 2^20]", fmt::join(pads, ",")));
  require_f32(0);
  const Entry& in = entry(0);
  // [x1_begin, x2_begin, ..., x1_end, ...]. A zero padding of H and W of a computed NCHW tensor is
  // kept pending, to be folded into the Conv or AveragePool that reads it (their own padding);
  // anything else reads it as a tensor, made then (materialize_pad).
  const bool foldable = mode == "constant" && fill == 0.0f && xs.rank() == 4 && !pads[0] && !pads[1] && !pads[4] &&
                        !pads[5] && std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p >= 0; }) &&
                        !in.constant;
  if (foldable) {
    const Value x = graph_value(node_->input(0));
    std::vector<int64_t> folded = in.pending_pads.empty() ? std::vector<int64_t>{0, 0, 0, 0} : in.pending_pads;
    folded[0] += pads[2];
    folded[1] += pads[3];
    folded[2] += pads[6];
    folded[3] += pads[7];
    values_[node_->output(0)] = Entry{x, std::nullopt, folded, std::nullopt};
    return;
  }
  Value y = value(0);
  for (int d = 0; d < xs.rank(); ++d) y = pad_axis(y, d, pads[static_cast<size_t>(d)], pads[static_cast<size_t>(d + xs.rank())], mode, fill);
  set_value(0, y);
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
  const Tensor& indices = require_constant(1, "indices");
  if (indices.dtype() == DType::f32) unsupported("indices must be integers");
  const std::vector<int64_t> picks = int_values(indices);
  if (data && data->dtype() != DType::f32) {
    // Shape arithmetic: folded.
    const int rank = data->shape().rank();
    if (rank != 1) unsupported("Gather is folded only on 1-d integer constants");
    normalize_axis(attr_int("axis", 0), rank, "axis");
    const auto values = int_values(*data);
    std::vector<int64_t> out;
    for (int64_t i : picks) {
      if (i < -data->numel() || i >= data->numel()) unsupported(fmt::format("index {} outside [0, {})", i, data->numel()));
      out.push_back(values[static_cast<size_t>(i < 0 ? i + data->numel() : i)]);
    }
    if (indices.shape().rank() > 1) unsupported("indices of rank above 1");
    return set_constant(0, i64_tensor(out, indices.shape().rank() == 0));
  }
  if (dtype_of(0) != DType::f32) unsupported(fmt::format("data of type {} computed at run time", to_string(dtype_of(0))));
  // f32 data: each index a one-row slice of dim `axis`, the rows joined in index order (exact
  // copies); the output's dims are data's with that axis replaced by the indices' dims.
  const Shape xs = shape_of(0);
  const int axis = normalize_axis(attr_int("axis", 0), xs.rank(), "axis");
  constexpr size_t kMaxIndices = 256;
  if (picks.size() > kMaxIndices)
    unsupported(fmt::format("{} indices (parity gathers by one slice per index: at most {})", picks.size(), kMaxIndices),
                "more than 256 indices");
  std::vector<int64_t> dims;
  for (int d = 0; d < axis; ++d) dims.push_back(xs[d]);
  for (int64_t d : indices.shape().dims()) dims.push_back(d);
  for (int d = axis + 1; d < xs.rank(); ++d) dims.push_back(xs[d]);
  if (dims.size() > PARITY_MAX_RANK) unsupported(fmt::format("the output would have rank {}", dims.size()), "rank above 6");
  const Value x = value(0);
  std::vector<Value> rows;
  for (int64_t i : picks) {
    if (i < -xs[axis] || i >= xs[axis]) unsupported(fmt::format("index {} outside [-{}, {})", i, xs[axis], xs[axis]));
    rows.push_back(slice_axis(x, axis, i < 0 ? i + xs[axis] : i, 1));
  }
  set_value(0, b_.reshape(rows.size() == 1 ? rows[0] : concat_axis(rows, axis, tmp()), Shape(dims), out_name()));
}

void Importer::op_slice() {
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
  const Shape xs = shape_of(0);
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    unsupported("starts, ends, axes and steps differ in length");
  // Per axis, [start, end) clamped as ONNX clamps a positive step: a negative bound counts from
  // the end, then both are clamped to [0, dim].
  std::vector<std::pair<int64_t, int64_t>> range(static_cast<size_t>(xs.rank()));
  for (int d = 0; d < xs.rank(); ++d) range[static_cast<size_t>(d)] = {0, xs[d]};
  std::set<int> seen;
  for (size_t i = 0; i < starts.size(); ++i) {
    const int axis = normalize_axis(axes[i], xs.rank(), "axis");
    if (!seen.insert(axis).second) unsupported(fmt::format("axis {} is repeated", axis));
    if (steps[i] != 1) unsupported(fmt::format("step {} (parity slices contiguous ranges: step 1)", steps[i]), "steps other than 1");
    const int64_t dim = xs[axis];
    auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
    range[static_cast<size_t>(axis)] = {clamp(starts[i]), clamp(ends[i])};
    if (range[static_cast<size_t>(axis)].second <= range[static_cast<size_t>(axis)].first)
      unsupported(fmt::format("the slice of axis {} is empty", axis), "an empty slice");
  }
  const Tensor* data = constant(0);
  if (data && data->dtype() != DType::f32) {
    // Shape arithmetic: folded.
    if (xs.rank() != 1) unsupported("Slice is folded only on 1-d integer constants");
    const auto values = int_values(*data);
    std::vector<int64_t> out;
    for (int64_t i = range[0].first; i < range[0].second; ++i) out.push_back(values[static_cast<size_t>(i)]);
    return set_constant(0, i64_tensor(out));
  }
  if (dtype_of(0) != DType::f32) unsupported(fmt::format("data of type {} computed at run time", to_string(dtype_of(0))));
  Value y = value(0);
  for (int d = 0; d < xs.rank(); ++d)
    y = slice_axis(y, d, range[static_cast<size_t>(d)].first, range[static_cast<size_t>(d)].second - range[static_cast<size_t>(d)].first);
  set_value(0, y);
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

// Sub as a + (-1 * b), Neg as -1 * x: a product by -1 is exact, and a + (-b) rounds as a - b.
void Importer::op_sub_neg() {
  only_attributes({"broadcast", "axis"});
  if (impl_.opset < 7 && attr_int("broadcast", 0) != 0) unsupported("legacy broadcast attribute");
  const bool neg = node_->op_type() == "Neg";
  for (int i = 0; i < (neg ? 1 : 2); ++i)
    require_f32(i);
  if (neg) return set_value(0, scaled(value(0), -1.0f, out_name()));
  const int rank = std::max(shape_of(0).rank(), shape_of(1).rank());
  if (rank == 0) unsupported("scalar operands (rank 0)");
  const Value a = broadcast_rank(value(0), rank, tmp());
  const Value minus_b = scaled(broadcast_rank(value(1), rank, tmp()), -1.0f, "");
  set_value(0, b_.add(a, minus_b, out_name()));
}

void Importer::op_abs() {
  only_attributes({});
  require_f32(0);
  set_value(0, absolute(value(0), out_name()));
}

// Sum: ADDs in input order (numpy broadcasting); Mean: that sum times 1/n (within a rounding of
// the division); Max: the inputs broadcast to the output, stacked, and a MAXPOOL2D over the
// stack (stacked_max); Min: -max(-x), exact.
void Importer::op_variadic() {
  only_attributes({});  // opset 1's consumed_inputs included
  const std::string& type = node_->op_type();
  if (inputs() < 1) unsupported("no inputs");
  std::vector<Shape> shapes;
  for (int i = 0; i < inputs(); ++i) {
    require_f32(i);
    shapes.push_back(shape_of(i));
  }
  const Shape out = broadcast_shapes(shapes);
  if (out.rank() == 0) unsupported("scalar operands (rank 0)");
  if (type == "Sum" || type == "Mean") {
    Value acc = broadcast_to(value(0), out, "");
    for (int i = 1; i < inputs(); ++i) acc = b_.add(acc, broadcast_rank(value(i), out.rank(), tmp()), tmp());
    if (type == "Mean" && inputs() > 1) acc = scaled(acc, 1.0f / static_cast<float>(inputs()), "");
    return set_value(0, acc);
  }
  const bool min = type == "Min";
  std::vector<Value> parts;
  for (int i = 0; i < inputs(); ++i) {
    const Value x = broadcast_to(value(i), out, "");
    parts.push_back(min ? scaled(x, -1.0f, "") : x);
  }
  const Value max = stacked_max(parts, min ? tmp() : out_name());
  set_value(0, min ? scaled(max, -1.0f, out_name()) : max);
}

// PRelu: relu(x) + (-1 * (slope * relu(-x))): for x > 0 the second term is 0, else the first is,
// and slope * (-x) negated rounds as slope * x: exact.
void Importer::op_prelu() {
  only_attributes({});
  require_f32(0);
  require_f32(1);
  const Shape xs = shape_of(0), ss = shape_of(1);
  if (ss.rank() > xs.rank()) unsupported(fmt::format("slope {} has a higher rank than x {}", ss.str(), xs.str()));
  const Value x = value(0);
  Value slope;
  if (impl_.opset < 7) {
    // PRelu-1 and -6: one slope shared, or one per channel (dim 1); numpy broadcasting from 7.
    std::vector<int64_t> dims(static_cast<size_t>(xs.rank()), 1);
    if (ss.numel() != 1) {
      if (xs.rank() < 2 || ss.numel() != xs[1]) unsupported(fmt::format("slope {} for x {}: one per channel or one", ss.str(), xs.str()));
      dims[1] = xs[1];
    }
    slope = view(value(1), Shape(dims));
  } else {
    slope = broadcast_rank(value(1), xs.rank(), tmp());
  }
  const Value negative_part = b_.mul(b_.relu(scaled(x, -1.0f, ""), tmp()), slope, tmp());
  if (shape(negative_part) != xs) unsupported(fmt::format("slope {} does not broadcast to x {}", ss.str(), xs.str()));
  set_value(0, b_.add(b_.relu(x, tmp()), scaled(negative_part, -1.0f, ""), out_name()));
}

// HardSigmoid: min(1, max(0, alpha x + beta)) as a multiply, an add and HARDTANH(0, 1), the
// roundings of the ONNX formula; HardSwish: x times HardSigmoid(x) with alpha 1/6, beta 1/2.
void Importer::op_hard_sigmoid() {
  const bool swish = node_->op_type() == "HardSwish";
  if (swish) only_attributes({});
  else only_attributes({"alpha", "beta"});  // opset 1's consumed_inputs refused
  require_f32(0);
  const float alpha = swish ? 1.0f / 6.0f : attr_float("alpha", 0.2f), beta = swish ? 0.5f : attr_float("beta", 0.5f);
  const Value x = value(0);
  const Value line = plus(scaled(x, alpha, ""), beta, "");
  const Value hard = b_.hardtanh(line, 0.0f, 1.0f, swish ? tmp() : out_name());
  set_value(0, swish ? b_.mul(x, hard, out_name()) : hard);
}

// ReduceSum, ReduceMean (the sum times 1/count), ReduceSumSquare (of x * x), ReduceL1 (of |x|):
// REDUCE_SUM; ReduceMax and ReduceMin (-max(-x)): MAXPOOL2D windows (reduce_max). keepdims 0
// is a view without the reduced dims.
void Importer::op_reduce() {
  const std::string& type = node_->op_type();
  const bool axes_input = type == "ReduceSum" && impl_.opset >= 13;
  if (axes_input) only_attributes({"keepdims", "noop_with_empty_axes"});
  else only_attributes({"axes", "keepdims"});
  require_f32(0);
  const Shape xs = shape_of(0);
  if (xs.rank() == 0) unsupported("a scalar input (rank 0)");
  std::vector<int64_t> given;
  if (axes_input) {
    if (has_input(1)) given = int_values(require_constant(1, "axes"));
  } else {
    given = attr_ints("axes");
  }
  Value x = value(0);
  if (given.empty() && axes_input && attr_int("noop_with_empty_axes", 0) != 0) return set_value(0, x);
  std::set<int> axes;
  for (int64_t a : given)
    if (!axes.insert(normalize_axis(a, xs.rank(), "axis")).second) unsupported("an axis is repeated");
  if (axes.empty())
    for (int d = 0; d < xs.rank(); ++d) axes.insert(d);
  const std::vector<int> list(axes.begin(), axes.end());
  int64_t count = 1;
  for (int a : list) count *= xs[a];
  Value y;
  if (type == "ReduceMax" || type == "ReduceMin") {
    const bool min = type == "ReduceMin";
    y = reduce_max(min ? scaled(x, -1.0f, "") : x, list);
    if (min) y = scaled(y, -1.0f, "");
  } else {
    if (type == "ReduceSumSquare") x = b_.mul(x, x, tmp());
    if (type == "ReduceL1") x = absolute(x, tmp());
    y = reduce_sum(x, list, tmp());
    if (type == "ReduceMean") y = scaled(y, static_cast<float>(1.0 / static_cast<double>(count)), "");
  }
  std::vector<int64_t> dims;
  const bool keep = attr_int("keepdims", 1) != 0;
  for (int d = 0; d < xs.rank(); ++d)
    if (!axes.count(d)) dims.push_back(xs[d]);
    else if (keep) dims.push_back(1);
  set_value(0, b_.reshape(y, Shape(dims), out_name()));
}

// ConvTranspose as CONV2D_BWD_DATA, the gradient of a convolution with respect to its input:
// output row h sums x[i] w[r] over i * stride - pad_begin + r * dilation = h, which is the
// transposed convolution's definition; the output size is the forward input size whose
// convolution gives x's. The bias is added per channel.
void Importer::op_conv_transpose() {
  only_attributes({"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads", "strides"});
  const Shape xs = shape_of(0), ws = shape_of(1);
  const int rank = xs.rank();
  if ((rank != 3 && rank != 4) || ws.rank() != rank)
    unsupported(fmt::format("input {} and weight {}: parity's ConvTranspose is 2-d (1-d viewed as 2-d)", xs.str(), ws.str()),
                fmt::format("a {}-d transposed convolution (parity's is 2-d; 1-d is viewed as 2-d)", rank - 2));
  require_f32(0);
  require_f32(1);
  const int spatial = rank - 2;
  const int64_t group = attr_int("group", 1);
  if (group < 1 || xs[1] % group != 0 || ws[0] != xs[1])
    unsupported(fmt::format("group {} with x {} and W {} (W is [C_in, C_out / group, k...])", group, xs.str(), ws.str()));
  auto sized = [&](const char* name, int64_t fallback) {
    std::vector<int64_t> v = attr_ints(name);
    if (v.empty()) v.assign(static_cast<size_t>(spatial), fallback);
    if (static_cast<int>(v.size()) != spatial) unsupported(fmt::format("{} has {} values for {} spatial dims", name, v.size(), spatial));
    return v;
  };
  std::vector<int64_t> kernel = attr_ints("kernel_shape");
  if (kernel.empty()) kernel.assign(ws.dims().begin() + 2, ws.dims().end());
  for (int i = 0; i < spatial; ++i)
    if (static_cast<int>(kernel.size()) != spatial || kernel[static_cast<size_t>(i)] != ws[2 + i])
      unsupported(fmt::format("kernel_shape {} differs from W {}", fmt::join(kernel, ","), ws.str()));
  const std::vector<int64_t> strides = sized("strides", 1), dilations = sized("dilations", 1),
                             out_pad = sized("output_padding", 0);
  std::vector<int64_t> output_shape = attr_ints("output_shape");
  if (static_cast<int>(output_shape.size()) == rank) output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
  if (!output_shape.empty() && static_cast<int>(output_shape.size()) != spatial)
    unsupported(fmt::format("output_shape {} for {} spatial dims", fmt::join(output_shape, ","), spatial));
  const std::string auto_pad = attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> pads = attr_ints("pads");
  if (pads.empty()) pads.assign(static_cast<size_t>(2 * spatial), 0);
  if (static_cast<int>(pads.size()) != 2 * spatial) unsupported(fmt::format("pads {} for {} spatial dims", fmt::join(pads, ","), spatial));
  std::vector<int64_t> begin(static_cast<size_t>(spatial)), end(static_cast<size_t>(spatial)), out(static_cast<size_t>(spatial));
  for (int i = 0; i < spatial; ++i) {
    const size_t u = static_cast<size_t>(i);
    const int64_t in = xs[2 + i], span = (kernel[u] - 1) * dilations[u] + 1;
    if (strides[u] < 1 || dilations[u] < 1 || out_pad[u] < 0) unsupported("strides and dilations must be >= 1, output_padding >= 0");
    const int64_t full = strides[u] * (in - 1) + out_pad[u] + span;  // the output before padding
    if (!output_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      // ONNX's rule: total padding = full - wanted output, split with the odd one at the end
      // for SAME_UPPER, at the beginning otherwise.
      const int64_t wanted = !output_shape.empty() ? output_shape[u] : in * strides[u];
      const int64_t total = full - wanted;
      if (total < 0) unsupported(fmt::format("output_shape {} needs negative padding", wanted));
      begin[u] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      end[u] = total - begin[u];
    } else if (auto_pad == "VALID" || auto_pad == "NOTSET") {
      begin[u] = auto_pad == "VALID" ? 0 : pads[u];
      end[u] = auto_pad == "VALID" ? 0 : pads[u + static_cast<size_t>(spatial)];
    } else {
      unsupported(fmt::format("auto_pad '{}' is not an ONNX value", auto_pad));
    }
    out[u] = full - begin[u] - end[u];
    if (begin[u] < 0 || end[u] < 0 || out[u] < 1) unsupported(fmt::format("pads {} {} leave no output", begin[u], end[u]));
    // The forward convolution of the output size must give x's size back (output_padding below
    // the stride), or CONV2D_BWD_DATA's size is not this one.
    if ((out[u] + begin[u] + end[u] - span) / strides[u] + 1 != in)
      unsupported(fmt::format("output_padding {} with stride {}: the output size is not one a convolution maps to the "
                              "input's", out_pad[u], strides[u]),
                  "output_padding not below the stride");
  }
  if (spatial == 1) {
    kernel.insert(kernel.begin(), 1);
    begin.insert(begin.begin(), 0);
    end.insert(end.begin(), 0);
    out.insert(out.begin(), 1);
  }
  const std::vector<int64_t> s2 = spatial == 1 ? std::vector<int64_t>{1, strides[0]} : strides;
  const std::vector<int64_t> d2 = spatial == 1 ? std::vector<int64_t>{1, dilations[0]} : dilations;
  parity_op_params p{};
  parity_conv2d_params& c = p.conv2d;
  c.stride_h = static_cast<int32_t>(s2[0]), c.stride_w = static_cast<int32_t>(s2[1]);
  c.dilation_h = static_cast<int32_t>(d2[0]), c.dilation_w = static_cast<int32_t>(d2[1]);
  c.groups = static_cast<int32_t>(group);
  c.pad_h = static_cast<int32_t>(begin[0]), c.pad_w = static_cast<int32_t>(begin[1]);
  if (begin != end) {
    c.pad_end_given = 1;
    c.pad_bottom = static_cast<int32_t>(end[0]), c.pad_right = static_cast<int32_t>(end[1]);
  }
  c.input_h = static_cast<int32_t>(out[0]), c.input_w = static_cast<int32_t>(out[1]);
  Value x = value(0), w = value(1);
  if (spatial == 1) {
    x = view(x, Shape{xs[0], xs[1], 1, xs[2]});
    w = view(w, Shape{ws[0], ws[1], 1, ws[2]});
  }
  const int64_t channels = ws[1] * group;
  Value y = b_.node(PARITY_OP_CONV2D_BWD_DATA, p, {x, w}, tmp())[0];
  if (has_input(2)) {
    if (shape_of(2) != Shape{channels}) unsupported(fmt::format("bias {} is not [{}]", shape_of(2).str(), channels));
    y = b_.add(y, view(value(2), Shape{1, channels, 1, 1}), tmp());
  }
  std::vector<int64_t> dims = {xs[0], channels};
  for (int i = spatial == 1 ? 1 : 0; i < 2; ++i) dims.push_back(out[static_cast<size_t>(i)]);
  set_value(0, b_.reshape(y, Shape(dims), out_name()));
}

// Split: each output a slice of the axis (exact copies).
void Importer::op_split() {
  const bool split_input = impl_.opset >= 13;
  if (split_input) only_attributes({"axis"});
  else only_attributes({"axis", "split"});
  require_f32(0);
  const Shape xs = shape_of(0);
  const int axis = normalize_axis(attr_int("axis", 0), xs.rank(), "axis");
  std::vector<int64_t> split;
  if (split_input) {
    if (has_input(1)) split = int_values(require_constant(1, "split"));
  } else {
    split = attr_ints("split");
    if (split.empty() && impl_.opset < 2 && has_input(1)) split = int_values(require_constant(1, "split"));
  }
  const int outputs = node_->output_size();
  if (split.empty()) {
    if (outputs < 1 || xs[axis] % outputs != 0)
      unsupported(fmt::format("dim {} of {} into {} equal parts", axis, xs.str(), outputs));
    split.assign(static_cast<size_t>(outputs), xs[axis] / outputs);
  }
  if (static_cast<int>(split.size()) != outputs) unsupported(fmt::format("{} sizes for {} outputs", split.size(), outputs));
  int64_t total = 0;
  for (int64_t n : split) {
    if (n < 1) unsupported(fmt::format("split size {} (parity's values are not empty)", n), "an empty split");
    total += n;
  }
  if (total != xs[axis]) unsupported(fmt::format("split {} does not add up to dim {} of {}", fmt::join(split, ","), axis, xs.str()));
  const Value x = value(0);
  int64_t start = 0;
  for (int i = 0; i < outputs; ++i) {
    set_value(i, slice_axis(x, axis, start, split[static_cast<size_t>(i)]));
    start += split[static_cast<size_t>(i)];
  }
}

// Tile: the tensor joined to itself `repeats` times along each axis (exact copies).
void Importer::op_tile() {
  only_attributes({});
  require_f32(0);
  const Shape xs = shape_of(0);
  const std::vector<int64_t> repeats = int_values(require_constant(1, "repeats"));
  if (static_cast<int>(repeats.size()) != xs.rank()) unsupported(fmt::format("{} repeats for rank {}", repeats.size(), xs.rank()));
  Value y = value(0);
  for (int d = 0; d < xs.rank(); ++d) {
    const int64_t r = repeats[static_cast<size_t>(d)];
    if (r < 1 || r > 256) unsupported(fmt::format("repeat {} (parity joins copies: 1 to 256)", r));
    if (r > 1) y = concat_axis(std::vector<Value>(static_cast<size_t>(r), y), d, tmp());
  }
  set_value(0, y);
}

// Expand: numpy broadcasting of x and `shape`, as a product with ones (exact).
void Importer::op_expand() {
  only_attributes({});
  require_f32(0);
  const Tensor& target = require_constant(1, "shape");
  const Shape out = broadcast_shapes({shape_of(0), Shape(int_values(target))});
  set_value(0, broadcast_to(value(0), out, out_name()));
}

// InstanceNormalization: each (n, c) plane normalised by its own mean and biased variance,
// which is a training batch norm of the [1, N*C, S, 1] view (its statistics are per channel
// of the view), with scale and B repeated N times. The running statistics the node updates are
// throwaway STATE values.
void Importer::op_instance_norm() {
  only_attributes({"epsilon"});
  const Shape xs = shape_of(0);
  if (xs.rank() < 3) unsupported(fmt::format("input {}: InstanceNormalization needs [N, C, spatial...]", xs.str()));
  require_f32(0);
  for (int i = 1; i < 3; ++i)
    if (shape_of(i) != Shape{xs[1]}) unsupported(fmt::format("input {} is {}, not [{}]", i, shape_of(i).str(), xs[1]));
  int64_t plane = 1;
  for (int i = 2; i < xs.rank(); ++i) plane *= xs[i];
  const int64_t planes = xs[0] * xs[1];
  auto repeated = [&](int i) {
    const Value row = view(value(i), Shape{1, xs[1]});
    return view(concat_axis(std::vector<Value>(static_cast<size_t>(xs[0]), row), 1, tmp()), Shape{planes});
  };
  const Value gamma = repeated(1), beta = repeated(2);
  const Value mean = constant_value(import_tensor(Shape{planes}, DType::f32));
  Tensor ones = import_tensor(Shape{planes}, DType::f32);
  std::fill(ones.f32(), ones.f32() + planes, 1.0f);
  const Value var = constant_value(ones);
  const Value y = b_.batchnorm2d_train(view(value(0), Shape{1, planes, plane, 1}), gamma, beta, mean, var,
                                       attr_float("epsilon", 1e-5f), 0.9f, PARITY_BATCHNORM_ONNX, tmp());
  set_value(0, b_.reshape(y, xs, out_name()));
}

void Importer::op_constant_of_shape() {
  only_attributes({"value"});
  const std::vector<int64_t> dims = int_values(require_constant(0, "shape"));
  Tensor fill = Tensor::from_f32(Shape{1}, {0.0f});
  if (const auto* a = attr("value")) fill = tensor_from_onnx(a->t(), impl_.folder, where() + " attribute 'value'");
  if (fill.numel() != 1) unsupported("attribute 'value' must hold one element");
  int64_t count = 1;
  for (int64_t d : dims) {
    if (d < 1) unsupported(fmt::format("shape {} (parity's values are not empty)", fmt::join(dims, ",")), "an empty tensor (a dim of 0)");
    count *= d;
    if (count > (int64_t{1} << 24)) unsupported(fmt::format("shape {}: more than 2^24 elements folded at import", fmt::join(dims, ",")));
  }
  Tensor out(Shape(dims), fill.dtype());
  const size_t size = dtype_size(fill.dtype());
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(static_cast<char*>(out.data()) + i * static_cast<int64_t>(size), fill.data(), size);
  set_constant(0, out);
}

void Importer::op_size() {
  only_attributes({});
  set_constant(0, i64_tensor({shape_of(0).numel()}, true));
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
  // Initializers that only MatMuls, or Gemms with transA 0 and transB 0, read as B are held as
  // parity's LINEAR reads its weight: [N, K] (Impl::initializers; Impl::constants keeps them as
  // stored, for every other use of their values).
  std::map<std::string, bool> linear_only;  // initializer -> every reader reads it as a LINEAR weight
  for (const auto& node : impl->proto.graph().node()) {
    bool trans_a = false, trans_b = false;
    for (const auto& a : node.attribute()) {
      if (a.name() == "transA") trans_a = a.i() != 0;
      if (a.name() == "transB") trans_b = a.i() != 0;
    }
    const bool weight_reader = default_domain(node.domain()) &&
                               (node.op_type() == "MatMul" || (node.op_type() == "Gemm" && !trans_a && !trans_b));
    for (int i = 0; i < node.input_size(); ++i) {
      if (!impl->initializers.count(node.input(i))) continue;
      auto [it, first] = linear_only.emplace(node.input(i), true);
      it->second = it->second && weight_reader && i == 1;
      (void)first;
    }
  }
  for (const auto& output : impl->proto.graph().output())
    if (linear_only.count(output.name())) linear_only[output.name()] = false;
  for (const auto& [name_t, only] : linear_only) {
    auto it = impl->initializers.find(name_t);
    if (!only || it->second.shape().rank() != 2) continue;
    const Tensor& w = it->second;
    const int64_t rows = w.shape()[0], cols = w.shape()[1];
    Tensor t(Shape{cols, rows}, DType::f32);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) t.f32()[c * rows + r] = w.f32()[r * cols + c];
    it->second = std::move(t);
    impl->transposed.insert(name_t);
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

Tensor labels_as_i32(const Tensor& labels, const std::string& input) {
  Tensor out(labels.shape(), DType::i32);
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int64_t v = labels.i64()[i];
    if (v < INT32_MIN || v > INT32_MAX)
      throw Error(ErrorKind::data, fmt::format("input '{}': label {} is outside int32", input, v));
    out.i32()[i] = static_cast<int32_t>(v);
  }
  return out;
}

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
