// bench/engine.cpp — the cases of `parity bench` and how they are run: op cases (every conv,
// linear, relu and maxpool node of a model's training step, forward and backward, as a one-node
// plan) and model cases (training step, inference), each validated against ref, then warmed up
// and repeated until a minimum time; the LibTorch peer (bench/peer.h) interleaved with parity's
// own rounds; the table and JSON of the results.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bench/machine.h"
#include "bench/peer.h"
#include "bench/synthetic_batch.h"
#include "model/model_description.h"
#include "ops/op_rule.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/graph.h"
#include "parity/model.h"
#include "parity/safetensors.h"

namespace parity::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Validation thresholds, as in tests/test_model.cpp: float32 results against ref's float64,
// NMSE 1e-9 for op outputs and logits; 1e-7 for weights after one Adam step (a gradient within
// rounding of zero may flip sign and move one weight by 2 lr).
constexpr double kOpNmse = 1e-9;
constexpr double kWeightNmse = 1e-7;
// parity and the peer compute the same float32 loss in different orders.
constexpr double kPeerLossTolerance = 1e-4;

struct Timing {
  std::vector<double> samples;  // seconds per run
  double median() const { return quantile(0.5); }
  double min() const { return samples.empty() ? 0 : *std::min_element(samples.begin(), samples.end()); }
  double max() const { return samples.empty() ? 0 : *std::max_element(samples.begin(), samples.end()); }
  double quantile(double q) const {
    if (samples.empty()) return 0;
    std::vector<double> s = samples;
    std::sort(s.begin(), s.end());
    return s[static_cast<size_t>(q * (s.size() - 1) + 0.5)];
  }
};

// Warm-up runs, then timed runs until `min_time` seconds (and at least 3 runs) have passed.
template <class Run>
void time_runs(const Run& run, int warmup, double min_time, Timing& timing) {
  for (int i = 0; i < warmup; ++i) run();
  double total = 0;
  for (int i = 0; total < min_time || i < 3; ++i) {
    const auto t0 = Clock::now();
    run();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    timing.samples.push_back(s);
    total += s;
  }
}

// NMSE of a float32 result against a reference, and whether non-finite values disagree.
struct Agreement {
  double nmse = 0;
  bool nonfinite_mismatch = false;
};
Agreement agreement(const float* got, const float* want, int64_t n) {
  double err = 0, norm = 0;
  Agreement a;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isfinite(got[i]) != std::isfinite(want[i])) a.nonfinite_mismatch = true;
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) continue;
    const double d = double(got[i]) - double(want[i]);
    err += d * d;
    norm += double(want[i]) * double(want[i]);
  }
  a.nmse = norm > 0 ? err / norm : err;
  return a;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  BackendOptions bo;
  bo.threads = threads;
  return create_backend(name, bo);
}

Tensor read_value(const Executable& exe, const Plan& plan, const std::string& name) {
  const parity_value_desc& d = plan.values()[static_cast<size_t>(plan.value(name))];
  Tensor t(Shape(std::vector<int64_t>(d.dims, d.dims + d.rank)), static_cast<DType>(d.dtype));
  exe.read(plan.value(name), t.data(), t.nbytes());
  return t;
}

double graph_flops(const Graph& g) {
  double total = 0;
  for (const Node& node : g.nodes()) {
    std::vector<const ValueInfo*> inputs;
    for (int32_t v : node.inputs) inputs.push_back(&g.values()[static_cast<size_t>(v)]);
    total += ops::rule(node.op).flops(ops::OpCall{node.name, node.params, inputs});
  }
  return total;
}

// ---------------------------------------------------------------- op cases
struct OpCase {
  std::string label;  // "conv2 (conv2d_bwd_data)"
  Graph graph;        // inputs "in0".., one node
  std::vector<std::string> outputs;
  double flops = 0;
};

bool is_timed_op(parity_op op) {
  switch (op) {
    case PARITY_OP_CONV2D: case PARITY_OP_CONV2D_BWD_DATA: case PARITY_OP_CONV2D_BWD_WEIGHT:
    case PARITY_OP_LINEAR: case PARITY_OP_LINEAR_BWD_DATA: case PARITY_OP_LINEAR_BWD_WEIGHT:
    case PARITY_OP_RELU: case PARITY_OP_RELU_BWD: case PARITY_OP_MAXPOOL2D: case PARITY_OP_MAXPOOL2D_BWD:
      return true;
    default: return false;
  }
}

// Every conv, linear, relu and maxpool node of the model's training step at `batch`, each as a
// graph of its own whose inputs are INPUT values of the same shapes.
std::vector<OpCase> op_cases(const ModelSpec& spec, int64_t batch) {
  Graph fwd = build_forward(spec, batch);
  OptimizerConfig adam;
  Graph train = differentiate(fwd, fwd.find("loss"), &adam);
  std::vector<OpCase> cases;
  for (const Node& node : train.nodes()) {
    if (!is_timed_op(node.op)) continue;
    GraphBuilder b;
    std::vector<Value> ins;
    std::vector<const ValueInfo*> infos;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const ValueInfo& vi = train.values()[static_cast<size_t>(node.inputs[i])];
      infos.push_back(&vi);
      ins.push_back(b.input(fmt::format("in{}", i), vi.shape, vi.dtype));
    }
    OpCase c;
    c.label = fmt::format("{} ({})", node.name, parity_op_name(node.op));
    c.flops = ops::rule(node.op).flops(ops::OpCall{node.name, node.params, infos});
    for (Value v : b.node(node.op, node.params, ins, "op")) c.outputs.push_back(b.graph().value(v).name);
    c.graph = b.take();
    cases.push_back(std::move(c));
  }
  return cases;
}

// Inputs of an op case: floats in [-1, 1); maxpool indices pointing inside their windows.
std::vector<Tensor> op_inputs(const OpCase& c, uint64_t seed) {
  const Node& node = c.graph.nodes()[0];
  std::vector<Tensor> tensors;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const ValueInfo& vi = c.graph.values()[static_cast<size_t>(node.inputs[i])];
    Tensor t(vi.shape, vi.dtype);
    if (vi.dtype == DType::f32) {
      for (int64_t k = 0; k < t.numel(); ++k)
        t.f32()[k] = static_cast<float>(synthetic_bits(seed, 100 + i, static_cast<uint64_t>(k)) >> 40) * 0x1p-23f - 1.0f;
    } else if (node.op == PARITY_OP_MAXPOOL2D_BWD) {
      const parity_maxpool2d_params& mp = node.params.maxpool2d;
      const int64_t P = vi.shape[2], Q = vi.shape[3];
      for (int64_t k = 0; k < t.numel(); ++k) {
        const int64_t p = (k / Q) % P, q = k % Q;
        const uint64_t bits = synthetic_bits(seed, 100 + i, static_cast<uint64_t>(k));
        const int64_t r = static_cast<int64_t>(bits % static_cast<uint64_t>(mp.kernel_h));
        const int64_t s = static_cast<int64_t>((bits >> 32) % static_cast<uint64_t>(mp.kernel_w));
        t.i32()[k] = static_cast<int32_t>((p * mp.stride_h + r) * mp.input_w + q * mp.stride_w + s);
      }
    }
    tensors.push_back(std::move(t));
  }
  return tensors;
}

struct OpRun {
  Plan plan;
  std::unique_ptr<Executable> exe;
  OpRun(const OpCase& c, Backend& backend, uint64_t seed) : plan(c.graph, c.outputs) {
    exe = backend.compile(plan.c_plan(), CompileOptions{}, nullptr);
    const std::vector<Tensor> inputs = op_inputs(c, seed);
    for (size_t i = 0; i < inputs.size(); ++i) exe->write(plan.value(fmt::format("in{}", i)), inputs[i].data(), inputs[i].nbytes());
  }
};

// Runs the op on `backend` and on ref at the validation batch; empty string when they agree.
std::string validate_op(const OpCase& c, Backend& backend, Backend& ref, uint64_t seed, double* worst) {
  OpRun got(c, backend, seed), want(c, ref, seed);
  got.exe->execute();
  want.exe->execute();
  *worst = 0;
  for (const std::string& out : c.outputs) {
    Tensor a = read_value(*got.exe, got.plan, out), b = read_value(*want.exe, want.plan, out);
    if (a.dtype() != DType::f32) {
      if (std::memcmp(a.data(), b.data(), a.nbytes()) != 0) return out + ": indices differ from ref";
      continue;
    }
    const Agreement ag = agreement(a.f32(), b.f32(), a.numel());
    *worst = std::max(*worst, ag.nmse);
    if (ag.nonfinite_mismatch) return out + ": NaN/Inf where ref has none (or the reverse)";
    if (!(ag.nmse <= kOpNmse)) return fmt::format("{}: NMSE {:.3g} > {:.0e}", out, ag.nmse, kOpNmse);
  }
  return "";
}

// ---------------------------------------------------------------- model cases
// One compiled model step (training or inference) on one backend, fed the synthetic batches.
class ModelRun {
 public:
  ModelRun(const ModelSpec& spec, Backend& backend, bool train, int64_t n, uint64_t seed,
           const std::map<std::string, Tensor>& weights)
      : train_(train), n_(n) {
    Graph fwd = build_forward(spec, n);
    OptimizerConfig adam;
    graph_ = train ? differentiate(fwd, fwd.find("loss"), &adam) : std::move(fwd);
    plan_ = std::make_unique<Plan>(graph_, std::vector<std::string>{"loss", "logits"});
    exe_ = backend.compile(plan_->c_plan(), CompileOptions{}, nullptr);
    for (const parity_value_desc& v : plan_->values())
      if (v.kind == PARITY_VALUE_STATE) {
        std::vector<unsigned char> zeros(static_cast<size_t>(v.bytes), 0);
        exe_->write(plan_->value(v.name), zeros.data(), zeros.size());
      }
    for (const auto& [name, t] : weights) exe_->write(plan_->value(name), t.data(), t.nbytes());
    const int64_t chw = int64_t{spec.channels} * spec.height * spec.width;
    for (int64_t b = 0; b < kSyntheticBatches; ++b) {
      xs_.emplace_back(Shape{n, spec.channels, spec.height, spec.width}, DType::f32);
      ys_.emplace_back(Shape{n}, DType::i32);
      synthetic_batch(seed, b, n, chw, spec.num_classes, xs_.back().f32(), ys_.back().i32());
    }
    x_ = plan_->value("x");
    y_ = plan_->value("y");
    loss_ = plan_->value("loss");
    if (train) step_ = plan_->value(optimizer_step_name());
    flops_ = graph_flops(graph_);
  }

  // One step on synthetic batch i % kSyntheticBatches; returns the loss.
  float run(int64_t i) {
    const Tensor& x = xs_[static_cast<size_t>(i % kSyntheticBatches)];
    const Tensor& y = ys_[static_cast<size_t>(i % kSyntheticBatches)];
    exe_->write(x_, x.data(), x.nbytes());
    exe_->write(y_, y.data(), y.nbytes());
    if (train_) {
      const int32_t t = ++steps_;
      exe_->write(step_, &t, sizeof t);
    }
    exe_->execute();
    float loss = 0;
    exe_->read(loss_, &loss, sizeof loss);
    return loss;
  }

  Tensor value(const std::string& name) const { return read_value(*exe_, *plan_, name); }
  double flops() const { return flops_; }
  int64_t batch() const { return n_; }

 private:
  bool train_;
  int64_t n_;
  Graph graph_;
  std::unique_ptr<Plan> plan_;
  std::unique_ptr<Executable> exe_;
  std::vector<Tensor> xs_, ys_;
  int32_t x_ = -1, y_ = -1, loss_ = -1, step_ = -1, steps_ = 0;
  double flops_ = 0;
};

// One step on `backend` and on ref from the same weights and batch: logits (and, training,
// the updated weights) must agree.
std::string validate_model(const ModelSpec& spec, Backend& backend, Backend& ref, bool train, int64_t n,
                           uint64_t seed, const std::map<std::string, Tensor>& weights, double* worst) {
  ModelRun got(spec, backend, train, n, seed, weights), want(spec, ref, train, n, seed, weights);
  got.run(0);
  want.run(0);
  *worst = 0;
  std::vector<std::pair<std::string, double>> checks = {{"logits", kOpNmse}, {"loss", kOpNmse}};
  if (train)
    for (const ParamSpec& p : spec.params) checks.emplace_back(p.name, kWeightNmse);
  for (const auto& [name, limit] : checks) {
    Tensor a = got.value(name), b = want.value(name);
    const Agreement ag = agreement(a.f32(), b.f32(), a.numel());
    *worst = std::max(*worst, ag.nmse);
    if (ag.nonfinite_mismatch) return name + ": NaN/Inf where ref has none (or the reverse)";
    if (!(ag.nmse <= limit)) return fmt::format("{}: NMSE {:.3g} > {:.0e}", name, ag.nmse, limit);
  }
  return "";
}

// ---------------------------------------------------------------- report
struct Report {
  json cases = json::array();
  MachineInfo machine;
  int threads = 1;
  bool failed = false;

  void header() const {
    fmt::print("{:<50} {:>7} {:>6} {:>9} {:>9} {:>9} {:>10} {:>8} {:>6} {:>6}\n", "case", "backend", "batch",
               "median ms", "min ms", "max ms", "images/s", "GFLOP/s", "%peak", "%gemm");
  }

  json add(const std::string& name, const std::string& kind, const std::string& backend, int64_t batch,
           double flops, const Timing& t, int threads_used) {
    const double median = t.median();
    json c = {{"name", name}, {"kind", kind}, {"backend", backend}, {"batch", batch}, {"threads", threads_used},
              {"flops", flops}, {"runs", t.samples.size()}, {"median_s", median}, {"min_s", t.min()},
              {"max_s", t.max()}};
    const double gflops = median > 0 ? flops / median * 1e-9 : 0;
    c["images_per_s"] = median > 0 ? batch / median : 0;
    c["gflops"] = gflops;
    c["pct_fma_peak"] = 100 * gflops / machine.fma_peak_gflops;
    c["pct_gemm"] = 100 * gflops / machine.gemm_gflops;
    fmt::print("{:<50} {:>7} {:>6} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.0f} {:>8.1f} {:>5.1f}% {:>5.1f}%\n", name, backend,
               batch, median * 1e3, t.min() * 1e3, t.max() * 1e3, c["images_per_s"].get<double>(), gflops,
               c["pct_fma_peak"].get<double>(), c["pct_gemm"].get<double>());
    std::fflush(stdout);
    return c;
  }
};

void run_op_cases(const BenchOptions& o, const ModelSpec& spec, Backend& backend, Backend& ref, Report& report) {
  std::vector<OpCase> timed = op_cases(spec, o.batch);
  std::vector<OpCase> check = op_cases(spec, std::min(o.validate_batch, o.batch));
  for (size_t i = 0; i < timed.size(); ++i) {
    const std::string name = spec.name + " " + timed[i].label;
    double worst = 0;
    const std::string why = validate_op(check[i], backend, ref, o.seed, &worst);
    if (!why.empty()) {
      fmt::print("{:<50} {:>7} FAILED validation against ref: {}\n", name, backend.name(), why);
      report.cases.push_back({{"name", name}, {"kind", "op"}, {"backend", backend.name()}, {"valid", false},
                              {"validation", why}});
      report.failed = true;
      continue;
    }
    OpRun run(timed[i], backend, o.seed);
    Timing t;
    time_runs([&] { run.exe->execute(); }, o.warmup, o.min_time, t);
    json c = report.add(name, "op", backend.name(), o.batch, timed[i].flops, t, backend.threads());
    c["valid"] = true;
    c["validation_nmse"] = worst;
    c["validation_batch"] = std::min(o.validate_batch, o.batch);
    report.cases.push_back(std::move(c));
  }
}

std::string temp_path(const std::string& what) {
  return (std::filesystem::temp_directory_path() / fmt::format("parity-bench-{}-{}", ::getpid(), what)).string();
}

void run_model_case(const BenchOptions& o, const ModelSpec& spec, const std::string& backend_name, Backend& backend,
                    Backend& ref, bool train, const std::string& weights_path, Peer* peer, Report& report) {
  const int64_t n = train ? o.batch : o.infer_batch;
  const std::string name = fmt::format("{} {}", spec.name, train ? "train step" : "inference");
  const auto weights = init_weights(spec, o.seed);
  double worst = 0;
  const std::string why = validate_model(spec, backend, ref, train, std::min(o.validate_batch, n), o.seed, weights, &worst);
  if (!why.empty()) {
    fmt::print("{:<50} {:>7} FAILED validation against ref: {}\n", name, backend_name, why);
    report.cases.push_back({{"name", name}, {"kind", "model"}, {"backend", backend_name}, {"valid", false},
                            {"validation", why}});
    report.failed = true;
    return;
  }
  ModelRun run(spec, backend, train, n, o.seed, weights);
  // The peer is validated against these: the losses of the first two steps from the same start.
  const float loss0 = run.run(0), loss1 = run.run(1);
  std::unique_ptr<Backend> single;
  std::unique_ptr<ModelRun> single_run;
  if (train && o.scaling && backend.threads() > 1 && backend_name != "ref") {
    single = make_backend(backend_name, 1);
    single_run = std::make_unique<ModelRun>(spec, *single, train, n, o.seed, weights);
  }
  // Alternate with the peer and the 1-thread run, so that machine noise hits every figure.
  const int rounds = peer || single_run ? std::max(1, o.rounds) : 1;
  Timing t, t1;
  std::vector<json> peer_rounds;
  int64_t i = 2, j = 0;
  for (int r = 0; r < rounds; ++r) {
    time_runs([&] { run.run(i++); }, r == 0 ? o.warmup : 1, o.min_time, t);
    if (single_run) time_runs([&] { single_run->run(j++); }, r == 0 ? o.warmup : 1, o.min_time, t1);
    if (peer) peer_rounds.push_back(peer->run(spec.name, train ? "train" : "infer", n, weights_path, o.min_time, o.warmup));
  }
  json c = report.add(name, "model", backend_name, n, run.flops(), t, backend.threads());
  c["valid"] = true;
  c["validation_nmse"] = worst;
  c["validation_batch"] = std::min(o.validate_batch, n);
  c["flops_per_image"] = run.flops() / n;
  c["loss0"] = loss0;
  c["loss1"] = loss1;
  if (single_run) {
    json s = report.add(name + ", 1 thread", "model", backend_name, n, run.flops(), t1, 1);
    const double scaling = t1.median() / t.median();
    c["thread_scaling"] = scaling;
    fmt::print("{:<50} {}-thread/1-thread images/s: {:.2f}x\n", "", backend.threads(), scaling);
    report.cases.push_back(std::move(s));
  }
  if (train && o.measure_rss && !o.self_path.empty()) {
    const json rss = run_rss_process(o.self_path, spec.name, backend_name, n, backend.threads(),
                                     static_cast<int64_t>(t.samples.size() / rounds) + o.warmup + 2, o.seed);
    if (rss.contains("vm_hwm_kib")) {
      c["rss_worker"] = rss;
      fmt::print("{:<50} peak resident memory of a parity training process: {:.1f} MiB\n", "",
                 rss["vm_hwm_kib"].get<double>() / 1024);
    }
  }
  if (peer) {
    json summary = summarize_peer(peer_rounds);
    if (summary.contains("images_per_s")) {
      const double peer_ips = summary["images_per_s"];
      const double ratio = c["images_per_s"].get<double>() / peer_ips;
      const double d0 = std::fabs(summary["loss0"].get<double>() - loss0);
      const double d1 = std::fabs(summary["loss1"].get<double>() - loss1);
      const bool agrees = d0 <= kPeerLossTolerance * std::max(1.0f, std::fabs(loss0)) &&
                          d1 <= kPeerLossTolerance * std::max(1.0f, std::fabs(loss1));
      summary["losses_agree"] = agrees;
      summary["ratio"] = ratio;
      summary["command"] = peer->command(spec.name, train ? "train" : "infer", n, weights_path, o.min_time, o.warmup,
                                         summary["config"].get<std::string>().find("jemalloc") != std::string::npos);
      fmt::print("{:<50} {:>7} {:>6} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.0f}   parity/torch {:.2f}x  ({}){}\n",
                 "  torch peer", "torch", n, summary["median_s"].get<double>() * 1e3,
                 summary["min_s"].get<double>() * 1e3, summary["max_s"].get<double>() * 1e3, peer_ips, ratio,
                 summary["config"].get<std::string>(),
                 agrees ? "" : fmt::format("  LOSSES DISAGREE: parity {} {} torch {} {}", loss0, loss1,
                                           summary["loss0"].get<double>(), summary["loss1"].get<double>()));
      if (summary.contains("vm_hwm_kib") && c.contains("rss_worker"))
        fmt::print("{:<50} peak resident memory: parity {:.1f} MiB, torch {:.1f} MiB\n", "",
                   c["rss_worker"]["vm_hwm_kib"].get<double>() / 1024, summary["vm_hwm_kib"].get<double>() / 1024);
      if (!o.weights_dir.empty()) fmt::print("{:<50} alone: {}\n", "", summary["command"].get<std::string>());
      if (!agrees) report.failed = true;
    } else {
      fmt::print("{:<50} torch peer failed: {}\n", "", summary.value("error", std::string("no result")));
    }
    c["peer"] = summary;
  }
  report.cases.push_back(std::move(c));
}

}  // namespace

int run_bench(const BenchOptions& o) {
  Report report;
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  report.threads = threads;
  report.machine = measure_machine(threads);
  fmt::print("machine: {} ({} hardware threads); {} threads\n", report.machine.cpu, report.machine.hardware_threads,
             threads);
  fmt::print("float32 FMA peak ({}): {:.0f} GFLOP/s; Eigen 2048x2048 matrix product: {:.0f} GFLOP/s\n",
             report.machine.isa, report.machine.fma_peak_gflops, report.machine.gemm_gflops);
  fmt::print("build: {}; git {}\n", build_options(), git_revision());

  std::unique_ptr<Peer> peer;
  if (o.against == "torch") {
    std::string why;
    peer = make_torch_peer(o.peer_path, o.jemalloc, threads, o.seed, &why);
    fmt::print("torch peer: {}\n", peer ? peer->describe() : "skipped: " + why);
  } else if (!o.against.empty()) {
    throw Error(ErrorKind::invalid_argument, "bench: --against must be torch, got '" + o.against + "'");
  }
  std::unique_ptr<Backend> ref = make_backend("ref", 1);
  json skipped = json::array();
  for (const std::string& backend_name : o.backends) {
    std::unique_ptr<Backend> backend;
    try {
      backend = make_backend(backend_name, threads);
    } catch (const Error& e) {
      fmt::print("backend {}: skipped: {}\n", backend_name, e.what());
      skipped.push_back({{"backend", backend_name}, {"reason", e.what()}});
      continue;
    }
    fmt::print("\n");
    report.header();
    for (const std::string& model : o.models) {
      const ModelSpec& spec = model_spec(model);
      std::string weights_path;
      if (peer) {
        weights_path = o.weights_dir.empty() ? temp_path(model + ".safetensors")
                                             : (std::filesystem::path(o.weights_dir) / (model + ".safetensors")).string();
        if (!o.weights_dir.empty()) std::filesystem::create_directories(o.weights_dir);
        TensorFile f;
        f.tensors = init_weights(spec, o.seed);
        write_safetensors(weights_path, f);
        write_model_description(spec, model_file_beside(weights_path));
      }
      if (o.ops) run_op_cases(o, spec, *backend, *ref, report);
      if (o.model_cases) {
        run_model_case(o, spec, backend_name, *backend, *ref, true, weights_path, peer.get(), report);
        run_model_case(o, spec, backend_name, *backend, *ref, false, weights_path, peer.get(), report);
      }
      if (!weights_path.empty() && o.weights_dir.empty()) {
        std::filesystem::remove(weights_path);
        std::filesystem::remove(model_file_beside(weights_path));
      }
    }
  }
  if (!o.json_path.empty()) {
    json out = {{"parity_bench", 1},
                {"machine",
                 {{"cpu", report.machine.cpu}, {"hardware_threads", report.machine.hardware_threads},
                  {"fma_isa", report.machine.isa}, {"fma_peak_gflops", report.machine.fma_peak_gflops},
                  {"gemm_gflops", report.machine.gemm_gflops}}},
                {"threads", threads},
                {"build", build_options()},
                {"git", git_revision()},
                {"options",
                 {{"batch", o.batch}, {"infer_batch", o.infer_batch}, {"min_time_s", o.min_time},
                  {"warmup", o.warmup}, {"rounds", o.rounds}, {"seed", o.seed}}},
                {"skipped_backends", skipped},
                {"cases", report.cases}};
    if (peer) out["peer"] = peer->describe();
    std::ofstream f(o.json_path);
    if (!f) throw Error(ErrorKind::io, "bench: cannot write " + o.json_path);
    f << out.dump(2) << "\n";
    fmt::print("\nwrote {}\n", o.json_path);
  }
  return report.failed ? 1 : 0;
}

int compare_reports(const std::string& a_path, const std::string& b_path) {
  auto load = [](const std::string& path) {
    std::ifstream f(path);
    if (!f) throw Error(ErrorKind::io, "bench compare: cannot read " + path);
    try {
      return json::parse(f);
    } catch (const json::exception& e) {
      throw Error(ErrorKind::data, "bench compare: " + path + " is not JSON: " + e.what());
    }
  };
  const json a = load(a_path), b = load(b_path);
  auto key = [](const json& c) { return c.value("name", "") + "|" + c.value("backend", "") + "|" + std::to_string(c.value("threads", 0)); };
  std::map<std::string, json> in_b;
  for (const json& c : b["cases"]) in_b[key(c)] = c;
  fmt::print("A: {} (git {}, {} threads)\nB: {} (git {}, {} threads)\n\n", a_path, a.value("git", "?"),
             a.value("threads", 0), b_path, b.value("git", "?"), b.value("threads", 0));
  fmt::print("{:<50} {:>7} {:>11} {:>11} {:>11} {:>11} {:>8}\n", "case", "backend", "A median ms", "B median ms",
             "A images/s", "B images/s", "B/A");
  for (const json& ca : a["cases"]) {
    auto it = in_b.find(key(ca));
    if (!ca.contains("median_s")) continue;
    if (it == in_b.end() || !it->second.contains("median_s")) {
      fmt::print("{:<50} {:>7} {:>11.3f} {:>11}\n", ca["name"].get<std::string>(), ca["backend"].get<std::string>(),
                 ca["median_s"].get<double>() * 1e3, "-");
      continue;
    }
    const json& cb = it->second;
    fmt::print("{:<50} {:>7} {:>11.3f} {:>11.3f} {:>11.0f} {:>11.0f} {:>7.2f}x\n", ca["name"].get<std::string>(),
               ca["backend"].get<std::string>(), ca["median_s"].get<double>() * 1e3, cb["median_s"].get<double>() * 1e3,
               ca["images_per_s"].get<double>(), cb["images_per_s"].get<double>(),
               ca["median_s"].get<double>() / cb["median_s"].get<double>());
  }
  return 0;
}

int run_rss_worker(const std::string& model, const std::string& backend_name, int64_t batch, int threads,
                   int64_t steps, uint64_t seed) {
  const ModelSpec& spec = model_spec(model);
  std::unique_ptr<Backend> backend = make_backend(backend_name, threads);
  ModelRun run(spec, *backend, true, batch, seed, init_weights(spec, seed));
  for (int64_t i = 0; i < steps; ++i) run.run(i);
  fmt::print("{}\n", json{{"vm_hwm_kib", vm_hwm_kib()}, {"steps", steps}}.dump());
  return 0;
}

}  // namespace parity::bench
