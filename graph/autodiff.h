// graph/autodiff.h — the NodeEmitter (ops/op_rule.h) the gradient rules write through, over a
// GraphBuilder: used by differentiate() and by `parity check ops --gradient`; and the optimizer
// nodes differentiate appends, for the loss-scaled training graphs (graph/loss_scale.h).
#pragma once

#include "ops/op_rule.h"
#include "parity/graph.h"

namespace parity {

// The optimizer's nodes for (PARAM, its f32 gradient) pairs, as differentiate appends them: the
// gradient masks, clipping, and one update node per parameter reading the INPUT optimizer.step.
void append_optimizer(GraphBuilder& b, const std::vector<std::pair<Value, Value>>& param_grads,
                      const OptimizerConfig& opt);

class BuilderEmitter final : public ops::NodeEmitter {
 public:
  explicit BuilderEmitter(GraphBuilder& builder) : builder_(builder) {}
  std::vector<Value> node(parity_op op, const parity_op_params& params, const std::vector<Value>& inputs,
                          const std::string& name) override {
    return builder_.node(op, params, inputs, name);
  }
  Value reshape(Value x, const Shape& shape, const std::string& name) override {
    return builder_.reshape(x, shape, name);
  }
  const ValueInfo& value(Value v) const override { return builder_.graph().value(v); }

 private:
  GraphBuilder& builder_;
};

}  // namespace parity
