// tools/cmd_sweep.cpp — `parity sweep`: trains a grid of optimizer x lr x batch one run after
// another from the same seeded weights, ranks the runs by validation accuracy, writes each run's
// metrics and a combined CSV; Ctrl-C keeps the finished runs and exits 130.
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>

#include <fmt/format.h>

#include "parity/parity.h"
#include "tools/commands.h"
#include "tools/plot_data.h"
#include "tools/plot_svg.h"
#include "tools/sweep_grid.h"
#include "tools/threads_option.h"
#include "util/atomic_file.h"

namespace parity::tools {
namespace {

std::atomic<bool> g_sweep_stop{false};

extern "C" void request_sweep_stop(int) { g_sweep_stop.store(true); }

struct SweepOptions {
  std::string model = "seed-cnn", backend, data, out = "sweep";
  std::string lrs, batches, optimizers = "adam";
  int epochs = 1;
  int64_t limit = 0;
  double val_split = 0.1;
  uint64_t seed = 0;
  int threads = 0;
};

void refuse(bool bad, const std::string& message) {
  if (bad) throw Error(ErrorKind::invalid_argument, message);
}

// The last epoch's figures of a finished run.
SweepResult finished(const SweepConfig& config, const TrainSummary& summary) {
  SweepResult r;
  r.config = config;
  const EpochReport& last = summary.epochs.back();
  r.val_loss = last.validation ? last.validation->loss : 0;
  r.val_accuracy = last.validation ? last.validation->accuracy : 0;
  r.test_loss = last.test.loss;
  r.test_accuracy = last.test.accuracy;
  r.train_loss = last.train_loss;
  r.train_accuracy = last.train_accuracy;
  r.steps = summary.steps;
  return r;
}

int run_sweep(const SweepOptions& o) {
  const std::vector<SweepConfig> grid = sweep_grid(parse_optimizer_list(o.optimizers), parse_lr_list(o.lrs),
                                                   parse_batch_list(o.batches));
  refuse(!(o.val_split > 0.0 && o.val_split < 1.0),
         fmt::format("--val-split must be in (0, 1) for a sweep: runs are ranked by validation accuracy, got {}",
                     o.val_split));
  refuse(o.epochs < 1, fmt::format("--epochs must be >= 1, got {}", o.epochs));
  refuse(o.limit < 0, fmt::format("--limit must be >= 0, got {}", o.limit));
  refuse(o.threads < 0, fmt::format("--threads must be >= 0, got {}", o.threads));
  load_model(o.model);  // an unknown model fails before anything is written
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec) throw Error(ErrorKind::io, fmt::format("--out '{}': cannot create the folder: {}", o.out, ec.message()));

  const SweepSettings settings{o.model, o.epochs, o.val_split, o.seed, o.limit};
  const std::string combined = (std::filesystem::path(o.out) / "sweep.csv").string();
  std::vector<SweepResult> results;
  const std::string overlay = (std::filesystem::path(o.out) / "sweep.svg").string();
  // The combined CSV, and every finished run's curves overlaid in one plot (as `parity plot`
  // draws them), labelled with its configuration.
  auto write_combined = [&] {
    write_file_atomically(combined, sweep_csv(rank_by_validation(results), settings));
    std::vector<MetricsSeries> curves;
    for (const SweepResult& r : results) {
      if (r.failed || !std::filesystem::exists(r.metrics_file)) continue;
      curves.push_back(parse_metrics_csv(read_text_file(r.metrics_file), r.metrics_file));
      curves.back().source = fmt::format("{} lr {} batch {}", r.config.optimizer, r.config.lr, r.config.batch);
    }
    if (!curves.empty()) write_file_atomically(overlay, metrics_chart_svg(curves));
  };
  fmt::print("sweep: {} runs of {} ({} epoch{}, validation {} of the training images, seed {}) into {}\n", grid.size(),
             o.model, o.epochs, o.epochs == 1 ? "" : "s", o.val_split, o.seed, o.out);
  std::fflush(stdout);

  g_sweep_stop.store(false);
  std::signal(SIGINT, request_sweep_stop);
  std::signal(SIGTERM, request_sweep_stop);
  struct RestoreSignals {
    ~RestoreSignals() {
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
    }
  } restore;
  bool interrupted = false;
  for (const SweepConfig& config : grid) {
    if (g_sweep_stop.load()) {
      interrupted = true;
      break;
    }
    TrainOptions t;
    t.model = o.model;
    t.backend = o.backend;
    t.data = o.data;
    t.epochs = o.epochs;
    t.batch = config.batch;
    t.lr = config.lr;
    t.optimizer = config.optimizer == "sgd" ? OptimizerConfig::Kind::sgd : OptimizerConfig::Kind::adam;
    t.seed = o.seed;  // the same initial weights for every run
    t.threads = o.threads;
    t.limit = o.limit;
    t.val_split = o.val_split;
    t.metrics = (std::filesystem::path(o.out) / (run_name(config, grid.size()) + ".csv")).string();
    TrainCallbacks cb;
    cb.stop = &g_sweep_stop;
    const std::string label = fmt::format("[{}/{}] {} lr {} batch {}", config.index + 1, grid.size(), config.optimizer,
                                          config.lr, config.batch);
    const auto start = std::chrono::steady_clock::now();
    SweepResult result;
    try {
      TrainSummary summary = run_training(t, cb);
      if (summary.stopped_early) {
        interrupted = true;
        fmt::print("{}: interrupted, not counted\n", label);
        break;
      }
      result = finished(config, summary);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::numeric) throw;  // bad data or options would fail every run alike
      result.config = config;
      result.failed = true;
      result.error = e.what();
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.metrics_file = t.metrics;
    if (result.failed)
      fmt::print("{}: failed: {} ({:.1f} s)\n", label, result.error, result.seconds);
    else
      fmt::print("{}: val accuracy {:.2f}% loss {:.4f}, test accuracy {:.2f}% ({:.1f} s)\n", label,
                 100 * result.val_accuracy, result.val_loss, 100 * result.test_accuracy, result.seconds);
    std::fflush(stdout);
    results.push_back(result);
    write_combined();  // after every run, so an interruption keeps the finished ones
  }
  write_combined();
  fmt::print("\n{}", sweep_table(rank_by_validation(results)));
  fmt::print("ranked by validation accuracy; {} and the overlay plot {} written (each run's metrics beside them)\n",
             combined, overlay);
  if (interrupted) {
    fmt::print("interrupted: {} of {} runs finished\n", results.size(), grid.size());
    return 130;
  }
  return 0;
}

}  // namespace

void add_sweep_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand(
      "sweep", "train a grid of optimizers x learning rates x batch sizes, ranked by validation accuracy");
  auto o = std::make_shared<SweepOptions>();
  add_backend_option(*cmd, o->backend);
  add_model_option(*cmd, o->model);
  cmd->add_option("--lr", o->lrs, "comma-separated learning rates, e.g. 1e-4,3e-4,1e-3")->required();
  cmd->add_option("--batch", o->batches, "comma-separated batch sizes, e.g. 32,64")->required();
  cmd->add_option("--optimizer", o->optimizers, "comma-separated: adam, sgd")->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "epochs of each run")->capture_default_str();
  cmd->add_option("--limit", o->limit, "train on the first N images only (0: all)")->capture_default_str();
  cmd->add_option("--val-split", o->val_split, "fraction of the training images held out to rank the runs")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the (shared) initial weights, the hold-out and the shuffling")
      ->capture_default_str();
  cmd->add_option("--data", o->data, "folder with the IDX files, as for train");
  add_threads_option(*cmd, o->threads, "threads for the cpu backend (0: all)");
  cmd->add_option("--out", o->out, "folder for each run's metrics CSV and the combined sweep.csv")->capture_default_str();
  cmd->callback([&run, o] {
    run = [o] { return run_sweep(*o); };
  });
}

}  // namespace parity::tools
