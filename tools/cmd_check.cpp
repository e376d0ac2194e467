// tools/cmd_check.cpp — `parity check ops | model | determinism | onnx`: cross-backend
// correctness reports as a terminal table (colour on a TTY only) and as JSON; exit 0 only when
// all passed.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "check/torch_peer_launcher.h"
#include "util/atomic_file.h"
#include "ops/conformance.h"
#include "parity/check.h"
#include "parity/parity.h"
#include "tools/commands.h"
#include "tools/threads_option.h"

namespace parity::tools {
namespace {

bool colour() { return ::isatty(STDOUT_FILENO) != 0; }

std::string verdict(bool pass) {
  if (!colour()) return pass ? "pass" : "FAIL";
  return pass ? "\x1b[32mpass\x1b[0m" : "\x1b[1;31mFAIL\x1b[0m";
}

std::string threshold_text(double t) { return t == 0 ? "exact" : fmt::format("{:.0e}", t); }

nlohmann::json diff_json(const TensorDiff& d) {
  nlohmann::json worst = nlohmann::json::array();
  for (const WorstElement& w : d.worst) worst.push_back({{"index", w.index}, {"got", w.got}, {"want", w.want}});
  return {{"name", d.name}, {"node", d.node}, {"op", d.op}, {"role", d.role}, {"shape", d.shape.dims()},
          {"nmse", d.nmse}, {"max_abs", d.max_abs}, {"max_rel", d.max_rel},
          {"nonfinite_mismatch", d.nonfinite_mismatch}, {"threshold", d.threshold}, {"pass", d.pass},
          {"note", d.note}, {"worst", worst}};
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (!path.empty()) write_file_atomically(path, j.dump(2) + "\n");
}

void print_worst(const TensorDiff& d) {
  for (const WorstElement& w : d.worst) fmt::print("      [{}] got {:.9g}, want {:.9g}\n", w.index, w.got, w.want);
}

int run_check_ops(const std::string& backends, const OpCheckOptions& base, const std::string& json) {
  OpCheckOptions o = base;
  o.backends = resolve_backend_list(backends);
  // ref is the oracle every case is compared with; checking it against itself says nothing.
  o.backends.erase(std::remove(o.backends.begin(), o.backends.end(), "ref"), o.backends.end());
  std::vector<OpCaseResult> results = check_ops(o);
  int passed = 0, failed = 0, skipped = 0;
  fmt::print("{:<6} {:<19} {:<44} {:<18} {:>9} {:>9} {:>9} {:>6}  {}\n", "back", "op", "case", "output", "nmse",
             "max abs", "max rel", "limit", "result");
  nlohmann::json cases = nlohmann::json::array();
  for (const OpCaseResult& r : results) {
    nlohmann::json jc = {{"backend", r.backend}, {"op", r.op}, {"case", r.label}, {"skipped", r.skipped},
                         {"skip_reason", r.skip_reason}, {"pass", r.pass()}, {"outputs", nlohmann::json::array()}};
    if (r.skipped) {
      ++skipped;
      fmt::print("{:<6} {:<19} {:<44} skipped: {}\n", r.backend, r.op, r.label, r.skip_reason);
    } else {
      (r.pass() ? passed : failed)++;
      for (const TensorDiff& d : r.outputs) {
        fmt::print("{:<6} {:<19} {:<44} {:<18} {:>9.2e} {:>9.2e} {:>9.2e} {:>6}  {}\n", r.backend, r.op, r.label, d.name,
                   d.nmse, d.max_abs, d.max_rel, threshold_text(d.threshold), verdict(d.pass));
        if (!d.pass) print_worst(d);
        jc["outputs"].push_back(diff_json(d));
      }
    }
    cases.push_back(jc);
  }
  fmt::print("check ops{}{}: {} passed, {} failed, {} skipped\n",
             o.exact ? " (exact mode)" : o.gradient ? " (gradient mode)" : "",
             o.precision == "all" ? "" : fmt::format(" (precision {})", o.precision), passed, failed, skipped);
  write_json(json, {{"command", "check ops"}, {"exact", o.exact}, {"gradient", o.gradient},
                    {"precision", o.precision}, {"cases", cases},
                    {"passed", passed}, {"failed", failed}, {"skipped", skipped}});
  return failed == 0 ? 0 : 1;
}

int run_check_model(const ModelCheckOptions& o, const std::string& json) {
  ModelCheckReport r = check_model(o);
  fmt::print("check model {}: {} against {}, one training step (Adam). Every value is kept and compared where the graph\n"
             "produces it, so a backend that fuses nodes (cpu: conv+bias+relu, maxpool-bwd+relu-bwd) runs them unfused here;\n"
             "the rows marked 'train plan' rerun the step as `parity train` compiles it (fusion on) and compare its loss,\n"
             "updated weights and optimizer state\n",
             o.model, r.backend, r.against);
  if (o.precision != Precision::f32)
    fmt::print("precision {}: the graph autocast as parity train --precision {} runs it (one step, no loss scaling)\n",
               precision_name(o.precision), precision_name(o.precision));
  fmt::print("{:>3} {:<22} {:<18} {:<34} {:<15} {:<16} {:>9} {:>9} {:>6}  {}\n", "#", "node", "op", "value", "role",
             "shape", "nmse", "max abs", "limit", "result");
  nlohmann::json values = nlohmann::json::array();
  for (size_t i = 0; i < r.values.size(); ++i) {
    const TensorDiff& d = r.values[i];
    fmt::print("{:>3} {:<22} {:<18} {:<34} {:<15} {:<16} {:>9.2e} {:>9.2e} {:>6}  {}\n", i, d.node, d.op, d.name, d.role,
               d.shape.str(), d.nmse, d.max_abs, threshold_text(d.threshold), verdict(d.pass));
    values.push_back(diff_json(d));
  }
  if (r.first_failure >= 0) {
    const TensorDiff& d = r.values[static_cast<size_t>(r.first_failure)];
    fmt::print("first divergence: node '{}' ({}) value '{}' {}: nmse {:.3e} > {} (max abs {:.3e}, max rel {:.3e}); worst elements:\n",
               d.node, d.op, d.name, d.shape.str(), d.nmse, threshold_text(d.threshold), d.max_abs, d.max_rel);
    print_worst(d);
  } else {
    fmt::print("all {} values agree within their thresholds\n", r.values.size());
  }
  if (r.not_compared > 0)
    fmt::print("{} values of the graph are not exposed by {} and were not compared (e.g. dL/dL, accuracy)\n",
               r.not_compared, r.against);
  nlohmann::json drift = nlohmann::json::array();
  if (r.drift.size() > 1) fmt::print("{:>5} {:>14} {:>14} {:>14}\n", "step", "loss " + r.backend, "loss " + r.against, "weights nmse");
  for (const StepDrift& s : r.drift) {
    if (r.drift.size() > 1) fmt::print("{:>5} {:>14.8f} {:>14.8f} {:>14.3e}\n", s.step, s.loss_a, s.loss_b, s.weights_nmse);
    drift.push_back({{"step", s.step}, {"loss_backend", s.loss_a}, {"loss_against", s.loss_b}, {"weights_nmse", s.weights_nmse}});
  }
  if (!o.dump.empty()) fmt::print("every value of both sides written to {}/\n", o.dump);
  write_json(json, {{"command", "check model"}, {"model", o.model}, {"backend", r.backend}, {"against", r.against},
                    {"precision", precision_name(o.precision)}, {"pass", r.pass()}, {"first_failure", r.first_failure}, {"values", values}, {"drift", drift}});
  return r.pass() ? 0 : 1;
}

// `check model` under mpirun: the check on every rank (rank 0 prints it), then the replicas of a
// data-parallel run against rank 0's. A rank that fails either fails the job on every rank.
int run_check_model_on_ranks(const ModelCheckOptions& o, const std::string& json, CommunicatorDataParallel& dp) {
  int status = 0;
  if (dp.rank() == 0) {
    status = run_check_model(o, json);
  } else {
    status = check_model(o).pass() ? 0 : 1;
  }
  double failed[1] = {status != 0 ? 1.0 : 0.0};
  dp.sum(failed, 1);
  const ReplicaCheckReport r = check_replicas(o, dp);
  if (dp.rank() != 0) return failed[0] > 0 || !r.pass() ? 1 : 0;
  fmt::print("check model on {} ranks: {}\n", dp.size(),
             failed[0] > 0 ? fmt::format("{} of them failed the check against {}", failed[0], o.against)
                           : fmt::format("every rank passed the check against {}", o.against));
  fmt::print("replicas: {} data-parallel steps on {} (global batch {}), {} tensors ({} elements) of weights, optimizer "
             "state and buffers compared with rank 0's after each step\n",
             r.steps, o.backend, o.batch, r.tensors, r.elements);
  for (const ReplicaDivergence& d : r.divergences)
    fmt::print("rank {} diverges from rank 0 after step {}: {} elements differ (max |difference| {:.3e}), first in '{}'\n",
               d.rank, d.step, d.elements, d.max_abs, d.tensor);
  if (r.pass()) fmt::print("every replica is bitwise equal to rank 0's after every step\n");
  return failed[0] > 0 || !r.pass() ? 1 : 0;
}

struct OnnxSuiteCommand {
  std::string dir = OnnxSuiteOptions{}.dir;
  std::string backends = "all";
  std::string filter, json;
  int threads = 0;
  int64_t min_passed = 0;
  bool verbose = false;
};

struct StatusCounts {
  int64_t passed = 0, failed = 0, skipped = 0;
  void add(OnnxTestStatus s) { (s == OnnxTestStatus::passed ? passed : s == OnnxTestStatus::failed ? failed : skipped)++; }
};

nlohmann::json onnx_result_json(const OnnxTestResult& r) {
  nlohmann::json outputs = nlohmann::json::array();
  for (const OnnxOutputCheck& c : r.outputs) {
    nlohmann::json j = diff_json(c.diff);
    j["data_set"] = c.data_set;
    j["folded_at_import"] = c.folded;
    j["outside_allclose"] = c.outside_allclose;
    if (c.outside_allclose > 0)
      j["worst_allclose"] = {{"index", c.worst_allclose.index}, {"got", c.worst_allclose.got}, {"want", c.worst_allclose.want}};
    j["pass"] = c.pass();
    outputs.push_back(std::move(j));
  }
  nlohmann::json j = {{"folder", r.folder}, {"test", r.test}, {"backend", r.backend}, {"status", to_string(r.status)},
                      {"outputs", outputs}};
  if (!r.reason.empty()) j["reason"] = r.reason;
  if (!r.reason_group.empty()) j["reason_group"] = r.reason_group;
  return j;
}

// One line per output that failed, with its worst element by the ONNX rule and by NMSE.
void print_onnx_failure(const OnnxTestResult& r) {
  fmt::print("  {}/{} on {}{}\n", r.folder, r.test, r.backend, r.reason.empty() ? "" : ": " + r.reason);
  for (const OnnxOutputCheck& c : r.outputs) {
    if (c.pass()) continue;
    fmt::print("    output '{}' {} (data set {}{}): {} elements outside {:g} + {:g} |want|, nmse {:.3e} (bound {}){}\n",
               c.name, c.diff.shape.str(), c.data_set, c.folded ? ", folded at import" : "", c.outside_allclose,
               kOnnxSuiteAtol, kOnnxSuiteRtol, c.diff.nmse, threshold_text(c.diff.threshold),
               c.diff.note.empty() ? "" : "; " + c.diff.note);
    if (c.outside_allclose > 0)
      fmt::print("      farthest outside the ONNX rule: [{}] got {:.9g}, want {:.9g}\n", c.worst_allclose.index,
                 c.worst_allclose.got, c.worst_allclose.want);
    fmt::print("      largest differences:\n");
    print_worst(c.diff);
  }
}

int run_check_onnx(const OnnxSuiteCommand& cmd) {
  OnnxSuiteOptions o;
  o.dir = cmd.dir;
  o.backends = resolve_backend_list(cmd.backends);
  o.filter = cmd.filter;
  o.threads = cmd.threads;
  const std::vector<OnnxTestResult> results = check_onnx_suite(o);

  std::map<std::string, std::map<std::string, StatusCounts>> by_folder;  // folder -> backend -> counts
  std::map<std::string, StatusCounts> by_backend;
  for (const OnnxTestResult& r : results) {
    by_folder[r.folder][r.backend].add(r.status);
    by_backend[r.backend].add(r.status);
  }
  fmt::print("check onnx {}: {} test(s) on {}. An output passes when every element has |got - want| <= {:g} + {:g} |want|\n"
             "(the ONNX runner's rule) and its NMSE is within the bound of the ops it depends on (parity's own)\n",
             o.dir, results.size() / o.backends.size(), fmt::join(o.backends, ", "), kOnnxSuiteAtol, kOnnxSuiteRtol);
  if (cmd.verbose) {
    for (const OnnxTestResult& r : results) {
      std::string worst;
      double nmse = 0;
      for (const OnnxOutputCheck& c : r.outputs) nmse = std::max(nmse, c.diff.nmse);
      if (r.status == OnnxTestStatus::passed) worst = fmt::format("largest nmse {:.2e}", nmse);
      fmt::print("{:<8} {:<6} {}/{}  {}\n", to_string(r.status), r.backend, r.folder, r.test,
                 r.status == OnnxTestStatus::passed ? worst : r.reason);
    }
  }
  fmt::print("{:<20} {:<8} {:>7} {:>7} {:>8}\n", "folder", "backend", "passed", "failed", "skipped");
  for (const auto& [folder, backends] : by_folder)
    for (const std::string& be : o.backends) {
      const StatusCounts& c = backends.at(be);
      fmt::print("{:<20} {:<8} {:>7} {:>7} {:>8}\n", folder, be, c.passed, c.failed, c.skipped);
    }
  for (const std::string& be : o.backends) {
    const StatusCounts& c = by_backend.at(be);
    fmt::print("{:<20} {:<8} {:>7} {:>7} {:>8}\n", "all", be, c.passed, c.failed, c.skipped);
  }

  // Skips grouped by their reason, the most frequent first, with the backends they apply to.
  struct Group {
    std::set<std::string> tests, backends;
  };
  std::map<std::string, Group> groups;
  for (const OnnxTestResult& r : results) {
    if (r.status != OnnxTestStatus::skipped) continue;
    Group& g = groups[r.reason_group];
    g.tests.insert(r.folder + "/" + r.test);
    g.backends.insert(r.backend);
  }
  std::vector<std::pair<std::string, const Group*>> ordered;
  for (const auto& [reason, g] : groups) ordered.emplace_back(reason, &g);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& a, const auto& b) { return a.second->tests.size() > b.second->tests.size(); });
  if (!ordered.empty() && !cmd.verbose) {
    fmt::print("skipped, by reason (--verbose lists every test with its full reason):\n");
    for (const auto& [reason, g] : ordered) {
      std::vector<std::string> examples(g->tests.begin(), g->tests.end());
      const size_t more = examples.size() > 3 ? examples.size() - 3 : 0;
      examples.resize(std::min<size_t>(examples.size(), 3));
      const std::string where = g->backends.size() == o.backends.size() ? "" : fmt::format(" [on {}]", fmt::join(g->backends, ", "));
      fmt::print("  {:>4}  {}{}  ({}{})\n", g->tests.size(), reason, where, fmt::join(examples, ", "),
                 more ? fmt::format(", {} more", more) : "");
    }
  }
  int64_t failed = 0;
  for (const OnnxTestResult& r : results) failed += r.status == OnnxTestStatus::failed;
  if (failed > 0) {
    fmt::print("failed:\n");
    for (const OnnxTestResult& r : results)
      if (r.status == OnnxTestStatus::failed) print_onnx_failure(r);
  }
  bool floor_met = true;
  for (const std::string& be : o.backends) {
    if (by_backend.at(be).passed >= cmd.min_passed) continue;
    floor_met = false;
    fmt::print("{}: {} passed, below --min-passed {}\n", be, by_backend.at(be).passed, cmd.min_passed);
  }
  fmt::print("check onnx: {}\n", verdict(failed == 0 && floor_met));

  if (!cmd.json.empty()) {
    nlohmann::json summary = nlohmann::json::object();
    for (const auto& [folder, backends] : by_folder)
      for (const auto& [be, c] : backends)
        summary[folder][be] = {{"passed", c.passed}, {"failed", c.failed}, {"skipped", c.skipped}};
    for (const auto& [be, c] : by_backend) summary["all"][be] = {{"passed", c.passed}, {"failed", c.failed}, {"skipped", c.skipped}};
    nlohmann::json tests = nlohmann::json::array();
    for (const OnnxTestResult& r : results) tests.push_back(onnx_result_json(r));
    write_json(cmd.json, {{"command", "check onnx"}, {"dir", o.dir}, {"backends", o.backends}, {"filter", o.filter},
                          {"rtol", kOnnxSuiteRtol}, {"atol", kOnnxSuiteAtol}, {"min_passed", cmd.min_passed},
                          {"summary", summary}, {"tests", tests}, {"pass", failed == 0 && floor_met}});
  }
  return failed == 0 && floor_met ? 0 : 1;
}

}  // namespace

std::string& synthetic_data_source() {
  static std::string source = "synthetic";
  return source;
}

void add_check_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* check = app.add_subcommand("check", "cross-backend correctness: ops, a model's training step, determinism, the ONNX test suite");
  check->require_subcommand(1);

  // check ops
  CLI::App* ops = check->add_subcommand("ops", "every op, forward and backward, on each backend against ref (float64)");
  auto ops_backends = std::make_shared<std::string>("all");
  auto ops_options = std::make_shared<OpCheckOptions>();
  auto ops_json = std::make_shared<std::string>();
  ops->add_option("--backend", *ops_backends, "comma-separated backends, or all (available ones)")->capture_default_str();
  ops->add_flag("--exact", ops_options->exact, "small-integer inputs: conv and linear must match ref bit for bit");
  ops->add_flag("--gradient", ops_options->gradient,
                "each op's backward against float64 finite differences of ref's forward (inputs away from kinks)");
  ops->add_option("--op", ops_options->op, "only this op family: " + ops::op_spellings());
  ops->add_option("--shape", ops_options->shape, "with --op, one more case: " + ops::shape_meanings())
      ->delimiter(',');
  ops->add_option("--seed", ops_options->seed, "seed of the random inputs")->capture_default_str();
  ops->add_option("--precision", ops_options->precision,
                  "which cases, by dtype: all; f32 (no half value); bf16 or fp16 (the cases holding a value of that "
                  "dtype: the half cases of every op that accepts half values, and the casts)")
      ->check(CLI::IsMember({"all", "f32", "bf16", "fp16"}))
      ->capture_default_str();
  add_threads_option(*ops, ops_options->threads, "threads for the cpu backend (0: all)");
  ops->add_option("--json", *ops_json, "write every figure to this file");
  ops->callback([&run, ops_backends, ops_options, ops_json] {
    run = [=] { return run_check_ops(*ops_backends, *ops_options, *ops_json); };
  });

  // check model
  CLI::App* model = check->add_subcommand("model", "one training step on two backends, compared node by node");
  auto m = std::make_shared<ModelCheckOptions>();
  auto m_json = std::make_shared<std::string>();
  add_backend_option(*model, m->backend);
  model->add_option("--against", m->against, "the other side: a backend name (or torch, when the peer is built)")
      ->capture_default_str();
  add_model_option(*model, m->model);
  model->add_option("--batch", m->batch, "images in the random batch (ignored with --input)")->capture_default_str();
  model->add_option("--steps", m->steps, "steps to run on both, reporting how losses and weights drift apart")
      ->capture_default_str();
  model->add_option("--weights", m->weights, "weights in safetensors with PyTorch's names (default: seeded init)");
  model->add_option("--input", m->input, "batch in safetensors: x f32 [N,C,H,W], y i64 [N]");
  model->add_option("--data", synthetic_data_source(),
                    "synthetic: random images and labels of the model's geometry (the only source: no dataset needs "
                    "to fit, so any ONNX model can be checked; --input gives a batch of your own)")
      ->check(CLI::IsMember({"synthetic"}))
      ->capture_default_str();
  auto m_precision = std::make_shared<std::string>("f32");
  model->add_option("--precision", *m_precision,
                    "the training graph under this precision policy (autocast, as parity train --precision; one step, "
                    "no loss scaling)")
      ->check(CLI::IsMember({"f32", "bf16", "fp16"}))
      ->capture_default_str();
  model->add_option("--dump", m->dump, "folder: every value of both backends as <backend>.safetensors");
  model->add_option("--seed", m->seed, "seed of the initial weights and the random batch")->capture_default_str();
  add_threads_option(*model, m->threads, "threads for the cpu backend (0: all)");
  model->add_option("--json", *m_json, "write every figure to this file");
  auto m_distributed = std::make_shared<std::string>("auto");
  model->add_option("--distributed", *m_distributed,
                    "under mpirun or srun: every rank runs the check, then --steps (at least 2) data-parallel steps "
                    "on shares of a --batch global batch, each rank's weights compared bit for bit with rank 0's: "
                    "mpi, off, or auto (mpi when launched as more than one process)")
      ->check(CLI::IsMember({"auto", "mpi", "off"}))
      ->capture_default_str();
  model->callback([&run, m, m_json, m_distributed, m_precision] {
    run = [=] {
      m->torch_peer = torch_peer_path();
      m->precision = parse_precision(*m_precision);
      const std::shared_ptr<CommunicatorDataParallel> dp = data_parallel_for(*m_distributed, m->backend, 1.0);
      if (!dp) return run_check_model(*m, *m_json);
      return run_check_model_on_ranks(*m, *m_json, *dp);
    };
  });

  // check onnx
  CLI::App* onnx = check->add_subcommand("onnx", "the ONNX backend test suite (Debian's libonnx-testdata): every test "
                                                 "whose ops parity supports, on each backend");
  auto on = std::make_shared<OnnxSuiteCommand>();
  onnx->add_option("dir", on->dir, "the suite's data folder, one folder of it (e.g. node) or one test")->capture_default_str();
  onnx->add_option("--backend", on->backends, "comma-separated backends, or all (available ones)")->capture_default_str();
  onnx->add_option("--filter", on->filter, "only the tests whose <folder>/<test> this regex matches (e.g. 'node/test_conv')");
  onnx->add_option("--json", on->json, "write every test's result to this file");
  onnx->add_option("--min-passed", on->min_passed, "fail when fewer tests than this pass on a backend")->capture_default_str();
  onnx->add_flag("--verbose", on->verbose, "one line per test and backend, with the full reason of each skip");
  add_threads_option(*onnx, on->threads, "threads for the cpu backend (0: all)");
  onnx->callback([&run, on] { run = [=] { return run_check_onnx(*on); }; });

  // check determinism
  CLI::App* det = check->add_subcommand("determinism", "the same training step twice: every value bitwise equal");
  auto d_backend = std::make_shared<std::string>();
  auto d_model = std::make_shared<std::string>("seed-cnn");
  auto d_batch = std::make_shared<int64_t>(16);
  auto d_threads = std::make_shared<int>(0);
  auto d_json = std::make_shared<std::string>();
  add_backend_option(*det, *d_backend);
  add_model_option(*det, *d_model);
  det->add_option("--batch", *d_batch, "images per step")->capture_default_str();
  add_threads_option(*det, *d_threads, "threads for the cpu backend (0: all)");
  det->add_option("--json", *d_json, "write the result to this file");
  det->callback([&run, d_backend, d_model, d_batch, d_threads, d_json] {
    run = [=] {
      DeterminismReport r = check_determinism(*d_model, *d_backend, *d_batch, *d_threads, 0);
      fmt::print("check determinism {} on {}: {} values compared, {} differ: {}\n", *d_model, r.backend,
                 r.values_compared, r.differing.size(), verdict(r.pass()));
      for (const std::string& name : r.differing) fmt::print("  differs: {}\n", name);
      write_json(*d_json, {{"command", "check determinism"}, {"backend", r.backend}, {"model", *d_model},
                           {"values_compared", r.values_compared}, {"differing", r.differing}, {"pass", r.pass()}});
      return r.pass() ? 0 : 1;
    };
  });
}

}  // namespace parity::tools
