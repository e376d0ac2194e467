// ops/activation.cpp — the element-wise activations and their backwards, each backward reading
// the forward output: relu (relu'(0) = 0) and sigmoid (torch.sigmoid, dx = dy * y * (1 - y)).
// Per op: validation, shapes, FLOPs, gradient, the argued tolerance and the conformance cases.
#include <cmath>

#include "ops/op_rule.h"

namespace parity::ops {
namespace {
namespace relu {

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

}  // namespace relu

namespace sigmoid {

// exp, add, divide (the negation is free).
double flops_forward(const OpCall& c) { return 3.0 * c.inputs[0]->shape.numel(); }

// Like relu, the backward takes y, not x: y * (1 - y) is the derivative, with no exp to redo.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  return gradient_from_output(b, node, dL_dy, needed, PARITY_OP_SIGMOID_BWD);
}

// subtract, two multiplies.
double flops_backward(const OpCall& c) { return 3.0 * c.inputs[0]->shape.numel(); }

// The backward's y is the forward's output, computed here in double and rounded once.
void sigmoid_cases(std::vector<OpCase>& out, Draw& draw, const Shape& shape, float scale) {
  Tensor x = draw.values(shape, scale);
  Tensor y(shape, DType::f32);
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(x.f32()[i]))));
  const std::string label = shape.str() + (scale > 1 ? " scaled " + std::to_string(int(scale)) + " (saturated)" : "");
  out.push_back({PARITY_OP_SIGMOID, {}, {{x}}, label});
  out.push_back({PARITY_OP_SIGMOID_BWD, {}, {{y}, {draw.values(shape)}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{17, 128}}) sigmoid_cases(out, draw, s, 1.0f);
  // |x| up to 30: exp(-x) spans 1e-13..1e13: y rounds to 1 or falls to ~1e-13.
  sigmoid_cases(out, draw, Shape{4, 33}, 30.0f);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  sigmoid_cases(out, draw, Shape(shape), 1.0f);
}

const ConformanceFamily kCases{"sigmoid*", "the tensor's dims", 1, 6, false, 8, builtin_cases, user_case};

// Forward: expf is within 1-2 ulp on every backend (glibc, CUDA, HIP), and the add and divide
// round once each, so each element is within ~4 * 2^-24 = 2.4e-7 relative of ref's; the NMSE
// is at most that squared, ~6e-14, and 1e-12 leaves a 16x margin, while one element in a
// thousand off by 1e-4 gives ~1e-11 and fails. Backward: 1 - y, and two products, round once
// each: ~2e-7 relative, the same bound. Neither is exact on small integers (the forward's exp
// is never an integer, and the backward's y is the forward's output), so integer_exact is false.
// Inside a step the inputs already carry other nodes' float32 error: 1e-8 as for the others.
const Tolerance kTolerance{1e-12, 1e-8, "float32 expf (1-2 ulp), add and divide: ~2.4e-7 relative per element",
                                  false};

}  // namespace sigmoid
}  // namespace

extern const OpRule relu_rule{"RELU", 1, 1, infer_elementwise_forward, relu::flops_forward, relu::gradient, kExactTolerance, &relu::kCases};
extern const OpRule relu_bwd_rule{"RELU_BWD", 2, 1, infer_elementwise_backward, relu::flops_forward, nullptr, kExactTolerance};

extern const OpRule sigmoid_rule{"SIGMOID", 1, 1, infer_elementwise_forward, sigmoid::flops_forward, sigmoid::gradient, sigmoid::kTolerance, &sigmoid::kCases};
extern const OpRule sigmoid_bwd_rule{"SIGMOID_BWD", 2, 1, infer_elementwise_backward, sigmoid::flops_backward, nullptr, sigmoid::kTolerance};

}  // namespace parity::ops
