// ops/optimizer.cpp — the optimizer steps (Adam, SGD with momentum): in-place updates of a
// parameter and its state, validated against the parameter's shape, and their conformance cases.
#include <cmath>

#include <fmt/format.h>

#include "ops/op_rule.h"

namespace parity::ops {
namespace {

void check_lr(const OpCall& c, const char* op, float lr, float weight_decay) {
  if (!(lr >= 0.0f) || !std::isfinite(lr)) fail(c, op, fmt::format("learning rate must be finite and >= 0, got {}", lr));
  if (!(weight_decay >= 0.0f)) fail(c, op, fmt::format("weight decay must be >= 0, got {}", weight_decay));
}

void check_state(const OpCall& c, const char* op, int first, int last) {
  for (int i = 0; i <= last; ++i) require_dtype(c, i, DType::f32, "operand");
  for (int i = first; i <= last; ++i) require_same_shape(c, 0, i);
  if (c.inputs[0]->kind != PARITY_VALUE_PARAM)
    fail(c, op, fmt::format("'{}' must be a parameter to be updated", c.inputs[0]->name));
}

std::vector<OutputSpec> infer_adam(const OpCall& c) {
  const parity_adam_params& p = c.params.adam;
  check_lr(c, "adam", p.lr, p.weight_decay);
  if (!(p.beta1 >= 0.0f && p.beta1 < 1.0f) || !(p.beta2 >= 0.0f && p.beta2 < 1.0f))
    fail(c, "adam", fmt::format("betas must be in [0, 1), got ({}, {})", p.beta1, p.beta2));
  if (!(p.eps >= 0.0f)) fail(c, "adam", fmt::format("eps must be >= 0, got {}", p.eps));
  check_state(c, "adam", 1, 3);
  require_dtype(c, 4, DType::i32, "step");
  return {};
}

std::vector<OutputSpec> infer_sgd(const OpCall& c) {
  const parity_sgd_params& p = c.params.sgd;
  check_lr(c, "sgd", p.lr, p.weight_decay);
  if (!(p.momentum >= 0.0f)) fail(c, "sgd", fmt::format("momentum must be >= 0, got {}", p.momentum));
  check_state(c, "sgd", 1, 2);
  return {};
}

double flops_adam(const OpCall& c) { return 12.0 * c.inputs[0]->shape.numel(); }
double flops_sgd(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }

// Adam at its first steps and far along (with weight decay once), SGD with and without momentum.
void optimizer_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& dims) {
  const Shape shape(dims);
  for (int32_t step : {1, 2, 1000}) {
    parity_op_params p{};
    p.adam = parity_adam_params{1e-3f, 0.9f, 0.999f, 1e-8f, step == 2 ? 0.01f : 0.0f};
    out.push_back({PARITY_OP_ADAM_STEP, p,
                   {{draw.values(shape), PARITY_VALUE_PARAM}, {draw.values(shape)},
                    {draw.values(shape, 0.1f), PARITY_VALUE_STATE}, {draw.positive(shape, 0.01f), PARITY_VALUE_STATE},
                    {Tensor::from_i32(Shape{1}, {step})}},
                   fmt::format("{} step {}{}", shape.str(), step, step == 2 ? " weight decay 0.01" : "")});
  }
  for (float momentum : {0.0f, 0.9f}) {
    parity_op_params p{};
    p.sgd = parity_sgd_params{0.01f, momentum, 0.0f};
    out.push_back({PARITY_OP_SGD_STEP, p,
                   {{draw.values(shape), PARITY_VALUE_PARAM}, {draw.values(shape)}, {draw.values(shape), PARITY_VALUE_STATE}},
                   fmt::format("{} momentum {:g}", shape.str(), momentum)});
  }
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const std::vector<int64_t>& s : std::vector<std::vector<int64_t>>{{1}, {16, 1, 3, 3}, {10, 128}})
    optimizer_cases(out, draw, s);
}

const ConformanceFamily kCases{"adam_step sgd_step adam sgd", "the parameter's dims", 1, 6, false, 7, builtin_cases,
                               optimizer_cases};

}  // namespace

extern const OpRule adam_step_rule{"ADAM_STEP", 5, 0, infer_adam, flops_adam, nullptr,
    // The update is lr * m / (sqrt(v) + eps) in float32: ~1e-7 relative error on a step of
    // size ~lr. Inside a training step the first update is ~lr * sign(g), and a gradient within
    // rounding of zero may flip sign against ref, moving a weight by 2 lr: 1e-7 allows a few.
    Tolerance{1e-12, 1e-7, "float32 sqrt and division on an update of size lr", false}, &kCases};
extern const OpRule sgd_step_rule{"SGD_STEP", 3, 0, infer_sgd, flops_sgd, nullptr,
    Tolerance{1e-12, 1e-8, "float32 multiply-add on an update of size lr * g", false}};

}  // namespace parity::ops
