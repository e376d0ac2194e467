// parity/graph.h — the op graph: building it with shape checks, differentiating it, and
// planning its memory for a backend.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "parity/plugin.h"
#include "parity/tensor.h"

namespace parity {

// A handle to a value of the graph being built.
struct Value {
  int32_t id = -1;
  bool valid() const { return id >= 0; }
};

struct ValueInfo {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
  parity_value_kind kind = PARITY_VALUE_TEMP;
  int32_t producer = -1;  // node index, -1 for inputs, params and state
};

struct Node {
  std::string name;
  parity_op op = PARITY_OP_COUNT;
  parity_op_params params{};
  std::vector<int32_t> inputs, outputs;
};

// Values and nodes in topological order (a node's inputs precede it).
class Graph {
 public:
  const std::vector<ValueInfo>& values() const { return values_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const ValueInfo& value(Value v) const;
  // The value with this name; throws Error(invalid_argument) when there is none.
  Value find(const std::string& name) const;
  bool has(const std::string& name) const;
  // One line per value and per node: a debugging aid, stable enough to diff.
  std::string dump() const;

 private:
  friend class GraphBuilder;
  std::vector<ValueInfo> values_;
  std::vector<Node> nodes_;
};

// Builds a graph; every op is validated and its output shapes inferred as it is added, so a
// shape error names the node that caused it.
class GraphBuilder {
 public:
  GraphBuilder() = default;
  explicit GraphBuilder(Graph start) : graph_(std::move(start)) {}

  Value input(const std::string& name, const Shape& shape, DType dtype = DType::f32);
  Value parameter(const std::string& name, const Shape& shape);
  Value state(const std::string& name, const Shape& shape);

  // One method per op of PARITY_OP_LIST marked `builder` (no params, one output), taking the
  // op's inputs in order as parity/op_list.h lists them: relu(x), linear(x, w, b),
  // softmax_xent(logits, labels) and the others that list marks.
#define PARITY_BUILDER_METHOD_1(op) Value op(Value in0, const std::string& name = "");
#define PARITY_BUILDER_METHOD_2(op) Value op(Value in0, Value in1, const std::string& name = "");
#define PARITY_BUILDER_METHOD_3(op) Value op(Value in0, Value in1, Value in2, const std::string& name = "");
#define PARITY_BUILDER_IF_0(op, inputs)
#define PARITY_BUILDER_IF_1(op, inputs) PARITY_BUILDER_METHOD_##inputs(op)
#define PARITY_BUILDER_DECLARE(id, op, inputs, outputs, builder) PARITY_BUILDER_IF_##builder(op, inputs)
  PARITY_OP_LIST(PARITY_BUILDER_DECLARE)
#undef PARITY_BUILDER_DECLARE
#undef PARITY_BUILDER_IF_1
#undef PARITY_BUILDER_IF_0
#undef PARITY_BUILDER_METHOD_3
#undef PARITY_BUILDER_METHOD_2
#undef PARITY_BUILDER_METHOD_1

  // The ops with params or several outputs.
  Value conv2d(Value x, Value w, Value b, int stride = 1, int pad = 0, const std::string& name = "");
  // Returns the pooled values; the argmax indices are a second output used by the gradient.
  Value maxpool2d(Value x, int kernel, int stride, const std::string& name = "");
  Value reshape(Value x, const Shape& shape, const std::string& name = "");
  Value flatten(Value x, const std::string& name = "");  // [N, ...] -> [N, rest]
  Value fill(float value, const std::string& name = "");  // a [1] constant
  // torch.nn.functional's activations with params, and their defaults; a non-finite slope, or
  // min_val > max_val, is refused naming the node.
  Value leaky_relu(Value x, float negative_slope = 0.01f, const std::string& name = "");
  Value hardtanh(Value x, float min_val = -1.0f, float max_val = 1.0f, const std::string& name = "");
  Value relu6(Value x, const std::string& name = "");  // hardtanh(x, 0, 6)
  // torch.softmax / torch.log_softmax over `dim` (negative counts from the end); a dim outside
  // x's rank is refused naming the node.
  Value softmax(Value x, int dim = 1, const std::string& name = "");
  Value log_softmax(Value x, int dim = 1, const std::string& name = "");
  // torch.cat(inputs, 1): every input f32 with the same dims but dim 1. More inputs than a node
  // holds (PARITY_MAX_NODE_INPUTS) become a tree of CONCAT nodes "<name>.part<i>" under the
  // last one, "<name>" (the inputs are validated together first, so a refusal names "<name>").
  Value concat(const std::vector<Value>& inputs, const std::string& name = "");

  // Any op of plugin.h: validated by the op's rule, outputs named "<name>:<i>" unless single.
  std::vector<Value> node(parity_op op, const parity_op_params& params, const std::vector<Value>& inputs,
                          const std::string& name = "");

  // Gives a value a new (unique) name, e.g. "grad/conv1.weight" for a gradient.
  void rename(Value v, const std::string& name);

  const Graph& graph() const { return graph_; }
  Graph take() { return std::move(graph_); }

 private:
  Value add_value(const std::string& name, const Shape& shape, DType dtype, parity_value_kind kind);
  std::string unique_name(const std::string& wanted, parity_op op);
  Graph graph_;
};

struct OptimizerConfig {
  enum class Kind { adam, sgd } kind = Kind::adam;
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // adam (PyTorch's defaults)
  float momentum = 0.0f;                             // sgd
  float weight_decay = 0.0f;
};

// Name of the gradient of a value: "grad/<name>".
std::string grad_name(const std::string& value_name);
// Optimizer state names, as in a PyTorch optimizer state_dict keyed by parameter name.
std::string adam_m_name(const std::string& param);        // "optimizer.<param>.exp_avg"
std::string adam_v_name(const std::string& param);        // "optimizer.<param>.exp_avg_sq"
std::string sgd_velocity_name(const std::string& param);  // "optimizer.<param>.momentum_buffer"
inline const char* optimizer_step_name() { return "optimizer.step"; }

// Appends the backward graph of `loss` (a [1] value) — gradients summed where a value feeds
// several nodes — and, when `optimizer` is given, one update node per parameter plus the
// optimizer's state values and the INPUT "optimizer.step" (i32 [1], 1-based).
Graph differentiate(const Graph& forward, Value loss, const OptimizerConfig* optimizer);

// A graph lowered for a backend: C descriptors, value lifetimes and arena offsets. Values
// named in `keep` (and every INPUT, PARAM and STATE) stay readable after execute. Values named
// in `tight_layout` are placed first, back to back in that order, each aligned only to its
// dtype and never reused: `parity check` uses it to put guard values right around outputs.
class Plan {
 public:
  Plan(const Graph& graph, const std::vector<std::string>& keep = {}, const std::vector<std::string>& tight_layout = {});
  parity_plan c_plan() const;
  int32_t value(const std::string& name) const;  // index, throws when absent
  const std::vector<parity_value_desc>& values() const { return values_; }
  const std::vector<parity_node_desc>& nodes() const { return nodes_; }
  int64_t arena_bytes() const { return arena_bytes_; }

 private:
  std::vector<parity_value_desc> values_;
  std::vector<parity_node_desc> nodes_;
  int64_t arena_bytes_ = 0;
};

}  // namespace parity
