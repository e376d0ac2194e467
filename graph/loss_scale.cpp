// graph/loss_scale.cpp — builds the gradients and update graphs of a loss-scaled training step
// (graph/loss_scale.h).
#include "graph/loss_scale.h"

#include <algorithm>

#include <fmt/format.h>

#include "graph/autodiff.h"
#include "parity/error.h"

namespace parity {
namespace {

// A [1] value as a value of rank `rank` with every dim 1, to broadcast onto a tensor (MUL).
Value broadcastable(GraphBuilder& b, Value v, int rank, const std::string& name) {
  const Shape ones(std::vector<int64_t>(static_cast<size_t>(rank), 1));
  return ones == Shape{1} ? v : b.reshape(v, ones, name);
}

}  // namespace

LossScaledTraining differentiate_loss_scaled(const Graph& forward, Value loss, const OptimizerConfig& optimizer) {
  LossScaledTraining out;
  GraphBuilder scaled(forward);
  const Value scale = scaled.input(loss_scale_name(), Shape{1});
  const Value scaled_loss = scaled.mul(loss, scale, forward.value(loss).name + ".scaled");
  Graph with_scale = scaled.take();
  Graph trained = differentiate(with_scale, scaled_loss, nullptr);

  GraphBuilder g(std::move(trained));
  const Value inverse = g.input(loss_scale_inverse_name(), Shape{1});
  const Value zero = g.fill(0.0f, "found_inf.zero");
  Value found;
  for (size_t i = 0; i < forward.values().size(); ++i) {
    const ValueInfo info = forward.values()[i];
    if (info.kind != PARITY_VALUE_PARAM || !g.graph().has(grad_name(info.name))) continue;
    out.params.push_back(info.name);
    const Value grad = g.graph().find(grad_name(info.name));
    const int rank = info.shape.rank();
    const Value unscaled =
        g.mul(grad, broadcastable(g, inverse, rank, "loss_scale.inverse." + info.name), unscaled_grad_name(info.name));
    const Value zeros = g.mul(unscaled, broadcastable(g, zero, rank, "found_inf.zero." + info.name),
                              "found_inf/" + info.name + ".zeros");
    parity_op_params all{};
    all.reduce_sum.dims = (1u << rank) - 1u;
    const Value sum = g.reshape(g.node(PARITY_OP_REDUCE_SUM, all, {zeros}, "found_inf/" + info.name + ".sum")[0],
                                Shape{1}, "found_inf/" + info.name);
    found = found.valid() ? g.add(found, sum, "found_inf.after." + info.name) : sum;
  }
  if (!found.valid())
    throw Error(ErrorKind::invalid_argument,
                fmt::format("loss scaling: loss '{}' reaches no parameter", forward.value(loss).name));
  g.rename(found, found_inf_name());
  out.gradients = g.take();

  GraphBuilder u;
  std::vector<std::pair<Value, Value>> param_grads;
  for (const ValueInfo& v : out.gradients.values()) {
    if (v.kind == PARITY_VALUE_STATE) u.state(v.name, v.shape);
    if (v.kind != PARITY_VALUE_PARAM) continue;
    const Value p = u.parameter(v.name, v.shape);
    if (std::find(out.params.begin(), out.params.end(), v.name) != out.params.end())
      param_grads.emplace_back(p, u.input(grad_name(v.name), v.shape));
  }
  append_optimizer(u, param_grads, optimizer);
  out.update = u.take();
  return out;
}

}  // namespace parity
