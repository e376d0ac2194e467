// ops/optimizer.cpp — the optimizer steps (Adam/AdamW, SGD with (Nesterov) momentum, lr schedules): in-place updates of a
// parameter and its state, validated against the parameter's shape; clip_coef, the factor of
// gradient-norm clipping; and their conformance cases.
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

void check_schedule(const OpCall& c, const char* op, const parity_lr_schedule& s) {
  if (s.kind < PARITY_LR_CONSTANT || s.kind >= PARITY_LR_SCHEDULE_COUNT)
    fail(c, op, fmt::format("schedule kind must be constant (0), step (1) or cosine (2), got {}", s.kind));
  if (s.kind == PARITY_LR_STEP) {
    if (s.step_size <= 0) fail(c, op, fmt::format("step schedule: step_size must be > 0, got {}", s.step_size));
    if (!(s.gamma >= 0.0f) || !std::isfinite(s.gamma))
      fail(c, op, fmt::format("step schedule: gamma must be finite and >= 0, got {}", s.gamma));
  }
  if (s.kind == PARITY_LR_COSINE) {
    if (s.total_steps <= 0) fail(c, op, fmt::format("cosine schedule: total_steps must be > 0, got {}", s.total_steps));
    if (!(s.min_lr >= 0.0f) || !std::isfinite(s.min_lr))
      fail(c, op, fmt::format("cosine schedule: min_lr must be finite and >= 0, got {}", s.min_lr));
  }
  if (s.warmup_steps < 0) fail(c, op, fmt::format("warmup_steps must be >= 0, got {}", s.warmup_steps));
  if (s.warmup_steps > 0 && !(s.warmup_start_factor > 0.0f && s.warmup_start_factor <= 1.0f))
    fail(c, op, fmt::format("warmup_start_factor must be in (0, 1], got {}", s.warmup_start_factor));
}

std::vector<OutputSpec> infer_adam(const OpCall& c) {
  const parity_adam_params& p = c.params.adam;
  check_lr(c, "adam", p.lr, p.weight_decay);
  check_schedule(c, "adam", p.schedule);
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
  check_schedule(c, "sgd", p.schedule);
  if (!(p.momentum >= 0.0f)) fail(c, "sgd", fmt::format("momentum must be >= 0, got {}", p.momentum));
  if (p.nesterov && !(p.momentum > 0.0f))
    fail(c, "sgd", fmt::format("nesterov momentum needs momentum > 0, got {}", p.momentum));
  check_state(c, "sgd", 1, 2);
  require_dtype(c, 3, DType::i32, "step");
  return {};
}

double flops_adam(const OpCall& c) { return 12.0 * c.inputs[0]->shape.numel(); }
double flops_sgd(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }

parity_lr_schedule schedule_of(parity_lr_schedule_kind kind, int32_t warmup_steps) {
  parity_lr_schedule s{};
  s.kind = kind;
  s.step_size = 3;
  s.gamma = 0.5f;
  s.total_steps = 10;
  s.min_lr = 1e-5f;
  s.warmup_steps = warmup_steps;
  s.warmup_start_factor = 0.25f;
  return s;
}

// Adam at its first steps and far along (with L2 weight decay once), AdamW, SGD with and
// without (Nesterov) momentum and weight decay, and each lr schedule inside and past its
// warmup, at steps where the step schedule has decayed and the cosine is mid-way.
void optimizer_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& dims) {
  const Shape shape(dims);
  auto adam = [&](int32_t step, const parity_adam_params& hp, const std::string& what) {
    parity_op_params p{};
    p.adam = hp;
    out.push_back({PARITY_OP_ADAM_STEP, p,
                   {{draw.values(shape), PARITY_VALUE_PARAM}, {draw.values(shape)},
                    {draw.values(shape, 0.1f), PARITY_VALUE_STATE}, {draw.positive(shape, 0.01f), PARITY_VALUE_STATE},
                    {Tensor::from_i32(Shape{1}, {step})}},
                   fmt::format("{} step {}{}", shape.str(), step, what)});
  };
  auto sgd = [&](int32_t step, const parity_sgd_params& hp, const std::string& what) {
    parity_op_params p{};
    p.sgd = hp;
    out.push_back({PARITY_OP_SGD_STEP, p,
                   {{draw.values(shape), PARITY_VALUE_PARAM}, {draw.values(shape)},
                    {draw.values(shape), PARITY_VALUE_STATE}, {Tensor::from_i32(Shape{1}, {step})}},
                   fmt::format("{} step {}{}", shape.str(), step, what)});
  };
  auto adam_params = [](float weight_decay) {
    parity_adam_params hp{};
    hp.lr = 1e-3f;
    hp.beta1 = 0.9f;
    hp.beta2 = 0.999f;
    hp.eps = 1e-8f;
    hp.weight_decay = weight_decay;
    return hp;
  };
  auto sgd_params = [](float momentum, float weight_decay) {
    parity_sgd_params hp{};
    hp.lr = 0.01f;
    hp.momentum = momentum;
    hp.weight_decay = weight_decay;
    return hp;
  };
  for (int32_t step : {1, 2, 1000}) adam(step, adam_params(step == 2 ? 0.01f : 0.0f), step == 2 ? " weight decay 0.01" : "");
  parity_adam_params adamw = adam_params(0.05f);
  adamw.decoupled_weight_decay = 1;
  adam(7, adamw, " AdamW weight decay 0.05");
  adamw.schedule = schedule_of(PARITY_LR_COSINE, 2);
  adam(1, adamw, " AdamW cosine schedule in warmup");
  adam(6, adamw, " AdamW cosine schedule after warmup");
  for (float momentum : {0.0f, 0.9f}) sgd(1, sgd_params(momentum, 0.0f), fmt::format(" momentum {:g}", momentum));
  parity_sgd_params nesterov = sgd_params(0.9f, 1e-3f);
  nesterov.nesterov = 1;
  sgd(2, nesterov, " Nesterov momentum 0.9 weight decay 1e-3");
  nesterov.schedule = schedule_of(PARITY_LR_STEP, 0);
  sgd(8, nesterov, " step schedule (gamma 0.5 every 3 steps)");
  nesterov.schedule = schedule_of(PARITY_LR_STEP, 4);
  sgd(3, nesterov, " step schedule in linear warmup");
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const std::vector<int64_t>& s : std::vector<std::vector<int64_t>>{{1}, {16, 1, 3, 3}, {10, 128}})
    optimizer_cases(out, draw, s);
}

std::vector<OutputSpec> infer_clip_coef(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "sum of squares");
  const float max_norm = c.params.clip_coef.max_norm;
  if (!(max_norm > 0.0f) || !std::isfinite(max_norm))
    fail(c, "clip_coef", fmt::format("max_norm must be finite and > 0, got {}", max_norm));
  if (c.inputs[0]->shape.numel() != 1)
    fail(c, "clip_coef",
         fmt::format("'{}' must hold one element (the sum of squares), got {}", c.inputs[0]->name,
                     c.inputs[0]->shape.str()));
  return {{Shape{1}, DType::f32}};
}

double flops_clip_coef(const OpCall&) { return 4.0; }

// Norms below, at and above max_norm (the factor 1, then max_norm / norm), a zero gradient, and
// an infinite norm (factor 0, as torch gives without error_if_nonfinite).
void clip_coef_cases(std::vector<OpCase>& out, Draw&) {
  for (const auto& [sum_of_squares, max_norm] :
       std::vector<std::pair<float, float>>{{0.25f, 1.0f}, {1.0f, 1.0f}, {30.0f, 1.0f}, {1e6f, 5.0f}, {0.0f, 0.5f},
                                            {INFINITY, 1.0f}}) {
    parity_op_params p{};
    p.clip_coef.max_norm = max_norm;
    out.push_back({PARITY_OP_CLIP_COEF, p, {{Tensor::from_f32(Shape{1}, {sum_of_squares})}},
                   fmt::format("sum of squares {:g}, max_norm {:g}", sum_of_squares, max_norm)});
  }
}

const ConformanceFamily kClipCases{"", "", 0, 0, false, 20, clip_coef_cases, nullptr};

const ConformanceFamily kCases{"adam_step sgd_step adam sgd", "the parameter's dims", 1, 6, false, 7, builtin_cases,
                               optimizer_cases};

}  // namespace

extern const OpRule adam_step_rule{"ADAM_STEP", 5, 0, infer_adam, flops_adam, nullptr,
    // The update is lr * m / (sqrt(v) + eps) in float32: ~1e-7 relative error on a step of
    // size ~lr. Inside a training step the first update is ~lr * sign(g), and a gradient within
    // rounding of zero may flip sign against ref, moving a weight by 2 lr: 1e-7 allows a few.
    Tolerance{1e-12, 1e-7, "float32 sqrt and division on an update of size lr", false}, &kCases};
extern const OpRule sgd_step_rule{"SGD_STEP", 4, 0, infer_sgd, flops_sgd, nullptr,
    Tolerance{1e-12, 1e-8, "float32 multiply-add on an update of size lr * g", false}};
extern const OpRule clip_coef_rule{"CLIP_COEF", 1, 1, infer_clip_coef, flops_clip_coef, nullptr,
    // sqrtf, one add, one division and a comparison: within ~2 ulp of ref's factor rounded.
    Tolerance{1e-12, 1e-10, "float32 sqrt, add and division on one scalar", false}, &kClipCases};

}  // namespace parity::ops
