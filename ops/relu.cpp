// ops/relu.cpp — relu and its backward (relu'(0) = 0, taken from the forward output), and
// their conformance cases.
#include "ops/op_rule.h"

namespace parity::ops {
namespace {

double flops_forward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

// The backward reads the forward output y, not x: y > 0 exactly where x > 0.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  return gradient_from_output(b, node, dL_dy, needed, PARITY_OP_RELU_BWD);
}

// relu's backward reads the forward output, so y is computed here exactly (relu does no arithmetic).
void cases_of_shape(std::vector<OpCase>& out, Draw& draw, const Shape& shape) {
  Tensor x = draw.values(shape);
  draw.add_kinks(x);
  Tensor y = x;
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = y.f32()[i] > 0 ? y.f32()[i] : 0.0f;
  const std::string label = shape.str() + (draw.smooth() ? " away from 0" : " with zeros");
  out.push_back({PARITY_OP_RELU, {}, {{x}}, label});
  out.push_back({PARITY_OP_RELU_BWD, {}, {{y}, {draw.values(shape)}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{17, 128}}) cases_of_shape(out, draw, s);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  cases_of_shape(out, draw, Shape(shape));
}

const ConformanceFamily kCases{"relu*", "the tensor's dims", 1, 6, false, 2, builtin_cases, user_case};

}  // namespace

extern const OpRule relu_rule{"RELU", 1, 1, infer_elementwise_forward, flops_forward, gradient, kExactTolerance, &kCases};
extern const OpRule relu_bwd_rule{"RELU_BWD", 2, 1, infer_elementwise_backward, flops_forward, nullptr, kExactTolerance};

}  // namespace parity::ops
