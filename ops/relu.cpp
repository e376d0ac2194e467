// ops/relu.cpp — relu and its backward (relu'(0) = 0, taken from the forward output).
#include "ops/op_rule.h"

namespace parity::ops {
namespace {

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "input");
  return {{c.inputs[0]->shape, DType::f32}};
}

double flops_forward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

// The backward reads the forward output y, not x: y > 0 exactly where x > 0.
std::vector<Value> gradient(GraphBuilder& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  return {b.node(PARITY_OP_RELU_BWD, node.params, {Value{node.outputs[0]}, dL_dy[0]}, node.name + ".bwd")[0]};
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "y");
  require_dtype(c, 1, DType::f32, "dy");
  require_same_shape(c, 0, 1);
  return {{c.inputs[0]->shape, DType::f32}};
}

}  // namespace

extern const OpRule relu_rule{"RELU", 1, 1, infer_forward, flops_forward, gradient, kExactTolerance};
extern const OpRule relu_bwd_rule{"RELU_BWD", 2, 1, infer_backward, flops_forward, nullptr, kExactTolerance};

}  // namespace parity::ops
