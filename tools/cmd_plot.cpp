// tools/cmd_plot.cpp — `parity plot`: training curves from `parity train --metrics` CSVs, or
// images/s bars from `parity bench --json` reports, drawn as one SVG (tools/plot_svg.h).
#include <memory>

#include <fmt/format.h>

#include "parity/parity.h"
#include "tools/commands.h"
#include "tools/plot_data.h"
#include "tools/plot_svg.h"
#include "util/atomic_file.h"

namespace parity::tools {
namespace {

struct PlotOptions {
  std::vector<std::string> files;
  std::string svg;
  double smoothing = 0.9;
};

int run_plot(const PlotOptions& o) {
  std::vector<std::string> contents;
  std::vector<PlotFileKind> kinds;
  for (const std::string& path : o.files) {
    contents.push_back(read_text_file(path));
    kinds.push_back(detect_plot_file_kind(contents.back(), path));
    if (kinds.back() != kinds.front())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("plot: cannot mix kinds: {} is a {}, {} is a {}; plot each kind on its own", o.files.front(),
                              plot_file_kind_name(kinds.front()), path, plot_file_kind_name(kinds.back())));
  }
  std::string svg;
  if (kinds.front() == PlotFileKind::metrics) {
    std::vector<MetricsSeries> series;
    for (size_t i = 0; i < o.files.size(); ++i) series.push_back(parse_metrics_csv(contents[i], o.files[i]));
    svg = metrics_chart_svg(series, o.smoothing);
  } else {
    std::vector<BenchSeries> series;
    for (size_t i = 0; i < o.files.size(); ++i) series.push_back(parse_bench_json(contents[i], o.files[i]));
    svg = bench_chart_svg(series);
  }
  write_file_atomically(o.svg, svg);
  fmt::print("wrote {} ({} of {} file{})\n", o.svg, kinds.front() == PlotFileKind::metrics ? "training curves" : "images/s bars",
             o.files.size(), o.files.size() == 1 ? "" : "s");
  return 0;
}

}  // namespace

void add_plot_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand(
      "plot", "draw METRICS.csv files of parity train --metrics (loss, test accuracy) or BENCH.json files of "
              "parity bench --json (images/s per backend and peer) as one SVG");
  auto o = std::make_shared<PlotOptions>();
  cmd->add_option("files", o->files, "metrics CSVs or bench JSONs (one kind), overlaid or side by side")->required();
  cmd->add_option("--svg", o->svg, "the SVG to write")->required();
  cmd->add_option("--smooth", o->smoothing, "metrics: weight of the past in the training loss's moving average, in [0, 1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999));
  cmd->callback([&run, o] { run = [o] { return run_plot(*o); }; });
}

}  // namespace parity::tools
