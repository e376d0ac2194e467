// check/check_ops.cpp — `parity check ops`: every op, forward and backward, on each chosen
// backend against the float64 `ref` backend, over the cases each op's rule file lists (batch 1,
// odd sizes, stride and padding edge cases, large values, values at the relu and maxpool kinks)
// plus one the user names. Outputs are prefilled with NaN, so an unwritten element fails,
// and sit between guard regions, so a write past either end fails.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "graph/autodiff.h"
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

// The cases come from each op's rule file (OpRule::conformance, ops/conformance.h).
using ops::Draw;
using ops::OpCase;
using ops::Operand;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Whether case `c` holds a value of `dtype`: an operand, or (CAST) its output.
bool holds_dtype(const OpCase& c, DType dtype) {
  if (c.op == PARITY_OP_CAST && c.params.cast.dtype == static_cast<int32_t>(dtype)) return true;
  for (const Operand& o : c.operands)
    if (o.tensor.dtype() == dtype) return true;
  return false;
}

// OpCheckOptions::precision: whether case `c` is one of the cases it selects.
bool selected_by_precision(const OpCase& c, const std::string& precision) {
  if (precision == "all") return true;
  if (precision == "bf16") return holds_dtype(c, DType::bf16);
  if (precision == "fp16") return holds_dtype(c, DType::f16);
  if (precision == "f32") return !holds_dtype(c, DType::bf16) && !holds_dtype(c, DType::f16);
  throw Error(ErrorKind::invalid_argument,
              fmt::format("check ops: precision must be all, f32, bf16 or fp16, got '{}'", precision));
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
  bool half = false;
  for (const parity_value_desc& v : step.plan().values()) half = half || v.dtype == PARITY_BF16 || v.dtype == PARITY_F16;
  try {
    step.compile(backend);
  } catch (const Error& e) {
    // A backend that does not list bf16 or f16 among its dtypes (simt, gpu_emu, cuda, hip)
    // refuses a half case at compile, naming itself and the dtype: the case is skipped with that
    // reason. Any other refusal, and any refusal of an f32 case, is an error as before.
    if (!half || e.kind() != ErrorKind::backend) throw;
    if (skip_reason) *skip_reason = e.what();
    return run;
  }
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
    if (y.dtype != DType::f32 || (rule.nondifferentiable_outputs >> k) & 1u) {
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
  BuilderEmitter emit(b);
  std::vector<Value> grads = rule.gradient(emit, node, seeds, needed);
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
  bool half = false;
  for (const Operand& o : c.operands) half = half || ops::is_half(o.tensor.dtype());
  if (half && c.op != PARITY_OP_CAST) {
    // A half output moves by one ulp (2^-8 or 2^-11 relative) or not at all under a 1e-6 step, so
    // central differences through it measure the rounding, not the derivative; the f32 cases of
    // the same op check its gradient, and `check ops` checks the half backward ops against ref.
    res.skipped = true;
    res.skip_reason = "half-precision case: finite differences cannot resolve a bf16/f16 output (one ulp >> h)";
    return res;
  }
  if (keep.empty()) {  // no f32 operand with an f32 output (a cast to or from a half dtype)
    res.skipped = true;
    res.skip_reason = "no float32 operand reaches a float32 output: nothing to difference";
    return res;
  }
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
  std::vector<OpCase> cases = ops::builtin_cases(draw);
  if (!o.op.empty()) {
    // Keep the built-in cases of that op family, then add the user's case.
    const std::string family = lower(o.op);
    std::vector<OpCase> selected;
    for (OpCase& c : cases)
      if (lower(ops::rule(c.op).name).rfind(family, 0) == 0) selected.push_back(std::move(c));
    if (!o.shape.empty())
      for (OpCase& c : ops::user_cases(draw, o.op, o.shape)) selected.push_back(std::move(c));
    if (selected.empty())
      throw Error(ErrorKind::invalid_argument, fmt::format("check ops: no op named '{}' (e.g. conv2d, linear, relu, "
                                                           "maxpool2d, softmax_xent, adam_step)",
                                                           o.op));
    cases = std::move(selected);
  }
  {
    std::vector<OpCase> selected;
    for (OpCase& c : cases)
      if (selected_by_precision(c, o.precision)) selected.push_back(std::move(c));
    if (selected.empty())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("check ops: no {} case{}: the op has no half-precision cases (ops/op_rule.h's HalfSupport)",
                              o.precision, o.op.empty() ? "" : fmt::format(" of '{}'", o.op)));
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
        // A bf16 or f16 output is held to the op's half tolerance (ops/op_rule.cpp).
        const ops::Tolerance& tol = ops::tolerance_for(ops::rule(c.op), got[i].second.dtype());
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
