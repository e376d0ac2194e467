// tools/plot_data.h — reading what `parity plot` draws: the metrics CSV of `parity train
// --metrics` (written by model/training_run.cpp) and the JSON report of `parity bench --json`
// (bench/report.cpp), each told apart by its content, refused with the file and line named
// when it is not what it claims.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace parity::tools {

enum class PlotFileKind { metrics, bench };
const char* plot_file_kind_name(PlotFileKind kind);  // "metrics CSV", "bench JSON"

// The kind of a file from its content: a bench JSON is an object with "parity_bench"; a metrics
// CSV starts with the header line below. Throws Error(data) naming `source` otherwise.
PlotFileKind detect_plot_file_kind(const std::string& content, const std::string& source);

// One row of the metrics CSV: "split,epoch,step,loss,accuracy,images_per_s".
struct MetricsRow {
  int epoch = 0;      // 1-based
  int64_t step = 0;   // optimizer steps so far
  double loss = 0, accuracy = 0, images_per_s = 0;
  // With --val-split, the validation loss and accuracy on `test` rows; NaN where absent.
  double val_loss = std::numeric_limits<double>::quiet_NaN(), val_accuracy = std::numeric_limits<double>::quiet_NaN();
};
struct MetricsSeries {
  std::string source;
  std::vector<MetricsRow> train;  // one row per step
  std::vector<MetricsRow> test;   // one row per epoch, at the epoch's last step
};
// The header line, without the newline; a run with --val-split appends ",val_loss,val_accuracy".
const char* metrics_csv_header();
const char* metrics_csv_validation_columns();  // ",val_loss,val_accuracy"
const char* metrics_csv_loss_scale_columns();  // ",loss_scale,skipped_steps" (fp16 runs, after the others)
// Throws Error(data) "<source>:<line>: ..." on a wrong header, a malformed row, an unknown split,
// and when there is no row at all.
MetricsSeries parse_metrics_csv(const std::string& text, const std::string& source);

// A timed case of the bench report (invalid cases, which have no timing, are left out).
struct BenchCase {
  std::string name, kind, backend;  // kind: "model" or "op"
  int64_t batch = 0;
  double images_per_s = 0;
  bool has_peer = false;  // the LibTorch peer ran beside it
  double peer_images_per_s = 0, ratio = 0;  // ratio: parity / torch images/s
};
struct BenchSeries {
  std::string source;
  std::vector<BenchCase> cases;  // the model cases, or the op cases when the run had none
};
// Throws Error(data) naming `source` on invalid JSON, no "parity_bench"/"cases", a case without
// its fields, or no timed case at all.
BenchSeries parse_bench_json(const std::string& text, const std::string& source);

// The whole file; throws Error(io) naming it.
std::string read_text_file(const std::string& path);

}  // namespace parity::tools
