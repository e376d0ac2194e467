// check/check_ops.cpp — `parity check ops`: every op, forward and backward, on each chosen
// backend against the float64 `ref` backend, over a built-in list of cases (batch 1, odd
// sizes, stride and padding edge cases, large values, values at the relu and maxpool kinks)
// plus one the user names. Outputs are prefilled with NaN, so an unwritten element fails,
// and sit between guard regions, so a write past either end fails.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "graph/compiled_step.h"
#include "ops/op_rule.h"
#include "parity/backend.h"
#include "parity/check.h"
#include "parity/error.h"
#include "parity/graph.h"

namespace parity {

bool OpCaseResult::pass() const {
  if (skipped) return true;
  for (const TensorDiff& d : outputs)
    if (!d.pass) return false;
  return true;
}

namespace {

struct Operand {
  Tensor tensor;
  parity_value_kind kind = PARITY_VALUE_INPUT;
};

struct OpCase {
  parity_op op;
  parity_op_params params{};
  std::vector<Operand> operands;
  std::string label;
};

// Draws operands: uniform in [-1, 1) normally, small integers in [-3, 3] in exact mode.
class Draw {
 public:
  // smooth: for gradient mode, inputs stay away from the relu and maxpool kinks (see add_kinks).
  Draw(uint64_t seed, bool exact, bool smooth = false) : rng_(seed), exact_(exact), smooth_(smooth) {}
  Tensor values(const Shape& shape, float scale = 1.0f) {
    Tensor t(shape, DType::f32);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::uniform_int_distribution<int> k(-3, 3);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = exact_ ? float(k(rng_)) : scale * u(rng_);
    return t;
  }
  Tensor positive(const Shape& shape, float hi) {
    Tensor t(shape, DType::f32);
    std::uniform_real_distribution<float> u(0.0f, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng_);
    return t;
  }
  Tensor labels(int64_t n, int64_t classes) {
    Tensor t(Shape{n}, DType::i32);
    std::uniform_int_distribution<int64_t> u(0, classes - 1);
    for (int64_t i = 0; i < n; ++i) t.i32()[i] = static_cast<int32_t>(u(rng_));
    return t;
  }
  bool smooth() const { return smooth_; }

  // Values at the kinks: exact zeros for relu'(0) = 0, and repeated values (ties) for maxpool.
  // In gradient mode the opposite: every value at least 1e-3 from zero and all values distinct
  // with gaps >= 1e-3 (a shuffled grid), so a finite-difference step of 1e-6 crosses no kink.
  void add_kinks(Tensor& t) {
    if (smooth_) {
      std::vector<int64_t> order(static_cast<size_t>(t.numel()));
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
      std::shuffle(order.begin(), order.end(), rng_);
      for (int64_t i = 0; i < t.numel(); ++i) {
        double k = double(order[static_cast<size_t>(i)] - t.numel() / 2);
        k += k >= 0 ? 0.5 : -0.5;  // never 0
        t.f32()[i] = static_cast<float>(k * 1e-3 * std::max(1.0, 2000.0 / double(t.numel())));
      }
      return;
    }
    for (int64_t i = 0; i < t.numel(); i += 7) t.f32()[i] = 0.0f;
    for (int64_t i = 3; i + 1 < t.numel(); i += 5) t.f32()[i + 1] = t.f32()[i];
  }

 private:
  std::mt19937_64 rng_;
  bool exact_;
  bool smooth_;
};

parity_op_params conv_params(int64_t h, int64_t w, int64_t r, int64_t s, int stride, int pad) {
  parity_op_params p{};
  p.conv2d.stride_h = p.conv2d.stride_w = stride;
  p.conv2d.pad_h = p.conv2d.pad_w = pad;
  p.conv2d.input_h = static_cast<int32_t>(h);
  p.conv2d.input_w = static_cast<int32_t>(w);
  p.conv2d.kernel_h = static_cast<int32_t>(r);
  p.conv2d.kernel_w = static_cast<int32_t>(s);
  return p;
}

// conv2d forward and both backward ops on x [n,c,h,w], w [k,c,r,s].
void conv_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3], k = d[4], r = d[5], s = d[6];
  const int stride = d.size() > 7 ? static_cast<int>(d[7]) : 1, pad = d.size() > 8 ? static_cast<int>(d[8]) : 0;
  const parity_op_params p = conv_params(h, w, r, s, stride, pad);
  if (stride <= 0 || pad < 0 || h + 2 * pad < r || w + 2 * pad < s)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check ops: conv2d case x[{},{},{},{}] w[{},{},{},{}] stride {} pad {} has no output", n, c, h, w,
                            k, c, r, s, stride, pad));
  const int64_t P = (h + 2 * pad - r) / stride + 1, Q = (w + 2 * pad - s) / stride + 1;
  const std::string label = fmt::format("x[{},{},{},{}] w[{},{},{},{}] stride {} pad {}", n, c, h, w, k, c, r, s, stride, pad);
  Tensor x = draw.values(Shape{n, c, h, w}), wt = draw.values(Shape{k, c, r, s}), b = draw.values(Shape{k});
  Tensor dy = draw.values(Shape{n, k, P, Q});
  out.push_back({PARITY_OP_CONV2D, p, {{x}, {wt}, {b}}, label});
  out.push_back({PARITY_OP_CONV2D_BWD_DATA, p, {{dy}, {wt}}, label});
  out.push_back({PARITY_OP_CONV2D_BWD_WEIGHT, p, {{x}, {dy}}, label});
}

void linear_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], in = d[1], o = d[2];
  const std::string label = fmt::format("x[{},{}] w[{},{}]", n, in, o, in);
  Tensor x = draw.values(Shape{n, in}), w = draw.values(Shape{o, in}), b = draw.values(Shape{o});
  Tensor dy = draw.values(Shape{n, o});
  out.push_back({PARITY_OP_LINEAR, {}, {{x}, {w}, {b}}, label});
  out.push_back({PARITY_OP_LINEAR_BWD_DATA, {}, {{dy}, {w}}, label});
  out.push_back({PARITY_OP_LINEAR_BWD_WEIGHT, {}, {{x}, {dy}}, label});
}

// relu's backward reads the forward output, so y is computed here exactly (relu does no arithmetic).
void relu_cases(std::vector<OpCase>& out, Draw& draw, const Shape& shape) {
  Tensor x = draw.values(shape);
  draw.add_kinks(x);
  Tensor y = x;
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = y.f32()[i] > 0 ? y.f32()[i] : 0.0f;
  const std::string label = shape.str() + (draw.smooth() ? " away from 0" : " with zeros");
  out.push_back({PARITY_OP_RELU, {}, {{x}}, label});
  out.push_back({PARITY_OP_RELU_BWD, {}, {{y}, {draw.values(shape)}}, label});
}

// maxpool's backward takes indices; they are drawn inside each window so that ties and
// overlapping windows (stride < kernel) route several gradients to one element.
void maxpool_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
  const int kernel = static_cast<int>(d[4]), stride = static_cast<int>(d[5]);
  if (kernel <= 0 || stride <= 0 || kernel > h || kernel > w)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check ops: maxpool2d case [{},{},{},{}] kernel {} stride {} has no output", n, c, h, w, kernel, stride));
  parity_op_params p{};
  p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = kernel;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = stride;
  p.maxpool2d.input_h = static_cast<int32_t>(h);
  p.maxpool2d.input_w = static_cast<int32_t>(w);
  const std::string label = fmt::format("x[{},{},{},{}] kernel {} stride {} {}", n, c, h, w, kernel, stride,
                                        draw.smooth() ? "distinct values" : "with ties");
  Tensor x = draw.values(Shape{n, c, h, w});
  draw.add_kinks(x);
  out.push_back({PARITY_OP_MAXPOOL2D, p, {{x}}, label});
  const int64_t P = (h - kernel) / stride + 1, Q = (w - kernel) / stride + 1;
  Tensor idx(Shape{n, c, P, Q}, DType::i32);
  std::mt19937 rng(static_cast<uint32_t>(n * 131 + h));
  std::uniform_int_distribution<int> pick(0, kernel - 1);
  for (int64_t plane = 0; plane < n * c; ++plane)
    for (int64_t i = 0; i < P; ++i)
      for (int64_t j = 0; j < Q; ++j)
        idx.i32()[(plane * P + i) * Q + j] = static_cast<int32_t>((i * stride + pick(rng)) * w + j * stride + pick(rng));
  out.push_back({PARITY_OP_MAXPOOL2D_BWD, p, {{draw.values(Shape{n, c, P, Q})}, {idx}}, label});
}

void xent_cases(std::vector<OpCase>& out, Draw& draw, int64_t n, int64_t k, float scale) {
  const std::string label = fmt::format("logits[{},{}]{}", n, k, scale > 1 ? fmt::format(" scaled {:g}", scale) : "");
  Tensor logits = draw.values(Shape{n, k}, scale);
  Tensor labels = draw.labels(n, k);
  out.push_back({PARITY_OP_SOFTMAX_XENT, {}, {{logits}, {labels}}, label});
  out.push_back({PARITY_OP_SOFTMAX_XENT_BWD, {}, {{logits}, {labels}, {Tensor::from_f32(Shape{1}, {0.75f})}}, label});
  out.push_back({PARITY_OP_ARGMAX, {}, {{logits}}, label});
  out.push_back({PARITY_OP_ACCURACY, {}, {{logits}, {labels}}, label});
}

void elementwise_cases(std::vector<OpCase>& out, Draw& draw, const Shape& shape) {
  Tensor a = draw.values(shape), b = draw.values(shape);
  out.push_back({PARITY_OP_ADD, {}, {{a}, {b}}, shape.str()});
  out.push_back({PARITY_OP_RESHAPE, {}, {{a}}, shape.str()});
}

void optimizer_cases(std::vector<OpCase>& out, Draw& draw, const Shape& shape) {
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

std::vector<OpCase> builtin_cases(Draw& draw) {
  std::vector<OpCase> cases;
  // Batch 1, odd sizes, kernels larger than 3, non-square kernels, stride 2 and 3 with and
  // without padding, padding as large as the kernel allows, 1x1 kernels, the seed CNN's layers.
  const std::vector<std::vector<int64_t>> convs = {
      {1, 1, 5, 5, 1, 3, 3, 1, 0},   {2, 3, 7, 9, 4, 3, 3, 1, 1},  {1, 2, 8, 8, 3, 3, 3, 2, 1},
      {3, 4, 9, 7, 5, 5, 5, 1, 2},   {2, 3, 11, 6, 2, 3, 1, 2, 0}, {1, 16, 14, 14, 32, 3, 3, 1, 1},
      {2, 2, 10, 10, 3, 4, 2, 3, 1}, {4, 5, 3, 3, 6, 1, 1, 1, 0},  {1, 1, 4, 4, 2, 4, 4, 1, 2},
      {2, 1, 28, 28, 16, 3, 3, 1, 1},
      // The cpu backend's forward panels: several small images per GEMM with a shorter last group,
      // and a large image cut into row tiles with a shorter last tile (stride 1 and 2).
      {19, 3, 6, 6, 4, 3, 3, 1, 1}, {2, 2, 40, 37, 3, 3, 3, 1, 1}, {1, 2, 70, 65, 3, 3, 3, 2, 1},
      // The cpu backend's direct kernel (stride 1, output channels a multiple of 16; backward-data
      // too when the input channels are): rows longer than one vector with a partial last one, no
      // padding, non-square kernels with padding 2, and 16 input channels with 32 outputs.
      {2, 16, 9, 21, 16, 5, 3, 1, 2}, {3, 32, 7, 40, 16, 3, 3, 1, 0}, {2, 3, 20, 35, 32, 3, 3, 1, 1}};
  for (const auto& c : convs) conv_cases(cases, draw, c);
  for (const auto& l : std::vector<std::vector<int64_t>>{{1, 1, 1}, {1, 7, 3}, {5, 13, 11}, {64, 128, 10}, {3, 600, 17}, {33, 9, 128}})
    linear_cases(cases, draw, l);
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{17, 128}}) relu_cases(cases, draw, s);
  for (const auto& m : std::vector<std::vector<int64_t>>{{1, 1, 2, 2, 2, 2}, {2, 3, 7, 9, 2, 2}, {1, 2, 9, 9, 3, 2},
                                                          {3, 1, 5, 6, 3, 1}, {2, 4, 28, 28, 2, 2}})
    maxpool_cases(cases, draw, m);
  // Rows wider than the cpu backend's 16-output vectors, with a NaN, which wins its window.
  maxpool_cases(cases, draw, {2, 2, 6, 71, 2, 2});
  if (!draw.smooth()) {
    OpCase& forward = cases[cases.size() - 2];
    forward.operands[0].tensor.f32()[71 + 40] = std::numeric_limits<float>::quiet_NaN();
    forward.label += " and a NaN";
  }
  for (const auto& x : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 10}, {7, 3}, {64, 10}, {5, 1000}})
    xent_cases(cases, draw, x.first, x.second, 5.0f);
  xent_cases(cases, draw, 4, 10, 3e4f);  // large logits: a naive exp overflows
  elementwise_cases(cases, draw, Shape{3, 4, 5});
  parity_op_params fill{};
  fill.fill.value = 1.0f;
  cases.push_back({PARITY_OP_FILL, fill, {}, "[1]"});
  for (const Shape& s : {Shape{1}, Shape{16, 1, 3, 3}, Shape{10, 128}}) optimizer_cases(cases, draw, s);
  return cases;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The op families `--op` accepts, and what `--shape` means for each.
std::vector<OpCase> user_cases(Draw& draw, const std::string& op, const std::vector<int64_t>& shape) {
  std::vector<OpCase> cases;
  const std::string family = lower(op);
  auto need = [&](size_t lo, size_t hi, const char* meaning) {
    if (shape.size() < lo || shape.size() > hi)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("check ops: --shape for {} is {} ({} numbers), got {}", op, meaning,
                              lo == hi ? fmt::format("{}", lo) : fmt::format("{}-{}", lo, hi), shape.size()));
    for (int64_t d : shape)
      if (d < 0 || (d == 0 && family != "conv2d"))
        throw Error(ErrorKind::invalid_argument, fmt::format("check ops: --shape values must be > 0, got {}", d));
  };
  if (family.rfind("conv2d", 0) == 0) need(7, 9, "N,C,H,W,K,R,S[,stride[,pad]]"), conv_cases(cases, draw, shape);
  else if (family.rfind("linear", 0) == 0) need(3, 3, "N,IN,OUT"), linear_cases(cases, draw, shape);
  else if (family.rfind("relu", 0) == 0) need(1, 6, "the tensor's dims"), relu_cases(cases, draw, Shape(shape));
  else if (family.rfind("maxpool2d", 0) == 0) need(6, 6, "N,C,H,W,KERNEL,STRIDE"), maxpool_cases(cases, draw, shape);
  else if (family.rfind("softmax_xent", 0) == 0 || family == "argmax" || family == "accuracy")
    need(2, 2, "N,CLASSES"), xent_cases(cases, draw, shape[0], shape[1], 5.0f);
  else if (family == "add" || family == "reshape") need(1, 6, "the tensor's dims"), elementwise_cases(cases, draw, Shape(shape));
  else if (family == "adam_step" || family == "sgd_step" || family == "adam" || family == "sgd")
    need(1, 6, "the parameter's dims"), optimizer_cases(cases, draw, Shape(shape));
  else
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check ops: --op '{}' is not an op family: conv2d, linear, relu, maxpool2d, softmax_xent, "
                            "argmax, accuracy, add, reshape, adam_step, sgd_step",
                            op));
  return cases;
}

// Guard values placed right before and after every output in the arena (Plan's tight
// layout): INPUTs the check fills with a canary and reads back, so an op that writes past
// either end of its output is caught on backends that use the plan's arena.
constexpr int64_t kGuardFloats = 16;
constexpr uint32_t kCanary = 0x7fc0beefu;  // a quiet NaN with a payload no op produces

struct CaseRun {
  std::vector<std::pair<std::string, Tensor>> values;  // outputs, then updated PARAM/STATE operands
  std::vector<std::string> overruns;                    // outputs whose guards were overwritten
};

// Builds the one-node graph of a case, runs it with NaN-poisoned outputs between guards on
// `backend`, and returns its outputs followed by the updated PARAM/STATE operands.
CaseRun run_case(Backend& backend, const OpCase& c, std::string* skip_reason) {
  GraphBuilder b;
  std::vector<Value> ins;
  for (size_t i = 0; i < c.operands.size(); ++i) {
    const Operand& o = c.operands[i];
    const std::string name = "in" + std::to_string(i);
    if (o.kind == PARITY_VALUE_PARAM) ins.push_back(b.parameter(name, o.tensor.shape()));
    else if (o.kind == PARITY_VALUE_STATE) ins.push_back(b.state(name, o.tensor.shape()));
    else ins.push_back(b.input(name, o.tensor.shape(), o.tensor.dtype()));
  }
  std::vector<Value> outs = b.node(c.op, c.params, ins, "op");
  std::vector<std::string> keep, layout = {"guard.before"};
  b.input("guard.before", Shape{kGuardFloats});
  for (size_t k = 0; k < outs.size(); ++k) {
    keep.push_back(b.graph().value(outs[k]).name);
    layout.push_back(keep.back());
    layout.push_back(fmt::format("guard.after{}", k));
    b.input(layout.back(), Shape{kGuardFloats});
  }
  const Graph g = b.take();
  CompiledStepOptions options;
  options.tight_layout = layout;
  options.poison_outputs = true;
  CompiledStep step(g, keep, options);
  CaseRun run;
  if (!step.supported_by(backend, skip_reason)) return run;
  step.compile(backend);
  for (size_t i = 0; i < c.operands.size(); ++i) step.write("in" + std::to_string(i), c.operands[i].tensor);
  const std::vector<uint32_t> canary(kGuardFloats, kCanary);
  for (const std::string& name : layout)
    if (name.rfind("guard.", 0) == 0) step.write(step.value(name), canary.data(), canary.size() * 4);
  step.execute();
  for (size_t k = 0; k < outs.size(); ++k) {
    Tensor t = step.read(g.value(outs[k]).name);
    const std::string label = outs.size() == 1 ? "output" : fmt::format("output {}", k);
    for (const std::string& guard : {k == 0 ? std::string("guard.before") : fmt::format("guard.after{}", k - 1),
                                     fmt::format("guard.after{}", k)}) {
      std::vector<uint32_t> seen(kGuardFloats);
      step.read(step.value(guard), seen.data(), seen.size() * 4);
      if (seen != canary) run.overruns.push_back(label);
    }
    run.values.emplace_back(label, std::move(t));
  }
  for (size_t i = 0; i < c.operands.size(); ++i)
    if (c.operands[i].kind != PARITY_VALUE_INPUT)
      run.values.emplace_back(fmt::format("updated operand {}", i), step.read("in" + std::to_string(i)));
  return run;
}

// Gradient mode: the backend's backward of one forward op against float64 central
// differences of ref's forward. Objective L = sum_k <y_k, r_k> with random r_k, so the
// backward is seeded with dL/dy_k = r_k; for each differentiable f32 operand a sample of its
// elements is perturbed by +-h in float64 (ref holds float64 values: write_f64/read_f64).
// h = 1e-6 * max(1, |x|): truncation error O(h^2) ~ 1e-12, rounding ~ 1e-16 * |L| / h; the
// inputs keep every element at least 1e-3 from a relu or maxpool kink (Draw::add_kinks), so no
// step crosses one.
constexpr double kFiniteDifferenceStep = 1e-6;
constexpr int64_t kGradientSamples = 48;

OpCaseResult check_gradient_case(Backend& backend, Backend& ref, const OpCase& c, uint64_t seed) {
  const ops::OpRule& rule = ops::rule(c.op);
  GraphBuilder b;
  std::vector<Value> ins;
  for (size_t i = 0; i < c.operands.size(); ++i)
    ins.push_back(b.input("in" + std::to_string(i), c.operands[i].tensor.shape(), c.operands[i].tensor.dtype()));
  std::vector<Value> outs = b.node(c.op, c.params, ins, "op");
  const Graph forward = b.graph();
  const Node node = forward.nodes().back();
  std::vector<Value> seeds;
  std::vector<Tensor> r;
  std::mt19937_64 rng(seed + 17);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t k = 0; k < outs.size(); ++k) {
    const ValueInfo& y = forward.value(outs[k]);
    if (y.dtype != DType::f32) {
      seeds.push_back(Value{});
      r.emplace_back();
      continue;
    }
    seeds.push_back(b.input("dy" + std::to_string(k), y.shape));
    Tensor t(y.shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
    r.push_back(std::move(t));
  }
  std::vector<bool> needed;
  for (const Operand& o : c.operands) needed.push_back(o.tensor.dtype() == DType::f32);
  std::vector<Value> grads = rule.gradient(b, node, seeds, needed);
  std::vector<std::string> keep;
  for (Value g : grads)
    if (g.valid()) keep.push_back(b.graph().value(g).name);
  const Graph backward = b.take();
  CompiledStepOptions poisoned;
  poisoned.poison_outputs = true;
  CompiledStep step(backward, keep, poisoned);

  OpCaseResult res;
  res.backend = backend.name();
  res.op = std::string(rule.name) + " (gradient)";
  res.label = c.label;
  if (!step.supported_by(backend, &res.skip_reason)) {
    res.skipped = true;
    return res;
  }
  step.compile(backend);
  for (size_t i = 0; i < c.operands.size(); ++i) step.write("in" + std::to_string(i), c.operands[i].tensor);
  for (size_t k = 0; k < seeds.size(); ++k)
    if (seeds[k].valid()) step.write("dy" + std::to_string(k), r[k]);
  step.execute();

  // ref's forward in float64.
  std::vector<std::string> fwd_keep;
  for (Value v : outs) fwd_keep.push_back(forward.value(v).name);
  CompiledStep ref_forward(ref, forward, fwd_keep);
  Executable& fexe = ref_forward.executable();
  std::vector<std::vector<double>> x64(c.operands.size());
  for (size_t i = 0; i < c.operands.size(); ++i) {
    const Tensor& t = c.operands[i].tensor;
    ref_forward.write("in" + std::to_string(i), t);
    if (t.dtype() == DType::f32) x64[i].assign(t.f32(), t.f32() + t.numel());
  }
  auto objective = [&]() {
    fexe.execute();
    double L = 0;
    for (size_t k = 0; k < outs.size(); ++k) {
      if (!seeds[k].valid()) continue;
      std::vector<double> y(static_cast<size_t>(r[k].numel()));
      fexe.read_f64(ref_forward.value(forward.value(outs[k]).name), y.data(), y.size());
      for (size_t j = 0; j < y.size(); ++j) L += y[j] * double(r[k].f32()[j]);
    }
    return L;
  };

  for (size_t i = 0; i < c.operands.size(); ++i) {
    if (!grads[i].valid()) continue;
    const int32_t id = ref_forward.value("in" + std::to_string(i));
    const int64_t n = c.operands[i].tensor.numel();
    const Tensor analytic = step.read(backward.value(grads[i]).name);
    const int64_t samples = std::min(n, kGradientSamples);
    Tensor got(Shape{samples}, DType::f32), want(Shape{samples}, DType::f32);
    std::vector<double> fd(static_cast<size_t>(samples));
    std::uniform_int_distribution<int64_t> pick(0, n - 1);
    for (int64_t s_i = 0; s_i < samples; ++s_i) {
      const int64_t j = n <= kGradientSamples ? s_i : pick(rng);
      std::vector<double>& x = x64[i];
      const double saved = x[static_cast<size_t>(j)];
      const double h = kFiniteDifferenceStep * std::max(1.0, std::fabs(saved));
      x[static_cast<size_t>(j)] = saved + h;
      fexe.write_f64(id, x.data(), x.size());
      const double plus = objective();
      x[static_cast<size_t>(j)] = saved - h;
      fexe.write_f64(id, x.data(), x.size());
      const double minus = objective();
      x[static_cast<size_t>(j)] = saved;
      fexe.write_f64(id, x.data(), x.size());
      got.f32()[s_i] = analytic.f32()[j];
      want.f32()[s_i] = static_cast<float>((plus - minus) / (2 * h));
    }
    // The float32 backward against float64 differences: at least the float32 rounding of the
    // gradient itself (NMSE ~ 2^-48 ~ 4e-15), and the tolerance of the backward ops it ran.
    double threshold = 1e-11;
    for (const parity_node_desc& n : step.plan().nodes()) threshold = std::max(threshold, ops::rule(n.op).tolerance.op_nmse);
    TensorDiff d = compare_tensors(got, want, threshold);
    d.name = fmt::format("dL/d in{} ({} of {} elements)", i, samples, n);
    d.node = c.label;
    d.op = res.op;
    d.role = "gradient";
    d.note = "float32 backward against float64 central differences on ref, h = 1e-6, away from kinks";
    res.outputs.push_back(std::move(d));
  }
  return res;
}

}  // namespace

std::vector<OpCaseResult> check_ops(const OpCheckOptions& o) {
  if (o.backends.empty()) throw Error(ErrorKind::invalid_argument, "check ops: no backend to check");
  if (!o.shape.empty() && o.op.empty()) throw Error(ErrorKind::invalid_argument, "check ops: --shape needs --op");
  if (o.gradient && o.exact)
    throw Error(ErrorKind::invalid_argument, "check ops: --gradient and --exact exclude each other");
  Draw draw(o.seed, o.exact, o.gradient);
  std::vector<OpCase> cases = builtin_cases(draw);
  if (!o.op.empty()) {
    // Keep the built-in cases of that op family, then add the user's case.
    const std::string family = lower(o.op);
    std::vector<OpCase> selected;
    for (OpCase& c : cases)
      if (lower(ops::rule(c.op).name).rfind(family, 0) == 0) selected.push_back(std::move(c));
    if (!o.shape.empty())
      for (OpCase& c : user_cases(draw, o.op, o.shape)) selected.push_back(std::move(c));
    if (selected.empty())
      throw Error(ErrorKind::invalid_argument, fmt::format("check ops: no op named '{}' (e.g. conv2d, linear, relu, "
                                                           "maxpool2d, softmax_xent, adam_step)",
                                                           o.op));
    cases = std::move(selected);
  }
  BackendOptions bo;
  bo.threads = o.threads;
  auto ref = create_backend("ref", bo);
  std::vector<std::unique_ptr<Backend>> backends;
  for (const std::string& name : o.backends) backends.push_back(create_backend(name, bo));

  std::vector<OpCaseResult> results;
  if (o.gradient) {
    for (const OpCase& c : cases) {
      if (!ops::rule(c.op).gradient) continue;  // backward ops and optimizer steps: no gradient of their own
      for (auto& be : backends) results.push_back(check_gradient_case(*be, *ref, c, o.seed));
    }
    return results;
  }
  for (const OpCase& c : cases) {
    const ops::Tolerance& tol = ops::rule(c.op).tolerance;
    std::string why;
    const std::vector<std::pair<std::string, Tensor>> want = run_case(*ref, c, &why).values;
    for (auto& be : backends) {
      OpCaseResult r;
      r.backend = be->name();
      r.op = ops::rule(c.op).name;
      r.label = c.label;
      std::string skip;
      const CaseRun run = run_case(*be, c, &skip);
      const auto& got = run.values;
      if (got.empty() && !want.empty()) {
        r.skipped = true;
        r.skip_reason = skip.empty() ? "not supported" : skip;
        results.push_back(std::move(r));
        continue;
      }
      for (size_t i = 0; i < got.size(); ++i) {
        // Exact mode: integer inputs make dot products exact, so those ops must match bit for bit too.
        const bool exact = o.exact && tol.integer_exact;
        TensorDiff d = compare_tensors(got[i].second, want[i].second, exact ? 0.0 : tol.op_nmse);
        d.name = got[i].first;
        d.node = c.label;
        d.op = r.op;
        d.role = got[i].first.rfind("updated", 0) == 0 ? "updated state" : "output";
        d.note = exact ? "exact mode: small-integer inputs" : (o.exact ? std::string("not exact by definition (") + tol.why + ")" : tol.why);
        if (std::find(run.overruns.begin(), run.overruns.end(), got[i].first) != run.overruns.end()) {
          d.pass = false;
          d.note = "wrote outside its bytes: a guard region beside it was overwritten";
        }
        r.outputs.push_back(std::move(d));
      }
      results.push_back(std::move(r));
    }
  }
  return results;
}

}  // namespace parity
