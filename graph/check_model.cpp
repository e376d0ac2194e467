// graph/check_model.cpp — `parity check model` and `parity check determinism`: one training
// step of a model run on two backends from the same weights and batch, every node's output,
// every gradient and every updated weight compared in graph order; drift over several steps.
#include <filesystem>
#include <map>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/backend.h"
#include "parity/check.h"
#include "parity/error.h"
#include "parity/model.h"
#include "parity/safetensors.h"

namespace parity {
namespace {

// Integer outputs (maxpool indices, argmax) inside a step: a window whose top two values lie
// within float32 rounding of each other may pick another element; allow 1e-3 of them.
constexpr double kIndexMismatchFraction = 1e-3;

struct Batch {
  Tensor x, y;
};

Batch load_or_draw_batch(const ModelCheckOptions& o, const ModelSpec& spec) {
  if (!o.input.empty()) {
    TensorFile f = read_safetensors(o.input);
    auto x_it = f.tensors.find("x");
    auto y_it = f.tensors.find("y");
    if (x_it == f.tensors.end() || y_it == f.tensors.end())
      throw Error(ErrorKind::data, fmt::format("{}: needs tensors 'x' (f32 [N,{},{},{}]) and 'y' (i64 [N])", o.input,
                                               spec.channels, spec.height, spec.width));
    const Tensor& x = x_it->second;
    const Shape& xs = x.shape();
    if (x.dtype() != DType::f32 || xs.rank() != 4 || xs[1] != spec.channels || xs[2] != spec.height || xs[3] != spec.width || xs[0] < 1)
      throw Error(ErrorKind::data, fmt::format("{}: tensor 'x' is {} {}, model '{}' needs f32 [N,{},{},{}]", o.input,
                                               to_string(x.dtype()), xs.str(), spec.name, spec.channels, spec.height, spec.width));
    const Tensor& y = y_it->second;
    if ((y.dtype() != DType::i64 && y.dtype() != DType::i32) || y.shape() != Shape{xs[0]})
      throw Error(ErrorKind::data, fmt::format("{}: tensor 'y' is {} {}, expected i64 [{}]", o.input, to_string(y.dtype()),
                                               y.shape().str(), xs[0]));
    Batch b{x, Tensor(Shape{xs[0]}, DType::i32)};
    for (int64_t i = 0; i < xs[0]; ++i) {
      const int64_t label = y.dtype() == DType::i64 ? y.i64()[i] : y.i32()[i];
      if (label < 0 || label >= spec.num_classes)
        throw Error(ErrorKind::data, fmt::format("{}: label {} at index {} is outside [0, {})", o.input, label, i, spec.num_classes));
      b.y.i32()[i] = static_cast<int32_t>(label);
    }
    return b;
  }
  if (o.batch < 1) throw Error(ErrorKind::invalid_argument, fmt::format("--batch must be >= 1, got {}", o.batch));
  Batch b{Tensor(Shape{o.batch, spec.channels, spec.height, spec.width}, DType::f32), Tensor(Shape{o.batch}, DType::i32)};
  std::mt19937_64 rng(o.seed + 1);
  std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
  std::uniform_int_distribution<int> label(0, spec.num_classes - 1);
  for (int64_t i = 0; i < b.x.numel(); ++i) b.x.f32()[i] = pixel(rng);
  for (int64_t i = 0; i < o.batch; ++i) b.y.i32()[i] = label(rng);
  return b;
}

std::map<std::string, Tensor> load_or_init_weights(const ModelCheckOptions& o, const ModelSpec& spec) {
  if (o.weights.empty()) return init_weights(spec, o.seed);
  TensorFile f = read_safetensors(o.weights);
  std::map<std::string, Tensor> w;
  for (const ParamSpec& p : spec.params) w.emplace(p.name, require_tensor(f, p.name, DType::f32, p.shape, o.weights));
  return w;
}

Shape shape_of(const parity_value_desc& d) { return Shape(std::vector<int64_t>(d.dims, d.dims + d.rank)); }

DType dtype_of(const parity_value_desc& d) {
  return d.dtype == PARITY_I32 ? DType::i32 : d.dtype == PARITY_I64 ? DType::i64 : DType::f32;
}

// One side of the comparison: a backend running the training plan with every value kept.
class Side {
 public:
  Side(const std::string& backend, int threads, const Plan& plan) : plan_(plan) {
    BackendOptions bo;
    bo.threads = threads;
    backend_ = create_backend(backend, bo);
    CompileOptions co;
    co.poison_outputs = true;
    exe_ = backend_->compile(plan.c_plan(), co, nullptr);
  }
  std::string name() const { return backend_->name(); }

  void start(const std::map<std::string, Tensor>& weights) {
    for (const parity_value_desc& v : plan_.values())
      if (v.kind == PARITY_VALUE_STATE) {
        Tensor zeros(shape_of(v), DType::f32);
        exe_->write(plan_.value(v.name), zeros.data(), zeros.nbytes());
      }
    for (const auto& [name, t] : weights) exe_->write(plan_.value(name), t.data(), t.nbytes());
  }

  void step(const Batch& b, int32_t t) {
    exe_->write(plan_.value("x"), b.x.data(), b.x.nbytes());
    exe_->write(plan_.value("y"), b.y.data(), b.y.nbytes());
    exe_->write(plan_.value(optimizer_step_name()), &t, sizeof t);
    exe_->execute();
  }

  Tensor read(int32_t value) const {
    const parity_value_desc& d = plan_.values()[static_cast<size_t>(value)];
    Tensor t(shape_of(d), dtype_of(d));
    exe_->read(value, t.data(), t.nbytes());
    return t;
  }

 private:
  const Plan& plan_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Executable> exe_;
};

struct TrainPlan {
  Graph graph;
  Plan plan;
};

TrainPlan make_train_plan(const ModelSpec& spec, int64_t batch) {
  Graph fwd = build_forward(spec, batch);
  OptimizerConfig adam;
  Graph g = differentiate(fwd, fwd.find("loss"), &adam);
  std::vector<std::string> keep;
  for (const ValueInfo& v : g.values())
    if (v.kind == PARITY_VALUE_TEMP) keep.push_back(v.name);
  Plan plan(g, keep);
  return {std::move(g), std::move(plan)};
}

void dump_side(const std::string& dir, const std::string& backend, const Graph& g, const Plan& plan, const Side& side) {
  std::filesystem::create_directories(dir);
  TensorFile file;
  file.metadata["backend"] = backend;
  for (size_t i = 0; i < g.values().size(); ++i) file.tensors.emplace(g.values()[i].name, side.read(static_cast<int32_t>(i)));
  (void)plan;
  write_safetensors(dir + "/" + backend + ".safetensors", file);
}

double weights_nmse(const ModelSpec& spec, const Plan& plan, const Side& a, const Side& b) {
  double err = 0, norm = 0;
  for (const ParamSpec& p : spec.params) {
    Tensor ta = a.read(plan.value(p.name)), tb = b.read(plan.value(p.name));
    for (int64_t i = 0; i < ta.numel(); ++i) {
      const double d = double(ta.f32()[i]) - tb.f32()[i];
      err += d * d;
      norm += double(tb.f32()[i]) * tb.f32()[i];
    }
  }
  return norm > 0 ? err / norm : err;
}

}  // namespace

ModelCheckReport check_model(const ModelCheckOptions& o) {
  if (o.against == "torch")
    throw Error(ErrorKind::backend, "check model --against torch: the LibTorch peer is not built in this build of parity");
  if (o.steps < 1) throw Error(ErrorKind::invalid_argument, fmt::format("--steps must be >= 1, got {}", o.steps));
  const ModelSpec& spec = model_spec(o.model);
  Batch batch = load_or_draw_batch(o, spec);
  const std::map<std::string, Tensor> weights = load_or_init_weights(o, spec);
  TrainPlan tp = make_train_plan(spec, batch.x.shape()[0]);
  const Graph& g = tp.graph;

  Side a(o.backend, o.threads, tp.plan), b(o.against, o.threads, tp.plan);
  a.start(weights);
  b.start(weights);
  a.step(batch, 1);
  b.step(batch, 1);

  ModelCheckReport report;
  report.backend = a.name();
  report.against = b.name();
  auto add = [&](int32_t value, const Node* node, const std::string& role, const ops::Tolerance& tol) {
    const ValueInfo& info = g.values()[static_cast<size_t>(value)];
    const double threshold = info.dtype == DType::f32 ? tol.step_nmse : kIndexMismatchFraction;
    TensorDiff d = compare_tensors(a.read(value), b.read(value), threshold);
    d.name = info.name;
    d.node = node ? node->name : info.name;
    d.op = node ? ops::rule(node->op).name : "-";
    d.role = role;
    d.note = info.dtype == DType::f32 ? tol.why : "integer output: fraction of elements that differ";
    if (!d.pass && report.first_failure < 0) report.first_failure = static_cast<int>(report.values.size());
    report.values.push_back(std::move(d));
  };
  for (const Node& n : g.nodes()) {
    const ops::Tolerance& tol = ops::rule(n.op).tolerance;
    for (int32_t out : n.outputs) {
      const std::string& name = g.values()[static_cast<size_t>(out)].name;
      add(out, &n, name.rfind("grad/", 0) == 0 ? "gradient" : (n.name.find(".bwd") != std::string::npos ? "backward" : "output"), tol);
    }
    if (n.op == PARITY_OP_ADAM_STEP || n.op == PARITY_OP_SGD_STEP) {
      add(n.inputs[0], &n, "updated weight", tol);
      for (size_t i = 2; i < n.inputs.size(); ++i)
        if (g.values()[static_cast<size_t>(n.inputs[i])].kind == PARITY_VALUE_STATE) add(n.inputs[i], &n, "optimizer state", tol);
    }
  }
  if (!o.dump.empty()) {
    dump_side(o.dump, report.backend, g, tp.plan, a);
    dump_side(o.dump, report.against + (report.against == report.backend ? "-against" : ""), g, tp.plan, b);
  }

  const int32_t loss = tp.plan.value("loss");
  auto loss_of = [&](const Side& s) { return double(s.read(loss).f32()[0]); };
  report.drift.push_back({1, loss_of(a), loss_of(b), weights_nmse(spec, tp.plan, a, b)});
  for (int step = 2; step <= o.steps; ++step) {
    // Later steps see the same batch: drift then measures how the two trajectories separate.
    a.step(batch, step);
    b.step(batch, step);
    report.drift.push_back({step, loss_of(a), loss_of(b), weights_nmse(spec, tp.plan, a, b)});
  }
  return report;
}

DeterminismReport check_determinism(const std::string& model, const std::string& backend, int64_t batch, int threads,
                                    uint64_t seed) {
  const ModelSpec& spec = model_spec(model);
  ModelCheckOptions o;
  o.batch = batch;
  o.seed = seed;
  Batch b = load_or_draw_batch(o, spec);
  const std::map<std::string, Tensor> weights = init_weights(spec, seed);
  TrainPlan tp = make_train_plan(spec, batch);
  Side first(backend, threads, tp.plan), second(backend, threads, tp.plan);
  for (Side* s : {&first, &second}) {
    s->start(weights);
    s->step(b, 1);
  }
  DeterminismReport report;
  report.backend = first.name();
  for (size_t i = 0; i < tp.graph.values().size(); ++i) {
    if (tp.graph.values()[i].kind == PARITY_VALUE_INPUT) continue;
    Tensor x = first.read(static_cast<int32_t>(i)), y = second.read(static_cast<int32_t>(i));
    ++report.values_compared;
    if (std::memcmp(x.data(), y.data(), x.nbytes()) != 0) report.differing.push_back(tp.graph.values()[i].name);
  }
  return report;
}

}  // namespace parity
