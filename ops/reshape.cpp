// ops/reshape.cpp — reshape (same elements, new shape); the target shape is the output value's.
// Its conformance cases come with add's (ops/add.cpp).
#include "ops/op_rule.h"

namespace parity::ops {
namespace {

// The builder passes the target shape through GraphBuilder::reshape, which checks the element
// count; the node itself carries no params, so inference here only preserves the input.
// Any dtype moves: f32, i32 and the half dtypes (as bits).
std::vector<OutputSpec> infer(const OpCall& c) { return {{c.inputs[0]->shape, c.inputs[0]->dtype}}; }

double flops(const OpCall&) { return 0.0; }

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  const Shape x = b.value(Value{node.inputs[0]}).shape;  // a copy: the reshape adds values
  return {b.reshape(dL_dy[0], x, node.name + ".bwd")};
}

}  // namespace

extern const OpRule reshape_rule{"RESHAPE", 1, 1, infer, flops, gradient, kExactTolerance, nullptr, 0,
                                 &kHalfExactSupport};

}  // namespace parity::ops
