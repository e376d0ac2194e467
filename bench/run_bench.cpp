// bench/run_bench.cpp — `parity bench` from start to end: the machine measured, each backend's
// op and model cases validated against ref and timed, the LibTorch peer's rounds interleaved
// with parity's own, and the peak-memory worker.
#include <fmt/format.h>
#include <fmt/ranges.h>

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
// Under bf16 both round conv and linear operands and outputs to 8 significant bits (2^-9
// relative), at places that differ (torch's oneDNN kernels block and order the sums their own
// way; each side's one-ulp flips land on other elements): logits differ by a few 2^-9 relative,
// and the loss of a fresh model (~2.3) by ~1e-3. 1e-2 keeps that margin while a wrong layer,
// weight or batch (which moves the first loss by percent) still fails.
constexpr double kPeerHalfLossTolerance = 1e-2;

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

// One precision of a model case: its step on the backend (validated against ref under the same
// precision) and the timings of its rounds.
struct PrecisionArm {
  Precision precision = Precision::f32;
  std::unique_ptr<ModelCaseStep> run;
  double worst = 0;  // validation NMSE
  float loss0 = 0, loss1 = 0;
  int64_t next_batch = 2;
  Timing t;
  std::vector<double> round_ips;  // each round's median images/s
};

// Prints the peer's row and the losses' agreement with parity's; returns the summary with
// "losses_agree", "ratio" and "command" added. `tolerance` relative to max(1, |loss|).
json report_peer(const BenchOptions& o, const ModelSpec& spec, const std::string& mode, int64_t n,
                 const std::string& weights_path, Peer& peer, const std::vector<json>& rounds, double parity_ips,
                 float loss0, float loss1, const std::string& autocast, double tolerance, Report& report) {
  json summary = summarize_peer(rounds);
  const std::string label = autocast.empty() ? "  torch peer" : "  torch peer, autocast " + autocast;
  if (!summary.contains("images_per_s")) {
    fmt::print("{:<50} torch peer{} failed: {}\n", "", autocast.empty() ? "" : " (autocast " + autocast + ")",
               summary.value("error", std::string("no result")));
    return summary;
  }
  const double peer_ips = summary["images_per_s"];
  const double ratio = parity_ips / peer_ips;
  const double d0 = std::fabs(summary["loss0"].get<double>() - loss0);
  const double d1 = std::fabs(summary["loss1"].get<double>() - loss1);
  const bool agrees = d0 <= tolerance * std::max(1.0f, std::fabs(loss0)) &&
                      d1 <= tolerance * std::max(1.0f, std::fabs(loss1));
  summary["losses_agree"] = agrees;
  summary["ratio"] = ratio;
  summary["command"] = peer.command(spec.name, mode, n, weights_path, o.min_time, o.warmup,
                                    summary["config"].get<std::string>().find("jemalloc") != std::string::npos,
                                    autocast);
  fmt::print("{:<50} {:>7} {:>6} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.0f}   parity/torch {:.2f}x  ({}){}\n", label,
             "torch", n, summary["median_s"].get<double>() * 1e3, summary["min_s"].get<double>() * 1e3,
             summary["max_s"].get<double>() * 1e3, peer_ips, ratio, summary["config"].get<std::string>(),
             agrees ? "" : fmt::format("  LOSSES DISAGREE: parity {} {} torch {} {}", loss0, loss1,
                                       summary["loss0"].get<double>(), summary["loss1"].get<double>()));
  if (!o.weights_dir.empty()) fmt::print("{:<50} alone: {}\n", "", summary["command"].get<std::string>());
  if (!agrees) report.failed = true;
  return summary;
}

// Images/s of `half` over `f32`, paired round by round: the thread-scaling statistic (median of
// the per-round ratios) and its inconclusive rule (bench/thread_scaling.h), printed as
// "<what> images/s: <verdict> (...)" and returned as JSON.
json precision_ratio(const std::string& what, const std::vector<double>& f32, const std::vector<double>& half) {
  const ScalingSummary s = summarize_scaling(f32, half);
  const std::string verdict = scaling_verdict(s);
  std::vector<double> per_round;
  for (size_t i = 0; i < f32.size(); ++i) per_round.push_back(half[i] / f32[i]);
  // Inconclusive: the rounds' own ratios, for the reader to see how far apart they are.
  fmt::print("{:<50} {} images/s: {}{}\n", "", what, verdict,
             s.conclusive ? fmt::format(" (median of {} per-round ratios; noise {:.1f}%)", s.rounds, 100 * s.noise)
                          : fmt::format(" (per-round ratios {:.2f})", fmt::join(per_round, " ")));
  return {{"ratio", s.conclusive ? json(s.ratio) : json(nullptr)}, {"verdict", verdict},
          {"noise", s.noise}, {"rounds", s.rounds}, {"ratio_of_medians", s.ratio_of_medians},
          {"round_ratios", per_round}};
}

// The images/s of each round's peer run, failed rounds left out.
std::vector<double> peer_round_ips(const std::vector<json>& rounds) {
  std::vector<double> ips;
  for (const json& r : rounds)
    if (!r.contains("error")) ips.push_back(r.value("images_per_s", 0.0));
  return ips;
}

void run_model_case(const BenchOptions& o, const ModelSpec& spec, const std::string& backend_name, Backend& backend,
                    Backend& ref, bool train, const std::string& weights_path, Peer* peer, Report& report) {
  const int64_t n = train ? o.batch : o.infer_batch;
  const std::string base_name = fmt::format("{} {}", spec.name, train ? "train step" : "inference");
  const auto case_name = [&](Precision p) {
    return p == Precision::f32 ? base_name : fmt::format("{}, {}", base_name, precision_name(p));
  };
  const auto weights = init_weights(spec, o.seed);
  const int64_t validate_n = std::min(o.validate_batch, n);
  // Inference is timed at f32 only; training at every --precision.
  const std::vector<Precision> precisions = train ? o.precisions : std::vector<Precision>{Precision::f32};
  std::vector<PrecisionArm> arms;
  for (const Precision p : precisions) {
    PrecisionArm arm;
    arm.precision = p;
    try {
      const std::string why = validate_model(spec, backend, ref, train, validate_n, o.seed, weights, &arm.worst, p);
      if (!why.empty()) {
        report.add_invalid(case_name(p), "model", backend_name, why);
        continue;
      }
      arm.run = std::make_unique<ModelCaseStep>(spec, backend, train, n, o.seed, weights, p);
    } catch (const Error& e) {
      // The backend refuses the half values the policy asks for: skip this precision, say why.
      if (e.kind() != ErrorKind::backend || p == Precision::f32) throw;
      const std::string why =
          fmt::format("--precision {} cannot run on backend '{}': {}", precision_name(p), backend_name, e.what());
      fmt::print("{:<50} {:>7} skipped: {}\n", case_name(p), backend_name, why);
      report.cases.push_back({{"name", case_name(p)}, {"kind", "model"}, {"backend", backend_name},
                              {"precision", precision_name(p)}, {"skipped", why}});
      continue;
    }
    // The peer is validated against these: the losses of the first two steps from the same start.
    arm.loss0 = arm.run->run(0);
    arm.loss1 = arm.run->run(1);
    arms.push_back(std::move(arm));
  }
  if (arms.empty()) return;
  PrecisionArm* f32 = nullptr;
  PrecisionArm* bf16 = nullptr;
  for (PrecisionArm& a : arms) {
    if (a.precision == Precision::f32) f32 = &a;
    if (a.precision == Precision::bf16) bf16 = &a;
  }
  std::unique_ptr<Backend> single;
  std::unique_ptr<ModelCaseStep> single_run;
  if (f32 && train && o.scaling && backend.threads() > 1 && backend_name != "ref") {
    single = make_backend(backend_name, 1);
    single_run = std::make_unique<ModelCaseStep>(spec, *single, train, n, o.seed, weights);
  }
  // The peer runs f32 beside parity's f32 and, training, CPU bf16 autocast beside parity's bf16.
  Peer* peer_f32 = f32 ? peer : nullptr;
  Peer* peer_bf16 = train && bf16 ? peer : nullptr;
  // Alternate the precisions, the peer and the 1-thread run, so that machine noise hits every figure.
  const int rounds = peer_f32 || peer_bf16 || single_run || arms.size() > 1 ? std::max(1, o.rounds) : 1;
  Timing t1;
  std::vector<double> round_ips1;  // each round's median images/s: the thread-scaling line
  const auto round_median_ips = [n](const Timing& all, size_t from) {
    return static_cast<double>(n) / median_of(std::vector<double>(all.samples.begin() + from, all.samples.end()));
  };
  std::vector<json> peer_rounds, peer_bf16_rounds;
  int64_t j = 0;
  for (int r = 0; r < rounds; ++r) {
    for (PrecisionArm& a : arms) {
      const size_t from = a.t.samples.size();
      time_runs([&] { a.run->run(a.next_batch++); }, r == 0 ? o.warmup : 1, o.min_time, a.t);
      a.round_ips.push_back(round_median_ips(a.t, from));
    }
    if (single_run) {
      const size_t from1 = t1.samples.size();
      time_runs([&] { single_run->run(j++); }, r == 0 ? o.warmup : 1, o.min_time, t1);
      round_ips1.push_back(round_median_ips(t1, from1));
    }
    if (peer_f32)
      peer_rounds.push_back(peer->run(spec.name, train ? "train" : "infer", n, weights_path, o.min_time, o.warmup));
    if (peer_bf16)
      peer_bf16_rounds.push_back(peer->run(spec.name, "train", n, weights_path, o.min_time, o.warmup, "bf16"));
  }
  std::vector<json> rows;
  for (PrecisionArm& a : arms) {
    json c = report.add(case_name(a.precision), "model", backend_name, n, a.run->flops(), a.t, backend.threads());
    c["valid"] = true;
    c["precision"] = precision_name(a.precision);
    c["validation_nmse"] = a.worst;
    c["validation_batch"] = validate_n;
    c["flops_per_image"] = a.run->flops() / n;
    c["loss0"] = a.loss0;
    c["loss1"] = a.loss1;
    c["round_images_per_s"] = a.round_ips;
    if (a.precision != Precision::f32 && f32) {
      c["ratio_to_f32"] =
          precision_ratio(fmt::format("{}/f32", precision_name(a.precision)), f32->round_ips, a.round_ips);
    }
    if (a.precision == Precision::f16 && train)
      c["note"] = "the autocast step without loss scaling (parity train adds a host round trip of the gradients)";
    rows.push_back(std::move(c));
  }
  json* c = nullptr;  // the f32 row: the 1-thread run, the peak memory and the f32 peer belong to it
  for (size_t k = 0; k < arms.size(); ++k)
    if (arms[k].precision == Precision::f32) c = &rows[k];
  if (single_run) {
    json s = report.add(base_name + ", 1 thread", "model", backend_name, n, f32->run->flops(), t1, 1);
    // The rule of `--thread-scaling` (bench/thread_scaling.h), over these --rounds rounds.
    const ScalingSummary scaling = summarize_scaling(round_ips1, f32->round_ips);
    (*c)["thread_scaling"] = scaling.conclusive ? json(scaling.ratio) : json(nullptr);  // null: inconclusive
    (*c)["thread_scaling_verdict"] = scaling_verdict(scaling);
    (*c)["thread_scaling_noise"] = scaling.noise;
    (*c)["thread_scaling_rounds"] = scaling.rounds;
    fmt::print("{:<50} {}-thread/1-thread images/s: {} (median of {} per-round ratios; noise {:.1f}%)\n", "",
               backend.threads(), scaling_verdict(scaling), scaling.rounds, 100 * scaling.noise);
    report.cases.push_back(std::move(s));
  }
  if (c && train && o.measure_rss && !o.self_path.empty()) {
    const json rss = run_rss_process(o.self_path, spec.name, backend_name, n, backend.threads(),
                                     static_cast<int64_t>(f32->t.samples.size() / rounds) + o.warmup + 2, o.seed);
    if (rss.contains("vm_hwm_kib")) {
      (*c)["rss_worker"] = rss;
      fmt::print("{:<50} peak resident memory of a parity training process: {:.1f} MiB\n", "",
                 rss["vm_hwm_kib"].get<double>() / 1024);
    }
  }
  const std::string mode = train ? "train" : "infer";
  if (peer_f32) {
    json summary = report_peer(o, spec, mode, n, weights_path, *peer, peer_rounds, (*c)["images_per_s"].get<double>(),
                               f32->loss0, f32->loss1, "", kPeerLossTolerance, report);
    if (summary.contains("vm_hwm_kib") && c->contains("rss_worker"))
      fmt::print("{:<50} peak resident memory: parity {:.1f} MiB, torch {:.1f} MiB\n", "",
                 (*c)["rss_worker"]["vm_hwm_kib"].get<double>() / 1024, summary["vm_hwm_kib"].get<double>() / 1024);
    (*c)["peer"] = summary;
  }
  if (peer_bf16) {
    json& row = rows[static_cast<size_t>(bf16 - arms.data())];
    json summary = report_peer(o, spec, mode, n, weights_path, *peer, peer_bf16_rounds,
                               row["images_per_s"].get<double>(), bf16->loss0, bf16->loss1, "bf16",
                               kPeerHalfLossTolerance, report);
    // torch's own bf16/f32, paired round by round as parity's
    const std::vector<double> ips32 = peer_round_ips(peer_rounds), ips16 = peer_round_ips(peer_bf16_rounds);
    if (!ips32.empty() && ips32.size() == ips16.size())
      summary["ratio_to_f32"] = precision_ratio("torch bf16/f32", ips32, ips16);
    row["peer"] = summary;
  }
  if (peer && train && std::find(precisions.begin(), precisions.end(), Precision::f16) != precisions.end())
    fmt::print("{:<50} torch peer at fp16: not run: PyTorch 1.13's CPU autocast runs bf16 only (fp16 autocast is "
               "CUDA's)\n", "");
  for (json& row : rows) report.cases.push_back(std::move(row));
}

// The backends' training steps paired round by round (bench/thread_scaling.h: measure_head_to_head):
// the first backend of --backend against each later one that loads, ref left out (the oracle, not
// a contender).
void run_head_to_head(const BenchOptions& o, Backend& ref, Report& report) {
  std::vector<std::pair<std::string, std::unique_ptr<Backend>>> contenders;
  for (const std::string& name : o.backends) {
    if (name == "ref" || std::any_of(contenders.begin(), contenders.end(), [&](const auto& c) { return c.first == name; }))
      continue;
    try {
      contenders.emplace_back(name, make_backend(name, report.threads));
    } catch (const Error&) {
      // said when its own section was skipped
    }
  }
  if (contenders.size() < 2) return;
  fmt::print("\nhead to head: each model's training step on {} against {}, alternated for {} rounds (--scaling-rounds); "
             "a round restarts from the same weights, runs {} warm-up step(s), then times steps for --min-time {} s and "
             "takes their median; noise limit {:.0f}%\n",
             contenders.front().first, contenders.size() == 2 ? contenders[1].first : "each other backend",
             o.scaling_rounds, o.warmup, o.min_time, 100 * kScalingNoiseLimit);
  for (const std::string& model : o.models) {
    const ModelSpec spec = load_model(model);
    for (size_t k = 1; k < contenders.size(); ++k)
      report.head_to_head.push_back(measure_head_to_head(o, spec, contenders[k].first, *contenders[k].second,
                                                         contenders.front().first, *contenders.front().second, ref,
                                                         &report.failed));
  }
}

}  // namespace

int run_bench(const BenchOptions& o) {
  if (o.model_cases && o.head_to_head && o.backends.size() > 1 && o.scaling_rounds < kMinScalingRounds)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("bench --scaling-rounds: the head-to-head of several backends takes at least {} rounds "
                            "(fewer give no usable spread), got {} (or pass --no-head-to-head)",
                            kMinScalingRounds, o.scaling_rounds));
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
  if (o.model_cases && o.head_to_head) run_head_to_head(o, *ref, report);
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
