// graph/check_model.cpp — `parity check model` and `parity check determinism`: one training
// step of a model run on two backends from the same weights and batch, every node's output,
// every gradient and every updated weight compared in graph order; drift over several steps.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "model/model_description.h"
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
  Plan plan;        // every value kept: what the report compares node by node
  Plan train_plan;  // only the loss kept, as the Trainer compiles it: backends may fuse nodes
};

TrainPlan make_train_plan(const ModelSpec& spec, int64_t batch) {
  Graph fwd = build_forward(spec, batch);
  OptimizerConfig adam;
  Graph g = differentiate(fwd, fwd.find("loss"), &adam);
  std::vector<std::string> keep;
  for (const ValueInfo& v : g.values())
    if (v.kind == PARITY_VALUE_TEMP) keep.push_back(v.name);
  Plan plan(g, keep);
  Plan train_plan(g, {"loss", "correct"});
  return {std::move(g), std::move(plan), std::move(train_plan)};
}

}  // namespace

namespace {

// What one side of the comparison produced: every value of the first step (by name), and the
// loss and the weights after every step.
struct Run {
  std::string name;
  std::map<std::string, Tensor> first_step;
  std::map<std::string, Tensor> train_plan_step;  // loss, weights and state after step 1 of the train plan
  std::vector<double> losses;
  std::vector<std::map<std::string, Tensor>> weights;
};

Run run_backend(const std::string& backend, const ModelCheckOptions& o, const ModelSpec& spec, const TrainPlan& tp,
                const Batch& batch, const std::map<std::string, Tensor>& weights) {
  Side side(backend, o.threads, tp.plan);
  Run run;
  run.name = side.name();
  side.start(weights);
  for (int step = 1; step <= o.steps; ++step) {
    // Every step sees the same batch: the drift then measures how the trajectories separate.
    side.step(batch, step);
    if (step == 1)
      for (size_t i = 0; i < tp.graph.values().size(); ++i)
        run.first_step.emplace(tp.graph.values()[i].name, side.read(static_cast<int32_t>(i)));
    run.losses.push_back(double(side.read(tp.plan.value("loss")).f32()[0]));
    std::map<std::string, Tensor> w;
    for (const ParamSpec& p : spec.params) w.emplace(p.name, side.read(tp.plan.value(p.name)));
    run.weights.push_back(std::move(w));
  }
  // The same first step once more, compiled as `parity train` compiles it (only the loss kept),
  // so that the paths a backend takes when it may fuse nodes are compared too.
  Side train(backend, o.threads, tp.train_plan);
  train.start(weights);
  train.step(batch, 1);
  for (const parity_value_desc& v : tp.train_plan.values())
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE || std::string(v.name) == "loss")
      run.train_plan_step.emplace(v.name, train.read(tp.train_plan.value(v.name)));
  return run;
}

// PyTorch's side: the LibTorch peer (bench/torch_peer, --mode step) runs in its own process
// from the same weights and batch, and writes its values under parity's names.
Run run_torch_peer(const ModelCheckOptions& o, const ModelSpec& spec, const Batch& batch,
                   const std::map<std::string, Tensor>& weights) {
  if (o.torch_peer.empty() || !std::filesystem::exists(o.torch_peer))
    throw Error(ErrorKind::backend, "check model --against torch: the LibTorch peer is not built in this build of "
                                    "parity (install libtorch-dev and configure again)");
  char pattern[] = "/tmp/parity-check-torch-XXXXXX";
  if (!::mkdtemp(pattern)) throw Error(ErrorKind::io, "check model --against torch: cannot create a temporary folder");
  const std::string dir = pattern;
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  TensorFile w;
  w.tensors = weights;
  write_safetensors(dir + "/weights.safetensors", w);
  TensorFile in;
  Tensor y64(batch.y.shape(), DType::i64);
  for (int64_t i = 0; i < batch.y.numel(); ++i) y64.i64()[i] = batch.y.i32()[i];
  in.tensors.emplace("x", batch.x);
  in.tensors.emplace("y", y64);
  write_safetensors(dir + "/input.safetensors", in);
  write_model_description(spec, dir + "/model.json");
  const std::string out = dir + "/out.safetensors";
  std::vector<std::string> args = {o.torch_peer, "--mode", "step", "--model", spec.name,
                                   "--model-file", dir + "/model.json",
                                   "--weights", dir + "/weights.safetensors", "--input", dir + "/input.safetensors",
                                   "--out", out, "--steps", std::to_string(o.steps),
                                   "--threads", std::to_string(o.threads > 0 ? o.threads : 1)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (::posix_spawn(&pid, o.torch_peer.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
    throw Error(ErrorKind::backend, fmt::format("check model --against torch: cannot start {}", o.torch_peer));
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(ErrorKind::backend, fmt::format("check model --against torch: the LibTorch peer failed (exit status {})",
                                                WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  TensorFile peer = read_safetensors(out);
  Run run;
  run.name = "torch";
  for (auto& [name, t] : peer.tensors) {
    if (name.find('@') != std::string::npos || name.rfind("step", 0) == 0) continue;
    if (t.dtype() == DType::i64) {  // maxpool indices: the same h*W+w convention, as i32
      Tensor i32(t.shape(), DType::i32);
      for (int64_t i = 0; i < t.numel(); ++i) i32.i32()[i] = static_cast<int32_t>(t.i64()[i]);
      run.first_step.emplace(name, std::move(i32));
    } else {
      run.first_step.emplace(name, t);
    }
  }
  for (int step = 1; step <= o.steps; ++step) {
    run.losses.push_back(double(require_tensor(peer, fmt::format("loss@{}", step), DType::f32, Shape{1}, out).f32()[0]));
    std::map<std::string, Tensor> wk;
    for (const ParamSpec& p : spec.params)
      wk.emplace(p.name, require_tensor(peer, fmt::format("step{}/{}", step, p.name), DType::f32, p.shape, out));
    run.weights.push_back(std::move(wk));
  }
  return run;
}

double weights_nmse(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  double err = 0, norm = 0;
  for (const auto& [name, ta] : a) {
    const Tensor& tb = b.at(name);
    for (int64_t i = 0; i < ta.numel(); ++i) {
      const double d = double(ta.f32()[i]) - tb.f32()[i];
      err += d * d;
      norm += double(tb.f32()[i]) * tb.f32()[i];
    }
  }
  return norm > 0 ? err / norm : err;
}

void dump_run(const std::string& dir, const std::string& file, const Run& run) {
  std::filesystem::create_directories(dir);
  TensorFile f;
  f.metadata["backend"] = run.name;
  f.tensors = run.first_step;
  write_safetensors(dir + "/" + file + ".safetensors", f);
}

}  // namespace

ModelCheckReport check_model(const ModelCheckOptions& o) {
  if (o.steps < 1) throw Error(ErrorKind::invalid_argument, fmt::format("--steps must be >= 1, got {}", o.steps));
  const ModelSpec& spec = model_spec(o.model);
  Batch batch = load_or_draw_batch(o, spec);
  const std::map<std::string, Tensor> weights = load_or_init_weights(o, spec);
  TrainPlan tp = make_train_plan(spec, batch.x.shape()[0]);
  const Graph& g = tp.graph;

  const Run a = run_backend(o.backend, o, spec, tp, batch, weights);
  const Run b = o.against == "torch" ? run_torch_peer(o, spec, batch, weights)
                                     : run_backend(o.against, o, spec, tp, batch, weights);

  ModelCheckReport report;
  report.backend = a.name;
  report.against = b.name;
  auto add = [&](int32_t value, const Node* node, const std::string& role, const ops::Tolerance& tol) {
    const ValueInfo& info = g.values()[static_cast<size_t>(value)];
    auto other = b.first_step.find(info.name);
    if (other == b.first_step.end()) {
      ++report.not_compared;  // the other side does not expose this value (e.g. PyTorch's dL/dL)
      return;
    }
    const double threshold = info.dtype == DType::f32 ? tol.step_nmse : kIndexMismatchFraction;
    TensorDiff d = compare_tensors(a.first_step.at(info.name), other->second, threshold);
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
      add(out, &n, name.rfind("grad/", 0) == 0 ? "gradient" : "output", tol);
    }
    if (n.op == PARITY_OP_ADAM_STEP || n.op == PARITY_OP_SGD_STEP) {
      add(n.inputs[0], &n, "updated weight", tol);
      for (size_t i = 2; i < n.inputs.size(); ++i)
        if (g.values()[static_cast<size_t>(n.inputs[i])].kind == PARITY_VALUE_STATE) add(n.inputs[i], &n, "optimizer state", tol);
    }
  }
  // The train plan's step on this backend against the other side's (a backend's train plan, or
  // PyTorch's only step).
  for (const auto& [name, t] : a.train_plan_step) {
    const auto& other_map = b.train_plan_step.empty() ? b.first_step : b.train_plan_step;
    auto other = other_map.find(name);
    if (other == other_map.end()) {
      ++report.not_compared;
      continue;
    }
    const Value v = g.find(name);
    const ValueInfo& info = g.value(v);
    const ops::Tolerance& tol = info.producer >= 0 ? ops::rule(g.nodes()[static_cast<size_t>(info.producer)].op).tolerance
                                                    : ops::rule(PARITY_OP_ADAM_STEP).tolerance;
    TensorDiff d = compare_tensors(t, other->second, tol.step_nmse);
    d.name = name;
    d.node = info.producer >= 0 ? g.nodes()[static_cast<size_t>(info.producer)].name : "(optimizer)";
    d.op = info.producer >= 0 ? ops::rule(g.nodes()[static_cast<size_t>(info.producer)].op).name : "ADAM_STEP";
    d.role = "train plan";
    d.note = "the step as `parity train` compiles it (only the loss kept: fusion allowed)";
    if (!d.pass && report.first_failure < 0) report.first_failure = static_cast<int>(report.values.size());
    report.values.push_back(std::move(d));
  }
  if (!o.dump.empty()) {
    dump_run(o.dump, a.name, a);
    dump_run(o.dump, b.name == a.name ? b.name + "-against" : b.name, b);
  }
  for (int step = 0; step < o.steps; ++step)
    report.drift.push_back({step + 1, a.losses[static_cast<size_t>(step)], b.losses[static_cast<size_t>(step)],
                            weights_nmse(a.weights[static_cast<size_t>(step)], b.weights[static_cast<size_t>(step)])});
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
