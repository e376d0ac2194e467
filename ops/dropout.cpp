// ops/dropout.cpp — dropout in training mode (evaluation graphs hold no dropout node): the mask
// is drawn from (seed, step, node, the sample's global index, element) by Philox, so every
// backend draws the same one and the backward draws it again instead of storing it.
#include <cmath>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

void check(const OpCall& c, const char* what) {
  const parity_dropout_params& p = c.params.dropout;
  if (!(p.p >= 0.0f && p.p < 1.0f))
    fail(c, lower_name(c.op), fmt::format("p (the probability of zeroing) must be in [0, 1), got {}", p.p));
  if (p.first_sample < 0)
    fail(c, lower_name(c.op), fmt::format("first_sample must be >= 0, got {}", p.first_sample));
  require_float_operands(c, {{0, what}});
  if (c.inputs[0]->shape.rank() < 1 || c.inputs[0]->shape.numel() == 0)
    fail(c, lower_name(c.op), fmt::format("{} must be a non-empty batch [N, ...], got {}", what, c.inputs[0]->shape.str()));
  if (c.inputs[0]->shape[0] + p.first_sample > INT32_MAX)
    fail(c, lower_name(c.op), fmt::format("first_sample {} + batch {} exceeds the sample counter's 2^31", p.first_sample,
                                          c.inputs[0]->shape[0]));
  require_dtype(c, 1, DType::i32, "step");
  if (c.inputs[1]->shape != Shape{1})
    fail(c, lower_name(c.op), fmt::format("step must be i32 [1], got {}", c.inputs[1]->shape.str()));
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check(c, "input");
  return {{c.inputs[0]->shape, c.inputs[0]->dtype}};
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  check(c, "dy");
  return {{c.inputs[0]->shape, c.inputs[0]->dtype}};
}

// One draw per element (a quarter of a Philox block) and a multiply.
double flops(const OpCall& c) { return 2.0 * double(c.inputs[0]->shape.numel()); }

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}, Value{}};
  return {b.node(PARITY_OP_DROPOUT_BWD, node.params, {dL_dy[0], Value{node.inputs[1]}}, node.name + ".bwd")[0], Value{}};
}

void cases_of(std::vector<OpCase>& out, Draw& draw, const Shape& shape, float p, int32_t step, int32_t first_sample) {
  parity_op_params params{};
  params.dropout.p = p;
  params.dropout.seed_lo = 1234;
  params.dropout.seed_hi = 7;
  params.dropout.node_key = 0x9e3779b9u;
  params.dropout.first_sample = first_sample;
  const std::string label = fmt::format("{} p {} step {} first sample {}", shape.str(), p, step, first_sample);
  const Tensor step_tensor = Tensor::from_i32(Shape{1}, {step});
  out.push_back({PARITY_OP_DROPOUT, params, {{draw.values(shape)}, {step_tensor}}, label});
  out.push_back({PARITY_OP_DROPOUT_BWD, params, {{draw.values(shape)}, {step_tensor}}, label});
}

// Batch 1 with fewer elements than a Philox block, odd sample sizes (a partial last block),
// p = 0 (the identity) and high p, a later step, and a batch that is the second half of a split one.
void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  cases_of(out, draw, Shape{1, 3}, 0.5f, 1, 0);
  cases_of(out, draw, Shape{2, 3, 5, 7}, 0.2f, 1, 0);
  cases_of(out, draw, Shape{17, 128}, 0.5f, 1000, 0);
  cases_of(out, draw, Shape{9, 13}, 0.9f, 3, 0);
  cases_of(out, draw, Shape{4, 10}, 0.0f, 2, 0);
  cases_of(out, draw, Shape{8, 2, 3, 3}, 0.25f, 5, 8);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  cases_of(out, draw, Shape(shape), 0.5f, 1, 0);
}

const ConformanceFamily kCases{"dropout*", "the tensor's dims", 1, 6, false, 16, builtin_cases, user_case};

// The mask is the same draw on every backend (an integer comparison of Philox words), and a
// kept element is x times the float32 scale: one product of two float32 values, exact in ref's
// float64 and rounded once, so bit equality with ref on any input.
const Tolerance kTolerance{0.0, 1e-8, "the same mask, one multiply by the float32 scale: bit equality with ref", true};
// In a half dtype the product of x and the f32 scale is rounded to f32 and then to the half dtype,
// which may differ from ref's one rounding where the f32 product lands on a half tie (a fraction
// ~2^-16 of elements): kHalfScaledSupport.

}  // namespace

extern const OpRule dropout_rule{"DROPOUT", 2, 1, infer_forward, flops, gradient, kTolerance, &kCases, 0,
                                 &kHalfScaledSupport};
extern const OpRule dropout_bwd_rule{"DROPOUT_BWD", 2, 1, infer_backward, flops, nullptr, kTolerance, nullptr, 0,
                                     &kHalfScaledSupport};

}  // namespace parity::ops
