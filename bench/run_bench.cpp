// bench/run_bench.cpp — `parity bench` from start to end: the machine measured, each backend's
// op and model cases validated against ref and timed, the LibTorch peer's rounds interleaved
// with parity's own, and the peak-memory worker.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bench/cases.h"
#include "bench/machine.h"
#include "bench/peer.h"
#include "bench/report.h"
#include "bench/thread_scaling.h"
#include "bench/timing.h"
#include "check/torch_peer_launcher.h"
#include "model/model_description.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/model.h"
#include "parity/safetensors.h"

namespace parity::bench {
namespace {

using json = nlohmann::json;

// parity and the peer compute the same float32 loss in different orders.
constexpr double kPeerLossTolerance = 1e-4;

void run_op_cases(const BenchOptions& o, const ModelSpec& spec, Backend& backend, Backend& ref, Report& report) {
  std::vector<OpCase> timed = op_cases(spec, o.batch);
  std::vector<OpCase> check = op_cases(spec, std::min(o.validate_batch, o.batch));
  for (size_t i = 0; i < timed.size(); ++i) {
    const std::string name = spec.name + " " + timed[i].label;
    double worst = 0;
    const std::string why = validate_op(check[i], backend, ref, o.seed, &worst);
    if (!why.empty()) {
      report.add_invalid(name, "op", backend.name(), why);
      continue;
    }
    CompiledStep step = compile_op_case(timed[i], backend, o.seed);
    Timing t;
    time_runs([&] { step.execute(); }, o.warmup, o.min_time, t);
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
    report.add_invalid(name, "model", backend_name, why);
    return;
  }
  ModelCaseStep run(spec, backend, train, n, o.seed, weights);
  // The peer is validated against these: the losses of the first two steps from the same start.
  const float loss0 = run.run(0), loss1 = run.run(1);
  std::unique_ptr<Backend> single;
  std::unique_ptr<ModelCaseStep> single_run;
  if (train && o.scaling && backend.threads() > 1 && backend_name != "ref") {
    single = make_backend(backend_name, 1);
    single_run = std::make_unique<ModelCaseStep>(spec, *single, train, n, o.seed, weights);
  }
  // Alternate with the peer and the 1-thread run, so that machine noise hits every figure.
  const int rounds = peer || single_run ? std::max(1, o.rounds) : 1;
  Timing t, t1;
  std::vector<double> round_ips, round_ips1;  // each round's median images/s: the thread-scaling line
  const auto round_median_ips = [n](const Timing& all, size_t from) {
    return static_cast<double>(n) / median_of(std::vector<double>(all.samples.begin() + from, all.samples.end()));
  };
  std::vector<json> peer_rounds;
  int64_t i = 2, j = 0;
  for (int r = 0; r < rounds; ++r) {
    const size_t from = t.samples.size(), from1 = t1.samples.size();
    time_runs([&] { run.run(i++); }, r == 0 ? o.warmup : 1, o.min_time, t);
    round_ips.push_back(round_median_ips(t, from));
    if (single_run) {
      time_runs([&] { single_run->run(j++); }, r == 0 ? o.warmup : 1, o.min_time, t1);
      round_ips1.push_back(round_median_ips(t1, from1));
    }
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
    // The rule of `--thread-scaling` (bench/thread_scaling.h), over these --rounds rounds.
    const ScalingSummary scaling = summarize_scaling(round_ips1, round_ips);
    c["thread_scaling"] = scaling.conclusive ? json(scaling.ratio) : json(nullptr);  // null: inconclusive
    c["thread_scaling_verdict"] = scaling_verdict(scaling);
    c["thread_scaling_noise"] = scaling.noise;
    c["thread_scaling_rounds"] = scaling.rounds;
    fmt::print("{:<50} {}-thread/1-thread images/s: {} (median of {} per-round ratios; noise {:.1f}%)\n", "",
               backend.threads(), scaling_verdict(scaling), scaling.rounds, 100 * scaling.noise);
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
      const ModelSpec spec = load_model(model);
      std::string weights_path;
      // The LibTorch peer builds its modules from a layer list, which a model file has not.
      Peer* model_peer = spec.layer_graph ? nullptr : peer.get();
      if (peer && !model_peer) fmt::print("model {}: the LibTorch peer takes built-in models only: no peer figures\n", model);
      if (model_peer) {
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
        run_model_case(o, spec, backend_name, *backend, *ref, true, weights_path, model_peer, report);
        run_model_case(o, spec, backend_name, *backend, *ref, false, weights_path, model_peer, report);
      }
      if (!weights_path.empty() && o.weights_dir.empty()) {
        std::filesystem::remove(weights_path);
        std::filesystem::remove(model_file_beside(weights_path));
      }
    }
  }
  if (!o.json_path.empty()) write_report_json(o.json_path, report, o, skipped, peer ? peer->describe() : "");
  return report.failed ? 1 : 0;
}

int run_rss_worker(const std::string& model, const std::string& backend_name, int64_t batch, int threads,
                   int64_t steps, uint64_t seed) {
  const ModelSpec spec = load_model(model);
  std::unique_ptr<Backend> backend = make_backend(backend_name, threads);
  ModelCaseStep run(spec, *backend, true, batch, seed, init_weights(spec, seed));
  for (int64_t i = 0; i < steps; ++i) run.run(i);
  fmt::print("{}\n", json{{"vm_hwm_kib", vm_hwm_kib()}, {"steps", steps}}.dump());
  return 0;
}

}  // namespace parity::bench
