// tools/sweep_grid.h — the grid of `parity sweep`: its comma-separated lists, the configurations
// in the order they run, the ranking by validation accuracy, the table and the combined CSV.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parity::tools {

// One point of the grid; `index` is its 0-based place in the run order.
struct SweepConfig {
  int index = 0;
  std::string optimizer;  // adam or sgd
  float lr = 0;
  int64_t batch = 0;
};

// "1e-4,3e-4,1e-3" and the like. Each parser throws Error(invalid_argument) naming `flag` and the
// item that is not a finite lr > 0, a batch >= 1, adam or sgd; an empty list or a repeated value
// is refused too.
std::vector<float> parse_lr_list(const std::string& text, const std::string& flag = "--lr");
std::vector<int64_t> parse_batch_list(const std::string& text, const std::string& flag = "--batch");
std::vector<std::string> parse_optimizer_list(const std::string& text, const std::string& flag = "--optimizer");

// Every combination, optimizer outermost, then lr, then batch, each list in its given order.
std::vector<SweepConfig> sweep_grid(const std::vector<std::string>& optimizers, const std::vector<float>& lrs,
                                    const std::vector<int64_t>& batches);

// "run01-adam-lr0.0003-batch64": unique within a grid, safe as a file name.
std::string run_name(const SweepConfig& config, size_t runs);

// What a finished run gave (the last epoch's figures), or why it failed.
struct SweepResult {
  SweepConfig config;
  bool failed = false;
  std::string error;  // when failed
  double val_loss = 0, val_accuracy = 0, test_loss = 0, test_accuracy = 0, train_loss = 0, train_accuracy = 0;
  int64_t steps = 0;
  double seconds = 0;
  std::string metrics_file;
};

// Best first: by validation accuracy (higher first), ties by validation loss (lower first), then
// grid order; failed runs last, in grid order. Test accuracy never decides.
std::vector<SweepResult> rank_by_validation(std::vector<SweepResult> results);

// The ranked results as an aligned text table, one row per run (a failed run shows its error).
std::string sweep_table(const std::vector<SweepResult>& ranked);

// The combined CSV: rank and the configuration (with the settings shared by every run), then the
// run's figures and its metrics file. Fields with a comma or quote are quoted.
struct SweepSettings {
  std::string model;
  int epochs = 1;
  double val_split = 0;
  uint64_t seed = 0;
  int64_t limit = 0;
};
std::string sweep_csv(const std::vector<SweepResult>& ranked, const SweepSettings& settings);

}  // namespace parity::tools
