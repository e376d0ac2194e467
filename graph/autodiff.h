// graph/autodiff.h — the NodeEmitter (ops/op_rule.h) the gradient rules write through, over a
// GraphBuilder: used by differentiate() and by `parity check ops --gradient`.
#pragma once

#include "ops/op_rule.h"
#include "parity/graph.h"

namespace parity {

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
