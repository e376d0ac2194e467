// ops/optimizer.cpp — the optimizer steps (Adam, SGD with momentum): in-place updates of a
// parameter and its state, validated against the parameter's shape.
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

}  // namespace

extern const OpRule adam_step_rule{"ADAM_STEP", 5, 0, infer_adam, flops_adam, nullptr,
    // The update is lr * m / (sqrt(v) + eps) in float32: ~1e-7 relative error on a step of
    // size ~lr. Inside a training step the first update is ~lr * sign(g), and a gradient within
    // rounding of zero may flip sign against ref, moving a weight by 2 lr: 1e-7 allows a few.
    Tolerance{1e-12, 1e-7, "float32 sqrt and division on an update of size lr", false}};
extern const OpRule sgd_step_rule{"SGD_STEP", 3, 0, infer_sgd, flops_sgd, nullptr,
    Tolerance{1e-12, 1e-8, "float32 multiply-add on an update of size lr * g", false}};

}  // namespace parity::ops
