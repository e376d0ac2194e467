// graph/autodiff.cpp — reverse-mode differentiation of a forward graph: appends the backward
// nodes (summing gradients where a value feeds several nodes) and the optimizer's update nodes.
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "graph/autodiff.h"
#include "ops/op_rule.h"
#include "parity/error.h"
#include "parity/graph.h"

namespace parity {

std::string grad_name(const std::string& value_name) { return "grad/" + value_name; }
std::string adam_m_name(const std::string& param) { return "optimizer." + param + ".exp_avg"; }
std::string adam_v_name(const std::string& param) { return "optimizer." + param + ".exp_avg_sq"; }
std::string sgd_velocity_name(const std::string& param) { return "optimizer." + param + ".momentum_buffer"; }
std::string gradient_mask_name(const std::string& param) { return param + ".mask"; }

const char* optimizer_name(OptimizerConfig::Kind kind) {
  switch (kind) {
    case OptimizerConfig::Kind::adam: return "adam";
    case OptimizerConfig::Kind::adamw: return "adamw";
    case OptimizerConfig::Kind::sgd: return "sgd";
  }
  return "unknown";
}

namespace {

// Which values depend on a parameter, and so want a gradient.
std::vector<bool> values_needing_gradient(const Graph& g) {
  std::vector<bool> needs(g.values().size(), false);
  for (size_t i = 0; i < g.values().size(); ++i) needs[i] = g.values()[i].kind == PARITY_VALUE_PARAM;
  for (const Node& n : g.nodes()) {
    bool any = false;
    for (int32_t in : n.inputs) any = any || needs[static_cast<size_t>(in)];
    for (int32_t out : n.outputs) needs[static_cast<size_t>(out)] = any;
  }
  return needs;
}

parity_lr_schedule schedule_params(const LrSchedule& s) {
  parity_lr_schedule p{};
  p.kind = s.kind == LrSchedule::Kind::step     ? PARITY_LR_STEP
           : s.kind == LrSchedule::Kind::cosine ? PARITY_LR_COSINE
                                                : PARITY_LR_CONSTANT;
  p.step_size = s.step_size;
  p.gamma = s.gamma;
  p.total_steps = s.total_steps;
  p.min_lr = s.min_lr;
  p.warmup_steps = s.warmup_steps;
  p.warmup_start_factor = s.warmup_start_factor;
  return p;
}

// torch.nn.utils.clip_grad_norm_: every gradient times min(1, max_norm / (sqrt(sum of all
// squared gradient elements) + 1e-6)). The squares of each gradient are summed to one element
// (MUL, REDUCE_SUM over every dim), those sums added in parameter order, the factor taken
// (CLIP_COEF) and broadcast onto each gradient (MUL). Returns the clipped gradients.
std::vector<std::pair<Value, Value>> clip_gradients(GraphBuilder& b, const std::vector<std::pair<Value, Value>>& param_grads,
                                                    float max_norm) {
  if (!(max_norm > 0.0f) || !std::isfinite(max_norm))
    throw Error(ErrorKind::invalid_argument,
                fmt::format("optimizer: clip_grad_norm must be a finite number > 0 (0 turns clipping off), got {}", max_norm));
  // Names and shapes are copied: adding nodes may move the graph's values.
  Value total;
  for (const auto& [param, grad] : param_grads) {
    const std::string name = b.graph().value(param).name;
    const int rank = b.graph().value(grad).shape.rank();
    Value squares = b.node(PARITY_OP_MUL, {}, {grad, grad}, "clip/" + name + ".squares")[0];
    parity_op_params sum{};
    sum.reduce_sum.dims = (1u << rank) - 1u;
    Value sum_of_squares = b.reshape(b.node(PARITY_OP_REDUCE_SUM, sum, {squares}, "clip/" + name + ".sumsq")[0],
                                     Shape{1}, "clip/" + name + ".sumsq1");
    total = total.valid() ? b.node(PARITY_OP_ADD, {}, {total, sum_of_squares}, "clip/total." + name)[0]
                          : sum_of_squares;
  }
  parity_op_params clip{};
  clip.clip_coef.max_norm = max_norm;
  const Value coef = b.node(PARITY_OP_CLIP_COEF, clip, {total}, "clip/coef")[0];
  std::vector<std::pair<Value, Value>> clipped;
  for (const auto& [param, grad] : param_grads) {
    const std::string name = b.graph().value(param).name;
    const Shape ones(std::vector<int64_t>(static_cast<size_t>(b.graph().value(grad).shape.rank()), 1));
    const Value factor = ones == Shape{1} ? coef : b.reshape(coef, ones, "clip/coef." + name);
    clipped.emplace_back(param, b.node(PARITY_OP_MUL, {}, {grad, factor}, "clip/" + name)[0]);
  }
  return clipped;
}

// Pruning held during training: each masked gradient times its mask, a STATE value the Trainer
// writes (OptimizerConfig::gradient_masks). Masking before clipping makes the clipped norm that
// of the kept elements, as torch.nn.utils.prune's weight = weight_orig * mask gives. A mask
// naming no parameter of the graph, or of another shape, is refused naming both.
std::vector<std::pair<Value, Value>> mask_gradients(GraphBuilder& b, const std::vector<std::pair<Value, Value>>& param_grads,
                                                    const std::map<std::string, Tensor>& masks) {
  std::set<std::string> used;
  std::vector<std::pair<Value, Value>> masked;
  for (const auto& [param, grad] : param_grads) {
    const std::string name = b.graph().value(param).name;
    const Shape shape = b.graph().value(param).shape;
    auto it = masks.find(name);
    if (it == masks.end()) {
      masked.emplace_back(param, grad);
      continue;
    }
    if (it->second.dtype() != DType::f32 || it->second.shape() != shape)
      throw Error(ErrorKind::shape, fmt::format("optimizer: gradient mask of '{}' is {} {}, the parameter is f32 {}", name,
                                                to_string(it->second.dtype()), it->second.shape().str(), shape.str()));
    used.insert(name);
    const Value mask = b.state(gradient_mask_name(name), shape);
    masked.emplace_back(param, b.node(PARITY_OP_MUL, {}, {grad, mask}, "mask/" + name)[0]);
  }
  for (const auto& entry : masks)
    if (!used.count(entry.first))
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("optimizer: gradient mask '{}' names no trained parameter of the graph", entry.first));
  return masked;
}

}  // namespace

void append_optimizer(GraphBuilder& b, const std::vector<std::pair<Value, Value>>& unmasked_grads,
                      const OptimizerConfig& opt) {
  if (!(opt.lr >= 0.0f)) throw Error(ErrorKind::invalid_argument, fmt::format("optimizer: lr must be >= 0, got {}", opt.lr));
  const std::vector<std::pair<Value, Value>> unclipped_grads =
      opt.gradient_masks.empty() ? unmasked_grads : mask_gradients(b, unmasked_grads, opt.gradient_masks);
  const std::vector<std::pair<Value, Value>> param_grads =
      opt.clip_grad_norm == 0.0f ? unclipped_grads : clip_gradients(b, unclipped_grads, opt.clip_grad_norm);
  // Adam's bias correction and every lr schedule count steps: one INPUT for all updates.
  // (A forward graph for training may hold it already: its dropout nodes draw by step.)
  Value step = b.graph().has(optimizer_step_name()) ? b.graph().find(optimizer_step_name())
                                                    : b.input(optimizer_step_name(), Shape{1}, DType::i32);
  for (const auto& [param, grad] : param_grads) {
    const ValueInfo& info = b.graph().value(param);
    std::string name = info.name;
    Shape shape = info.shape;
    parity_op_params p{};
    if (opt.kind == OptimizerConfig::Kind::sgd) {
      p.sgd.lr = opt.lr;
      p.sgd.momentum = opt.momentum;
      p.sgd.weight_decay = opt.weight_decay;
      p.sgd.nesterov = opt.nesterov ? 1 : 0;
      p.sgd.schedule = schedule_params(opt.schedule);
      Value velocity = b.state(sgd_velocity_name(name), shape);
      b.node(PARITY_OP_SGD_STEP, p, {param, grad, velocity, step}, "sgd/" + name);
    } else {
      p.adam.lr = opt.lr;
      p.adam.beta1 = opt.beta1;
      p.adam.beta2 = opt.beta2;
      p.adam.eps = opt.eps;
      p.adam.weight_decay = opt.weight_decay;
      p.adam.decoupled_weight_decay = opt.kind == OptimizerConfig::Kind::adamw ? 1 : 0;
      p.adam.schedule = schedule_params(opt.schedule);
      Value m = b.state(adam_m_name(name), shape);
      Value v = b.state(adam_v_name(name), shape);
      b.node(PARITY_OP_ADAM_STEP, p, {param, grad, m, v, step}, (opt.kind == OptimizerConfig::Kind::adamw ? "adamw/" : "adam/") + name);
    }
  }
}

Graph differentiate(const Graph& forward, Value loss, const OptimizerConfig* optimizer) {
  const ValueInfo& loss_info = forward.value(loss);
  if (loss_info.shape != Shape{1} || loss_info.dtype != DType::f32)
    throw Error(ErrorKind::shape, fmt::format("differentiate: loss '{}' must be f32 [1], got {} {}", loss_info.name,
                                              to_string(loss_info.dtype), loss_info.shape.str()));
  const std::vector<bool> needs = values_needing_gradient(forward);
  if (!needs[static_cast<size_t>(loss.id)])
    throw Error(ErrorKind::invalid_argument,
                fmt::format("differentiate: loss '{}' does not depend on any parameter", loss_info.name));

  GraphBuilder b(forward);
  // Gradient contributions per forward value, summed in the order they were produced so the
  // result does not depend on anything but the graph.
  std::vector<std::vector<Value>> contributions(forward.values().size());
  auto gradient_of = [&](int32_t value) -> Value {
    std::vector<Value>& parts = contributions[static_cast<size_t>(value)];
    if (parts.empty()) return Value{};
    Value sum = parts[0];
    for (size_t i = 1; i < parts.size(); ++i)
      sum = b.add(sum, parts[i], fmt::format("{}.sum{}", grad_name(forward.values()[static_cast<size_t>(value)].name), i));
    parts.assign(1, sum);
    return sum;
  };

  contributions[static_cast<size_t>(loss.id)].push_back(b.fill(1.0f, grad_name(loss_info.name)));
  for (auto it = forward.nodes().rbegin(); it != forward.nodes().rend(); ++it) {
    const Node& node = *it;
    std::vector<Value> dL_doutputs;
    bool any = false;
    for (int32_t out : node.outputs) {
      Value grad = gradient_of(out);
      // Name every gradient after its value ("grad/conv1"), so reports and dumps read as
      // dL/d(value); a gradient shared by several values keeps the first name it got.
      if (grad.valid() && b.graph().value(grad).name.rfind("grad/", 0) != 0)
        b.rename(grad, grad_name(forward.values()[static_cast<size_t>(out)].name));
      dL_doutputs.push_back(grad);
      any = any || grad.valid();
    }
    if (!any) continue;
    const ops::OpRule& rule = ops::rule(node.op);
    std::vector<bool> needed;
    for (int32_t in : node.inputs) needed.push_back(needs[static_cast<size_t>(in)]);
    if (!rule.gradient) {
      for (bool n : needed)
        if (n)
          throw Error(ErrorKind::invalid_argument,
                      fmt::format("differentiate: {} '{}' has no gradient, but the loss depends on it through a parameter",
                                  rule.name, node.name));
      continue;
    }
    BuilderEmitter emit(b);
    std::vector<Value> dL_dinputs = rule.gradient(emit, node, dL_doutputs, needed);
    for (size_t i = 0; i < node.inputs.size(); ++i)
      if (dL_dinputs[i].valid()) contributions[static_cast<size_t>(node.inputs[i])].push_back(dL_dinputs[i]);
  }

  std::vector<std::pair<Value, Value>> param_grads;
  for (size_t i = 0; i < forward.values().size(); ++i) {
    if (forward.values()[i].kind != PARITY_VALUE_PARAM) continue;
    Value grad = gradient_of(static_cast<int32_t>(i));
    if (!grad.valid()) continue;  // a parameter the loss does not reach
    // A gradient may be shared (add passes dL/dc to both operands); name it only once.
    if (b.graph().value(grad).kind == PARITY_VALUE_TEMP && b.graph().value(grad).name.rfind("grad/", 0) != 0)
      b.rename(grad, grad_name(forward.values()[i].name));
    param_grads.emplace_back(Value{static_cast<int32_t>(i)}, grad);
  }
  if (optimizer) append_optimizer(b, param_grads, *optimizer);
  return b.take();
}

}  // namespace parity
