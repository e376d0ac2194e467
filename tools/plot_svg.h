// tools/plot_svg.h — the charts of `parity plot`, as SVG text (drawn with util/svg.h): training
// curves from metrics CSVs, and grouped images/s bars from bench reports.
#pragma once

#include <string>
#include <vector>

#include "tools/plot_data.h"

namespace parity::tools {

// Two panels sharing the step axis: loss (each file's raw training loss faint, its exponential
// moving average bold, its test loss dashed with a dot per epoch) and test accuracy in percent;
// dotted vertical lines mark each file's epoch ends. One colour per file, named in the legend.
// `smoothing` is the EMA's weight of the past (0: none, < 1), debiased like TensorBoard's.
std::string metrics_chart_svg(const std::vector<MetricsSeries>& files, double smoothing = 0.9);

// One group per file, side by side under the file's name; in a group, one cluster per case
// with a bar per backend and one for the LibTorch peer when it ran, each bar labelled with its
// images/s and each parity bar that has a peer with its parity/torch ratio ("1.23x torch").
std::string bench_chart_svg(const std::vector<BenchSeries>& files);

// The EMA of `values` with weight `smoothing` on the past, debiased (the first value is kept).
std::vector<double> exponential_moving_average(const std::vector<double>& values, double smoothing);

// A long label cut in the middle to at most `max_chars` characters ("…" marks the cut).
std::string shorten_label(const std::string& label, size_t max_chars);

}  // namespace parity::tools
