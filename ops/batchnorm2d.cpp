// ops/batchnorm2d.cpp — 2-D batch normalization (torch.nn.BatchNorm2d; the running statistics
// of PyTorch or ONNX): training with its in-place running-statistics update, evaluation, the
// backward of both, validation naming node, parameter and rule, and the conformance cases.
#include <cmath>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

static_assert(sizeof(parity_batchnorm2d_params) <= 64 && sizeof(parity_op_params) == 64,
              "parity_batchnorm2d_params must fit the 64-byte params union");

void check_params(const OpCall& c, const char* op) {
  const parity_batchnorm2d_params& p = c.params.batchnorm2d;
  if (!(p.eps > 0.0f) || !std::isfinite(p.eps)) fail(c, op, fmt::format("eps must be finite and > 0, got {}", p.eps));
  if (!(p.momentum >= 0.0f && p.momentum <= 1.0f))
    fail(c, op, fmt::format("momentum must be in [0, 1], got {}", p.momentum));
  if (p.convention != PARITY_BATCHNORM_PYTORCH && p.convention != PARITY_BATCHNORM_ONNX)
    fail(c, op, fmt::format("convention must be PARITY_BATCHNORM_PYTORCH (0) or PARITY_BATCHNORM_ONNX (1), got {}",
                            p.convention));
  if (p.training != 0 && p.training != 1) fail(c, op, fmt::format("training must be 0 or 1, got {}", p.training));
}

// x [N,C,H,W] f32 (input 0), and the inputs `channel_inputs` f32 [C] each (named by `what`).
void check_operands(const OpCall& c, const char* op, std::initializer_list<std::pair<int, const char*>> channel_inputs) {
  require_rank(c, 0, 4, "input");
  require_dtype(c, 0, DType::f32, "input");
  const Shape& x = c.inputs[0]->shape;
  for (const auto& [slot, what] : channel_inputs) {
    require_dtype(c, slot, DType::f32, what);
    const Shape& s = c.inputs[static_cast<size_t>(slot)]->shape;
    if (s.rank() != 1 || s[0] != x[1])
      fail(c, op, fmt::format("{} '{}' must be [C] = [{}] for input {}, got {}", what, c.inputs[static_cast<size_t>(slot)]->name,
                              x[1], x.str(), s.str()));
  }
}

std::vector<OutputSpec> infer_train(const OpCall& c) {
  check_params(c, "batchnorm2d_train");
  check_operands(c, "batchnorm2d_train",
                 {{1, "gamma"}, {2, "beta"}, {3, "running_mean"}, {4, "running_var"}});
  for (int slot : {3, 4})
    if (c.inputs[static_cast<size_t>(slot)]->kind == PARITY_VALUE_TEMP)
      fail(c, "batchnorm2d_train",
           fmt::format("'{}' is updated in place, so it must be a state (or an input), not a temporary",
                       c.inputs[static_cast<size_t>(slot)]->name));
  const Shape& x = c.inputs[0]->shape;
  if (c.params.batchnorm2d.convention == PARITY_BATCHNORM_PYTORCH && x[0] * x[2] * x[3] < 2)
    fail(c, "batchnorm2d_train",
         fmt::format("training needs more than 1 value per channel (N*H*W of {} is {}; PyTorch raises, and its "
                     "unbiased running variance divides by N*H*W - 1; the ONNX convention allows it)",
                     x.str(), x[0] * x[2] * x[3]));
  const Shape channels{x[1]};
  return {{x, DType::f32}, {channels, DType::f32}, {channels, DType::f32}};
}

std::vector<OutputSpec> infer_eval(const OpCall& c) {
  check_params(c, "batchnorm2d_eval");
  check_operands(c, "batchnorm2d_eval", {{1, "gamma"}, {2, "beta"}, {3, "running_mean"}, {4, "running_var"}});
  return {{c.inputs[0]->shape, DType::f32}};
}

std::vector<OutputSpec> infer_bwd(const OpCall& c) {
  check_params(c, "batchnorm2d_bwd");
  const bool training = c.params.batchnorm2d.training != 0;
  check_operands(c, "batchnorm2d_bwd",
                 {{2, "gamma"}, {3, training ? "saved_mean" : "running_mean"}, {4, training ? "saved_invstd" : "running_var"}});
  require_dtype(c, 1, DType::f32, "dy");
  require_same_shape(c, 0, 1);
  const Shape& x = c.inputs[0]->shape;
  const Shape channels{x[1]};
  return {{x, DType::f32}, {channels, DType::f32}, {channels, DType::f32}};
}

// Training: the mean's sum, the shifted sums of d and d^2 (3), the normalisation (4); evaluation
// the normalisation; the backward two sums (3) and dx (5).
double flops_train(const OpCall& c) { return 8.0 * c.inputs[0]->shape.numel(); }
double flops_eval(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }
double flops_bwd(const OpCall& c) { return 8.0 * c.inputs[0]->shape.numel(); }

// x, gamma, beta receive gradients from one BATCHNORM2D_BWD; the running statistics none.
// TRAIN's saved mean and inverse std are not differentiable (nondifferentiable_outputs), so only
// dL/dy is read.
std::vector<Value> gradient_of(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                               const std::vector<bool>& needed, bool training) {
  std::vector<Value> grads(node.inputs.size());
  if (!dL_dy[0].valid() || !(needed[0] || needed[1] || needed[2])) return grads;
  parity_op_params p = node.params;
  p.batchnorm2d.training = training ? 1 : 0;
  const Value x{node.inputs[0]}, gamma{node.inputs[1]};
  const Value mean{training ? node.outputs[1] : node.inputs[3]}, stat{training ? node.outputs[2] : node.inputs[4]};
  std::vector<Value> d = b.node(PARITY_OP_BATCHNORM2D_BWD, p, {x, dL_dy[0], gamma, mean, stat}, node.name + ".bwd");
  for (int i = 0; i < 3; ++i)
    if (needed[static_cast<size_t>(i)]) grads[static_cast<size_t>(i)] = d[static_cast<size_t>(i)];
  return grads;
}

std::vector<Value> gradient_train(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                                  const std::vector<bool>& needed) {
  return gradient_of(b, node, dL_dy, needed, true);
}

std::vector<Value> gradient_eval(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                                 const std::vector<bool>& needed) {
  return gradient_of(b, node, dL_dy, needed, false);
}

// --- conformance cases ----------------------------------------------------------------------------

// How a case's x is drawn: uniform, or with one channel constant (variance 0: y = beta exactly,
// so the constant is 0.75, whose sums stay exact in float32), or every value offset by a large
// mean (catastrophic cancellation in a one-pass variance).
enum class Variant { plain, constant_channel, offset };

// The batch statistics in float64 rounded to float32, as a training forward saves them: the
// backward's cases read x with its own saved statistics.
void batch_statistics(const Tensor& x, Tensor& mean, Tensor& invstd, float eps) {
  const Shape& s = x.shape();
  const int64_t n = s[0], c = s[1], hw = s[2] * s[3];
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0.0, m2 = 0.0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < hw; ++i) sum += x.f32()[(b * c + ch) * hw + i];
    const double m = sum / double(n * hw);
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < hw; ++i) m2 += std::pow(x.f32()[(b * c + ch) * hw + i] - m, 2);
    mean.f32()[ch] = static_cast<float>(m);
    invstd.f32()[ch] = static_cast<float>(1.0 / std::sqrt(m2 / double(n * hw) + eps));
  }
}

void cases_of(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d, Variant variant) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
  const Shape xs{n, c, h, w}, cs{c};
  Tensor x = draw.values(xs);
  std::string what;
  if (variant == Variant::constant_channel) {
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < h * w; ++i) x.f32()[(b * c + c / 2) * h * w + i] = 0.75f;
    what = fmt::format(", channel {} constant", c / 2);
  } else if (variant == Variant::offset) {
    // Half an ulp of the offset is what a float32 saved mean is off by; in the gradient check it
    // shifts the backward's x_hat by that over the std (batchnorm2d_bwd's tolerance), so that
    // check takes 100 and the others 1000.
    const float offset = draw.smooth() ? 100.0f : 1000.0f;
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] += offset;
    what = fmt::format(", mean offset {:g}", offset);
  }
  const Tensor gamma = draw.values(cs), beta = draw.values(cs);
  const std::string shape = fmt::format("x[{},{},{},{}]{}", n, c, h, w, what);
  for (int convention : {PARITY_BATCHNORM_PYTORCH, PARITY_BATCHNORM_ONNX}) {
    if (convention == PARITY_BATCHNORM_PYTORCH && n * h * w < 2) continue;  // refused: see infer_train
    parity_op_params p{};
    p.batchnorm2d.eps = 1e-5f;
    p.batchnorm2d.momentum = convention == PARITY_BATCHNORM_ONNX ? 0.9f : 0.1f;
    p.batchnorm2d.convention = convention;
    p.batchnorm2d.training = 1;
    out.push_back({PARITY_OP_BATCHNORM2D_TRAIN, p,
                   {{x}, {gamma}, {beta}, {draw.values(cs), PARITY_VALUE_STATE},
                    {draw.positive(cs, 2.0f), PARITY_VALUE_STATE}},
                   fmt::format("{} training, {} running statistics", shape,
                               convention == PARITY_BATCHNORM_ONNX ? "ONNX (momentum 0.9)" : "PyTorch (momentum 0.1)")});
  }
  parity_op_params p{};
  p.batchnorm2d.eps = 1e-5f;
  // Evaluation around the batch's own statistics (a trained model's running ones are near them).
  Tensor mean(cs, DType::f32), invstd(cs, DType::f32), running_var(cs, DType::f32);
  batch_statistics(x, mean, invstd, p.batchnorm2d.eps);
  for (int64_t ch = 0; ch < c; ++ch)
    running_var.f32()[ch] = 1.0f / (invstd.f32()[ch] * invstd.f32()[ch]) * (0.5f + draw.positive(Shape{1}, 1.0f).f32()[0]);
  out.push_back({PARITY_OP_BATCHNORM2D_EVAL, p, {{x}, {gamma}, {beta}, {mean}, {running_var}}, shape + " evaluation"});
  const Tensor dy = draw.values(xs);
  p.batchnorm2d.training = 1;
  out.push_back({PARITY_OP_BATCHNORM2D_BWD, p, {{x}, {dy}, {gamma}, {mean}, {invstd}}, shape + " training"});
  p.batchnorm2d.training = 0;
  out.push_back({PARITY_OP_BATCHNORM2D_BWD, p, {{x}, {dy}, {gamma}, {mean}, {running_var}}, shape + " evaluation"});
}

void user_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) { cases_of(out, draw, d, Variant::plain); }

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  // Batch 1 with H*W > 1; odd sizes; H = W = 1 (after a global pool) with a batch of 3; one value
  // per channel (ONNX only); the sizes of a CNN's first layers; a constant channel; a large mean.
  for (const auto& d : std::vector<std::vector<int64_t>>{
           {1, 3, 4, 5}, {2, 3, 7, 9}, {3, 5, 1, 1}, {1, 2, 1, 1}, {8, 16, 14, 14}, {2, 4, 33, 31}})
    cases_of(out, draw, d, Variant::plain);
  cases_of(out, draw, {4, 3, 6, 5}, Variant::constant_channel);
  cases_of(out, draw, {2, 3, 5, 7}, Variant::offset);
}

const ConformanceFamily kCases{"batchnorm2d*", "N,C,H,W", 4, 4, false, 15, builtin_cases, user_cases};

constexpr uint32_t kSavedStatistics = (1u << 1) | (1u << 2);

}  // namespace

// Every sum runs over n = N*H*W elements of a channel in a fixed tree (log2 n rounding steps,
// ~1e-6 relative for n up to 1e5), the variance from deviations against the first pass's mean
// (exact subtraction, ops/kernels/batchnorm.h), then a few roundings per element: NMSE ~1e-13 on
// y, the saved statistics and the running ones; 1e-11 leaves margin, while a one-pass variance
// at the offset case is off by ~1e-3 relative (NMSE ~1e-6) and a wrong convention by far more.
extern const OpRule batchnorm2d_train_rule{"BATCHNORM2D_TRAIN", 5, 3, infer_train, flops_train, gradient_train,
    Tolerance{1e-11, 1e-8, "per-channel sums in fixed trees, variance against a shift, a few roundings per element", false},
    &kCases, kSavedStatistics};
extern const OpRule batchnorm2d_eval_rule{"BATCHNORM2D_EVAL", 5, 1, infer_eval, flops_eval, gradient_eval,
    Tolerance{1e-12, 1e-8, "float32 sqrt, division and four roundings per element", false}};
// The op alone: two sums per channel in fixed trees and a few roundings per element (~1e-13).
// In a gradient check the forward's float32 saved mean is off by up to half an ulp of the mean,
// which shifts x_hat by that over the std for a whole channel: dgamma's NMSE is about
// (ulp(mean) / 2 / std)^2, 4e-11 for a mean of 100 and a std of 0.58 (the offset case there);
// 1e-10 covers it, and a dx or dgamma wrong by 1e-5 relative still fails.
extern const OpRule batchnorm2d_bwd_rule{"BATCHNORM2D_BWD", 5, 3, infer_bwd, flops_bwd, nullptr,
    Tolerance{1e-10, 1e-8, "per-channel sums in fixed trees; the float32 saved mean", false}};

}  // namespace parity::ops
