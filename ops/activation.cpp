// ops/activation.cpp — the element-wise activations and their backwards, with PyTorch's
// semantics: relu (relu'(0) = 0), sigmoid and tanh, whose backwards read the forward output;
// leaky_relu (x == 0 takes the slope), gelu (erf form) and hardtanh (gradient 0 at min_val and
// max_val), whose backwards read the forward input. Per op: validation (params included),
// shapes, FLOPs, gradient, the argued tolerance and the conformance cases.
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

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

// ---- shared by the activations whose backward reads the forward input x ----

// The activations that run in their input's dtype (relu, leaky_relu, hardtanh: docs/autocast.md's
// "follow the input"): x -> y of x's shape and dtype (f32, bf16 or f16).
std::vector<OutputSpec> infer_follow_forward(const OpCall& c) {
  return {{c.inputs[0]->shape, require_float_operands(c, {{0, "x"}})}};
}

// Their backward: `first` (y or x) and dy of one shape and one dtype -> dx of that dtype.
std::vector<OutputSpec> infer_follow_backward(const OpCall& c, const char* first) {
  const DType dtype = require_float_operands(c, {{0, first}, {1, "dy"}});
  require_same_shape(c, 0, 1);
  return {{c.inputs[0]->shape, dtype}};
}

std::vector<OutputSpec> infer_relu_backward(const OpCall& c) { return infer_follow_backward(c, "y"); }

// x, dy -> dx of one shape, all f32.
std::vector<OutputSpec> infer_backward_from_input(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "x");
  require_dtype(c, 1, DType::f32, "dy");
  require_same_shape(c, 0, 1);
  return {{c.inputs[0]->shape, DType::f32}};
}

// The backward node takes the forward's input x (not its output) and dy, with the forward's params.
std::vector<Value> gradient_from_input(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                                       const std::vector<bool>& needed, parity_op backward) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  return {b.node(backward, node.params, {Value{node.inputs[0]}, dL_dy[0]}, node.name + ".bwd")[0]};
}

[[noreturn]] void refuse_param(const OpCall& c, const std::string& message) {
  throw Error(ErrorKind::invalid_argument, fmt::format("{} '{}': {}", lower_name(c.op), c.node, message));
}

// One forward case and its backward's, the backward reading `first` (y or x) and a random dy.
void push_pair(std::vector<OpCase>& out, Draw& draw, parity_op forward, parity_op backward,
               const parity_op_params& params, const Tensor& x, const Tensor& first, const std::string& label) {
  out.push_back({forward, params, {{x}}, label});
  out.push_back({backward, params, {{first}, {draw.values(x.shape())}}, label});
}

const Shape kBatchOne{1, 1, 1, 1};
const Shape kOddImage{2, 3, 5, 7};
const Shape kRows{17, 128};

namespace tanh_op {

// One tanhf per element.
double flops_forward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

// Like sigmoid, the backward takes y: 1 - y^2 is the derivative, with no tanh to redo.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  return gradient_from_output(b, node, dL_dy, needed, PARITY_OP_TANH_BWD);
}

// 1 - y, 1 + y, their product, times dy.
double flops_backward(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }

// The backward's y is the forward's output, computed here in double and rounded once.
void tanh_cases(std::vector<OpCase>& out, Draw& draw, const Shape& shape, float scale) {
  Tensor x = draw.values(shape, scale);
  Tensor y(shape, DType::f32);
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = static_cast<float>(std::tanh(double(x.f32()[i])));
  const std::string label = shape.str() + (scale > 1 ? " scaled " + std::to_string(int(scale)) + " (saturated)" : "");
  push_pair(out, draw, PARITY_OP_TANH, PARITY_OP_TANH_BWD, parity_op_params{}, x, y, label);
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& s : {kBatchOne, kOddImage, kRows}) tanh_cases(out, draw, s, 1.0f);
  // |x| up to 30: tanh rounds to +-1 in float32 beyond |x| ~ 9, where the backward gives 0.
  tanh_cases(out, draw, Shape{4, 33}, 30.0f);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  tanh_cases(out, draw, Shape(shape), 1.0f);
}

const ConformanceFamily kCases{"tanh*", "the tensor's dims", 1, 6, false, 9, builtin_cases, user_case};

// Forward: tanhf is within 2 ulp on every backend (glibc, CUDA, HIP; cuDNN's activation on the
// CUDA route), so each element is within ~2 * 2^-24 = 1.2e-7 relative of ref's and the NMSE at
// most ~1.4e-14; 1e-12 leaves a 70x margin and still fails one element in a thousand off by
// 1e-4 (~1e-11). Backward: (1 - y) and (1 + y) are exact or round once, then two products: ~3
// roundings, ~1.8e-7 relative. Not exact on small integers (tanh of an integer is irrational).
const Tolerance kTolerance{1e-12, 1e-8, "float32 tanhf (2 ulp); backward (1 - y)(1 + y) dy: ~3 roundings", false};

}  // namespace tanh_op

namespace leaky_relu {

void check_slope(const OpCall& c) {
  const float slope = c.params.leaky_relu.negative_slope;
  if (!std::isfinite(slope)) refuse_param(c, fmt::format("negative_slope must be finite, got {}", slope));
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_slope(c);
  return infer_follow_forward(c);
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  check_slope(c);
  return infer_follow_backward(c, "x");
}

// One compare-and-multiply per element, forward and backward.
double flops(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

// The backward reads x: at x == 0 the output is 0 either way, and torch's gradient there is the slope's.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  return gradient_from_input(b, node, dL_dy, needed, PARITY_OP_LEAKY_RELU_BWD);
}

// Exact zeros (the kink; gradient mode keeps every value 1e-3 away instead), both branches.
void cases_of_shape(std::vector<OpCase>& out, Draw& draw, const Shape& shape, float slope) {
  Tensor x = draw.values(shape);
  draw.add_kinks(x);
  parity_op_params p{};
  p.leaky_relu.negative_slope = slope;
  const std::string label =
      fmt::format("{} slope {}{}", shape.str(), slope, draw.smooth() ? " away from 0" : " with zeros");
  push_pair(out, draw, PARITY_OP_LEAKY_RELU, PARITY_OP_LEAKY_RELU_BWD, p, x, x, label);
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& s : {kBatchOne, kOddImage, kRows}) cases_of_shape(out, draw, s, 0.01f);  // torch's default
  cases_of_shape(out, draw, Shape{3, 11}, 0.2f);
  cases_of_shape(out, draw, Shape{5, 9}, -1.5f);  // torch allows any finite slope
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  cases_of_shape(out, draw, Shape(shape), 0.01f);
}

const ConformanceFamily kCases{"leaky_relu*", "the tensor's dims", 1, 6, false, 10, builtin_cases, user_case};

// One multiply by the float32 slope, or none: the product of two float32 values is exact in
// float64, so ref's result rounded to float32 is the correctly rounded float32 product every
// backend computes, bit for bit, forward and backward, on any input.
const Tolerance kTolerance{0.0, 1e-8, "one multiply by the slope, rounded once: bit equality with ref", true};

}  // namespace leaky_relu

namespace gelu {

// -x / sqrt 2, erfc, two multiplies.
double flops_forward(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }

// The backward reads x: Phi(x) + x phi(x) needs x itself, which y does not give back cheaply.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  return gradient_from_input(b, node, dL_dy, needed, PARITY_OP_GELU_BWD);
}

// x^2, two scalings, exp, erfc and its scaling, x * pdf, the add, times dy.
double flops_backward(const OpCall& c) { return 10.0 * c.inputs[0]->shape.numel(); }

void gelu_cases(std::vector<OpCase>& out, Draw& draw, const Shape& shape, float scale) {
  Tensor x = draw.values(shape, scale);
  const std::string label = shape.str() + (scale > 1 ? " scaled " + std::to_string(int(scale)) + " (tails)" : "");
  push_pair(out, draw, PARITY_OP_GELU, PARITY_OP_GELU_BWD, parity_op_params{}, x, x, label);
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& s : {kBatchOne, kOddImage, kRows}) gelu_cases(out, draw, s, 1.0f);
  // |x| up to 12: Phi(x) rounds to 1 above ~5.5, and below ~-5 y underflows toward 0.
  gelu_cases(out, draw, Shape{4, 33}, 12.0f);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  gelu_cases(out, draw, Shape(shape), 1.0f);
}

const ConformanceFamily kCases{"gelu*", "the tensor's dims", 1, 6, false, 11, builtin_cases, user_case};

// Forward: -x / sqrt 2 rounds once, erfcf is within 4 ulp (CUDA's bound; glibc's is smaller),
// the two products round once each: ~6 * 2^-24 = 3.6e-7 relative per element, NMSE at most
// ~1.3e-13, under 1e-12 by 8x; one element in a thousand off by 1e-4 (~1e-11) still fails.
// Backward: expf (2 ulp) and erfcf (4 ulp) and ~6 roundings, ~7e-7 relative per term; the sum
// Phi(x) + x phi(x) cancels near x = -0.75, but there the error is absolute, ~1e-7 of terms
// below 0.3, which the NMSE (normalised by the whole tensor) does not notice. Not exact on
// small integers (erfc of an integer is irrational).
const Tolerance kTolerance{1e-12, 1e-8, "float32 erfcf (4 ulp) and expf (2 ulp) with ~6 roundings: ~7e-7 relative",
                           false};

}  // namespace gelu

namespace hardtanh {

void check_range(const OpCall& c) {
  const parity_hardtanh_params& p = c.params.hardtanh;
  if (std::isnan(p.min_val) || std::isnan(p.max_val))
    refuse_param(c, fmt::format("min_val and max_val must not be NaN, got min_val {} max_val {}", p.min_val, p.max_val));
  if (p.min_val > p.max_val)
    refuse_param(c, fmt::format("min_val must be <= max_val, got min_val {} > max_val {}", p.min_val, p.max_val));
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_range(c);
  return infer_follow_forward(c);
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  check_range(c);
  return infer_follow_backward(c, "x");
}

// Two comparisons per element, forward and backward.
double flops(const OpCall& c) { return 2.0 * c.inputs[0]->shape.numel(); }

// The backward reads x: at y == min_val or max_val, y cannot tell a clamped x from one exactly at the bound.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  return gradient_from_input(b, node, dL_dy, needed, PARITY_OP_HARDTANH_BWD);
}

// Values spread past both bounds. Plain and exact modes put x exactly at min_val and max_val
// (torch's gradient there is 0); gradient mode moves every value at least 1e-3 from them, so a
// finite-difference step crosses no kink.
void cases_of_shape(std::vector<OpCase>& out, Draw& draw, const Shape& shape, float min_val, float max_val) {
  const float mid = 0.5f * (min_val + max_val), half = 0.5f * (max_val - min_val);
  Tensor x = draw.values(shape, 1.5f * half);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] += mid;
  float* v = x.f32();
  if (draw.smooth()) {
    for (int64_t i = 0; i < x.numel(); ++i)
      for (float bound : {min_val, max_val})
        if (std::fabs(v[i] - bound) < 1e-3f) v[i] = bound + (v[i] < bound ? -2e-3f : 2e-3f);
  } else {
    for (int64_t i = 0; i < x.numel(); i += 5) v[i] = (i / 5) % 2 == 0 ? min_val : max_val;
  }
  parity_op_params p{};
  p.hardtanh.min_val = min_val;
  p.hardtanh.max_val = max_val;
  const std::string label = fmt::format("{} [{}, {}]{}", shape.str(), min_val, max_val,
                                        draw.smooth() ? " away from the bounds" : " with x at both bounds");
  push_pair(out, draw, PARITY_OP_HARDTANH, PARITY_OP_HARDTANH_BWD, p, x, x, label);
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& s : {kBatchOne, kOddImage, kRows}) cases_of_shape(out, draw, s, -1.0f, 1.0f);  // torch's defaults
  cases_of_shape(out, draw, Shape{3, 11}, 0.0f, 6.0f);                                             // relu6
  cases_of_shape(out, draw, Shape{5, 9}, -0.25f, 0.5f);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  cases_of_shape(out, draw, Shape(shape), -1.0f, 1.0f);
}

const ConformanceFamily kCases{"hardtanh*", "the tensor's dims", 1, 6, false, 12, builtin_cases, user_case};

}  // namespace hardtanh
}  // namespace

extern const OpRule relu_rule{"RELU", 1, 1, infer_follow_forward, relu::flops_forward, relu::gradient, kExactTolerance, &relu::kCases, 0, &kHalfExactSupport};
extern const OpRule relu_bwd_rule{"RELU_BWD", 2, 1, infer_relu_backward, relu::flops_forward, nullptr, kExactTolerance, nullptr, 0, &kHalfExactSupport};

extern const OpRule sigmoid_rule{"SIGMOID", 1, 1, infer_elementwise_forward, sigmoid::flops_forward, sigmoid::gradient, sigmoid::kTolerance, &sigmoid::kCases};
extern const OpRule sigmoid_bwd_rule{"SIGMOID_BWD", 2, 1, infer_elementwise_backward, sigmoid::flops_backward, nullptr, sigmoid::kTolerance};

extern const OpRule tanh_rule{"TANH", 1, 1, infer_elementwise_forward, tanh_op::flops_forward, tanh_op::gradient, tanh_op::kTolerance, &tanh_op::kCases};
extern const OpRule tanh_bwd_rule{"TANH_BWD", 2, 1, infer_elementwise_backward, tanh_op::flops_backward, nullptr, tanh_op::kTolerance};

extern const OpRule leaky_relu_rule{"LEAKY_RELU", 1, 1, leaky_relu::infer_forward, leaky_relu::flops, leaky_relu::gradient, leaky_relu::kTolerance, &leaky_relu::kCases, 0, &kHalfScaledSupport};
extern const OpRule leaky_relu_bwd_rule{"LEAKY_RELU_BWD", 2, 1, leaky_relu::infer_backward, leaky_relu::flops, nullptr, leaky_relu::kTolerance, nullptr, 0, &kHalfScaledSupport};

extern const OpRule gelu_rule{"GELU", 1, 1, infer_elementwise_forward, gelu::flops_forward, gelu::gradient, gelu::kTolerance, &gelu::kCases};
extern const OpRule gelu_bwd_rule{"GELU_BWD", 2, 1, infer_backward_from_input, gelu::flops_backward, nullptr, gelu::kTolerance};

extern const OpRule hardtanh_rule{"HARDTANH", 1, 1, hardtanh::infer_forward, hardtanh::flops, hardtanh::gradient, kExactTolerance, &hardtanh::kCases, 0, &kHalfExactSupport};
extern const OpRule hardtanh_bwd_rule{"HARDTANH_BWD", 2, 1, hardtanh::infer_backward, hardtanh::flops, nullptr, kExactTolerance, nullptr, 0, &kHalfExactSupport};

}  // namespace parity::ops
