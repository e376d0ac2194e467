// parity/graph.h — the op graph: building it with shape checks, differentiating it, and
// planning its memory for a backend.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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
// conv2d's general form: nn.Conv2d's arguments per axis (height, width), and ONNX's begin/end
// padding. Padding is symmetric (pad_h on top and bottom, pad_w left and right) unless
// pad_end is set, when pad_bottom and pad_right pad the bottom and right instead.
struct Conv2dOptions {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  bool pad_end = false;
  int pad_bottom = 0, pad_right = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;  // weight [K, C / groups, R, S]; groups == C is a depthwise conv
};

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
  // The general form, with a bias b [K] or without; stride or dilation < 1, negative padding,
  // groups < 1 or not dividing both channel counts are refused naming the node.
  Value conv2d(Value x, Value w, Value b, const Conv2dOptions& options, const std::string& name = "");
  Value conv2d(Value x, Value w, const Conv2dOptions& options, const std::string& name = "");
  // Returns the pooled values; the argmax indices are a second output used by the gradient.
  Value maxpool2d(Value x, int kernel, int stride, const std::string& name = "");
  // torch.nn.functional.max_pool2d's square form: zero padding on both sides (any size: a
  // window with no input element gives 0, its index -1), ceil_mode, dilation >= 1.
  Value maxpool2d(Value x, int kernel, int stride, int pad, bool ceil_mode = false, int dilation = 1,
                  const std::string& name = "");
  // torch.nn.functional.avg_pool2d's square form (count_include_pad defaults to torch's true);
  // global_avgpool(x, name) (generated above) is adaptive_avg_pool2d to 1x1.
  Value avgpool2d(Value x, int kernel, int stride, const std::string& name = "");
  Value avgpool2d(Value x, int kernel, int stride, int pad, bool ceil_mode = false, bool count_include_pad = true,
                  const std::string& name = "");
  // torch.nn.functional.cross_entropy(logits, labels, reduction=..., ignore_index=...) over
  // logits [N,K] and i32 labels [N] (parity_softmax_xent_params in parity/plugin.h): the mean over
  // the rows not ignored (every row ignored: NaN, as torch), their sum, or each row's term [N]
  // (none; ignored rows 0). No ignore_index ignores nothing (torch's default -100 must be given).
  // softmax_xent(logits, labels, name) above is the mean without one. A reduction outside the
  // enum is refused naming the node.
  Value softmax_xent(Value logits, Value labels, parity_reduction reduction,
                     std::optional<int32_t> ignore_index = std::nullopt, const std::string& name = "");
  Value reshape(Value x, const Shape& shape, const std::string& name = "");
  Value flatten(Value x, const std::string& name = "");  // [N, ...] -> [N, rest]
  Value fill(float value, const std::string& name = "");  // a [1] constant
  // torch.nn.functional's activations with params, and their defaults; a non-finite slope, or
  // min_val > max_val, is refused naming the node.
  Value leaky_relu(Value x, float negative_slope = 0.01f, const std::string& name = "");
  Value hardtanh(Value x, float min_val = -1.0f, float max_val = 1.0f, const std::string& name = "");
  Value relu6(Value x, const std::string& name = "");  // hardtanh(x, 0, 6)
  // Training-mode dropout (an evaluation graph simply has no dropout node): zeroes each element
  // with probability p in [0, 1) and scales the rest by 1 / (1 - p), the mask drawn from (seed,
  // the 1-based `step` (i32 [1], e.g. the INPUT optimizer.step), the node's name, the sample's
  // global index first_sample + n, the element): the same on every backend and however a batch
  // is split (parity_dropout_params in parity/plugin.h).
  Value dropout(Value x, Value step, float p, uint64_t seed, int64_t first_sample = 0, const std::string& name = "");
  // torch.nn.BatchNorm2d's forward with its defaults (eps 1e-5, momentum 0.1, PyTorch's
  // running statistics; parity_batchnorm2d_params). Training normalises by the batch's
  // statistics and updates running_mean and running_var ([C] state values) in place; it returns
  // y, and the node's outputs 1 and 2 are the saved mean and inverse std its backward reads.
  // Evaluation normalises by the running statistics and updates nothing. eps <= 0, momentum
  // outside [0, 1], operands that are not [C], or N*H*W == 1 in PyTorch's training are refused
  // naming the node.
  Value batchnorm2d_train(Value x, Value gamma, Value beta, Value running_mean, Value running_var, float eps = 1e-5f,
                          float momentum = 0.1f, parity_batchnorm_convention convention = PARITY_BATCHNORM_PYTORCH,
                          const std::string& name = "");
  Value batchnorm2d_eval(Value x, Value gamma, Value beta, Value running_mean, Value running_var, float eps = 1e-5f,
                         const std::string& name = "");
  // torch.softmax / torch.log_softmax over `dim` (negative counts from the end); a dim outside
  // x's rank is refused naming the node.
  Value softmax(Value x, int dim = 1, const std::string& name = "");
  // x converted to `dtype` (CAST, ABI 9): between f32, bf16 and f16, rounded to nearest even
  // (plugin.h, parity_cast_params); any other dtype is refused naming the node. Its gradient is
  // the incoming gradient cast back to x's dtype.
  Value cast(Value x, DType dtype, const std::string& name = "");
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

// The learning rate per optimizer step, as torch.optim.lr_scheduler's schedulers stepped once
// per optimizer step (parity_lr_schedule in parity/plugin.h has the formulas): an optional
// linear warmup (LinearLR from warmup_start_factor to 1 over warmup_steps), then constant,
// StepLR (gamma every step_size steps) or CosineAnnealingLR (to min_lr over total_steps).
struct LrSchedule {
  enum class Kind { constant, step, cosine } kind = Kind::constant;
  int32_t step_size = 0;        // step: > 0
  float gamma = 0.1f;           // step
  int32_t total_steps = 0;      // cosine: > 0 (T_max)
  float min_lr = 0.0f;          // cosine (eta_min)
  int32_t warmup_steps = 0;     // 0: none
  float warmup_start_factor = 1.0f / 3.0f;  // LinearLR's default
};

struct OptimizerConfig {
  // adamw: torch.optim.AdamW (decoupled weight decay); adam's weight_decay is L2 on the gradient.
  enum class Kind { adam, sgd, adamw } kind = Kind::adam;
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // adam, adamw (PyTorch's defaults)
  float momentum = 0.0f;                             // sgd
  bool nesterov = false;                             // sgd, needs momentum > 0
  float weight_decay = 0.0f;                         // torch's default (AdamW's own default is 0.01)
  LrSchedule schedule;
  // > 0: torch.nn.utils.clip_grad_norm_(params, clip_grad_norm) before every step: all gradients
  // scaled by min(1, max_norm / (total 2-norm + 1e-6)) (MUL, REDUCE_SUM, CLIP_COEF nodes). 0: off.
  float clip_grad_norm = 0.0f;
  // Parameters held sparse (the masks of `parity prune`): param name -> f32 mask of the param's
  // shape, 1 kept and 0 pruned. Each such gradient is multiplied by the STATE value
  // gradient_mask_name(param) before clipping and the update (a MUL node), so a pruned element's
  // gradient is exactly 0; with its weight and optimizer state at 0 (the Trainer writes them so),
  // adam, adamw and sgd (momentum, nesterov, either weight decay) then leave all three at 0.
  std::map<std::string, Tensor> gradient_masks;
};
// "adam", "adamw", "sgd".
const char* optimizer_name(OptimizerConfig::Kind kind);

// The node key of a dropout node named `node_name` (parity_dropout_params::node_key): its FNV-1a
// 64 hash folded to 32 bits, so a peer that knows the name draws the same mask.
uint32_t dropout_node_key(const std::string& node_name);

// Name of the gradient of a value: "grad/<name>".
std::string grad_name(const std::string& value_name);
// Optimizer state names, as in a PyTorch optimizer state_dict keyed by parameter name.
std::string adam_m_name(const std::string& param);        // "optimizer.<param>.exp_avg"
std::string adam_v_name(const std::string& param);        // "optimizer.<param>.exp_avg_sq"
std::string sgd_velocity_name(const std::string& param);  // "optimizer.<param>.momentum_buffer"
std::string gradient_mask_name(const std::string& param);  // "<param>.mask", as in parity prune's files
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
