// tools/plot_svg.cpp — drawing the charts of tools/plot_svg.h.
#include "tools/plot_svg.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "parity/error.h"
#include "util/svg.h"

namespace parity::tools {
namespace {

using Anchor = SvgDocument::Anchor;

const std::vector<std::string> kPalette = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                           "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
const std::string kPeerColor = "#ee4c2c";  // PyTorch's orange-red
const std::string kGrid = "#e6e6e6", kAxis = "#444";

// Backends never take the peer's red.
const std::vector<std::string> kBackendPalette = {"#1f77b4", "#2ca02c", "#9467bd", "#8c564b",
                                                  "#17becf", "#bcbd22", "#e377c2", "#7f7f7f"};

const std::string& color(size_t i) { return kPalette[i % kPalette.size()]; }

// Words of `label` gathered into lines of at most `max_chars` (a longer word is shortened), at
// most `max_lines` of them (the last one shortened when more remain).
std::vector<std::string> wrap_label(const std::string& label, size_t max_chars, size_t max_lines) {
  std::vector<std::string> lines;
  std::string word, line;
  auto flush_word = [&] {
    if (word.empty()) return;
    if (!line.empty() && line.size() + 1 + word.size() > max_chars) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    word.clear();
  };
  for (char c : label + " ") {
    if (c == ' ')
      flush_word();
    else
      word += c;
  }
  if (!line.empty()) lines.push_back(line);
  if (lines.size() > max_lines) {
    std::string rest;
    for (size_t i = max_lines - 1; i < lines.size(); ++i) rest += (rest.empty() ? "" : " ") + lines[i];
    lines.resize(max_lines - 1);
    lines.push_back(rest);
  }
  for (std::string& l : lines) l = shorten_label(l, max_chars);
  return lines;
}

// Draws a y axis with grid lines over [x0, x1] and returns nothing; labels use tick_label.
void y_axis(SvgDocument& svg, const LinearScale& y, const std::vector<double>& ticks, double x0, double x1,
            const std::string& label, const std::string& suffix = "") {
  for (double t : ticks) {
    const double py = y(t);
    svg.line(x0, py, x1, py, kGrid);
    svg.line(x0 - 4, py, x0, py, kAxis);
    svg.text(x0 - 7, py + 4, tick_label(t) + suffix, 11, Anchor::end);
  }
  svg.line(x0, y.from, x0, y.to, kAxis);
  svg.text(x0 - 48, (y.from + y.to) / 2, label, 12, Anchor::middle, "#222", -90);
}

void x_axis(SvgDocument& svg, const LinearScale& x, const std::vector<double>& ticks, double y0, bool labels,
            const std::string& label) {
  for (double t : ticks) {
    const double px = x(t);
    svg.line(px, y0, px, y0 + 4, kAxis);
    if (labels) svg.text(px, y0 + 17, tick_label(t), 11, Anchor::middle);
  }
  svg.line(x.from, y0, x.to, y0, kAxis);
  if (!label.empty()) svg.text((x.from + x.to) / 2, y0 + 36, label, 12, Anchor::middle);
}

bool finite(double v) { return std::isfinite(v); }

// Consecutive finite points as one polyline each (a NaN loss breaks the line instead of bending it).
void broken_polyline(SvgDocument& svg, const std::vector<std::pair<double, double>>& pts, const std::string& stroke,
                     double width, double opacity, const std::string& dash = "") {
  std::vector<std::pair<double, double>> run;
  for (const auto& p : pts) {
    if (finite(p.first) && finite(p.second)) {
      run.push_back(p);
      continue;
    }
    svg.polyline(run, stroke, width, opacity, dash);
    run.clear();
  }
  svg.polyline(run, stroke, width, opacity, dash);
}

}  // namespace

std::vector<double> exponential_moving_average(const std::vector<double>& values, double smoothing) {
  std::vector<double> out;
  double s = 0, weight = 0;
  for (double v : values) {
    if (!finite(v)) {
      out.push_back(v);
      continue;
    }
    s = smoothing * s + (1 - smoothing) * v;
    weight = smoothing * weight + (1 - smoothing);
    out.push_back(weight > 0 ? s / weight : v);
  }
  return out;
}

std::string shorten_label(const std::string& label, size_t max_chars) {
  // Count and cut in code points, so a multi-byte character is never split.
  std::vector<size_t> starts;
  for (size_t i = 0; i < label.size(); ++i)
    if ((static_cast<unsigned char>(label[i]) & 0xC0) != 0x80) starts.push_back(i);
  if (starts.size() <= max_chars || max_chars < 3) return label;
  const size_t keep_front = (max_chars - 1) / 2, keep_back = max_chars - 1 - keep_front;
  return label.substr(0, starts[keep_front]) + "\u2026" + label.substr(starts[starts.size() - keep_back]);
}

std::string metrics_chart_svg(const std::vector<MetricsSeries>& files, double smoothing) {
  if (files.empty()) throw Error(ErrorKind::invalid_argument, "plot: no metrics file to draw");
  if (!(smoothing >= 0 && smoothing < 1))
    throw Error(ErrorKind::invalid_argument, fmt::format("plot: smoothing must be in [0, 1), got {}", smoothing));
  const double width = 980, left = 80, right = 700, top = 60;
  const double loss_top = top, loss_bottom = 330, acc_top = 380, acc_bottom = 560, height = 620;

  double max_step = 1, max_loss = 0, min_acc = 100, max_acc = 0;
  bool any_test = false;
  for (const MetricsSeries& f : files) {
    for (const MetricsRow& r : f.train) {
      max_step = std::max<double>(max_step, r.step);
      if (finite(r.loss)) max_loss = std::max(max_loss, r.loss);
    }
    for (const MetricsRow& r : f.test) {
      any_test = true;
      max_step = std::max<double>(max_step, r.step);
      if (finite(r.loss)) max_loss = std::max(max_loss, r.loss);
      for (const double accuracy : {r.accuracy, r.val_accuracy})
        if (finite(accuracy)) {
          min_acc = std::min(min_acc, 100 * accuracy);
          max_acc = std::max(max_acc, 100 * accuracy);
        }
      if (finite(r.val_loss)) max_loss = std::max(max_loss, r.val_loss);
    }
  }
  double x_lo = 0, x_hi = max_step, loss_hi = max_loss, acc_lo = 0, acc_hi = 100;
  const std::vector<double> x_ticks = nice_ticks(0, max_step, 8, &x_lo, &x_hi);
  const std::vector<double> loss_ticks = nice_ticks(0, max_loss > 0 ? max_loss : 1, 5, nullptr, &loss_hi);
  std::vector<double> acc_ticks;
  if (any_test) acc_ticks = nice_ticks(std::max(0.0, min_acc - 2), std::min(100.0, max_acc + 2), 4, &acc_lo, &acc_hi);
  const LinearScale x(0, x_hi, left, right);
  const LinearScale y_loss(0, loss_hi, loss_bottom, loss_top);
  const LinearScale y_acc(acc_lo, acc_hi, acc_bottom, acc_top);

  SvgDocument svg(width, height);
  svg.text(width / 2, 28, "Training: loss and test accuracy against optimizer steps", 17, Anchor::middle, "#111", 0,
           true);
  svg.text(width / 2, 46,
           fmt::format("thin: training loss per step; bold: its moving average (EMA {}); dashed with dots: test "
                       "loss at each epoch's end",
                       smoothing),
           11, Anchor::middle, "#555");
  y_axis(svg, y_loss, loss_ticks, left, right, "loss (cross-entropy)");
  x_axis(svg, x, x_ticks, loss_bottom, true, "");
  if (any_test) {
    y_axis(svg, y_acc, acc_ticks, left, right, "test accuracy", "%");
  } else {
    svg.text((left + right) / 2, (acc_top + acc_bottom) / 2, "no test rows (no epoch finished)", 12, Anchor::middle,
             "#888");
  }
  x_axis(svg, x, x_ticks, acc_bottom, true, "optimizer step");
  svg.text(left, loss_top - 4, "loss", 12, Anchor::start, "#222", 0, true);
  svg.text(left, acc_top - 4, "test accuracy", 12, Anchor::start, "#222", 0, true);

  for (size_t i = 0; i < files.size(); ++i) {
    const MetricsSeries& f = files[i];
    const std::string& c = color(i);
    // Epoch ends: a test row each, else where the train rows' epoch changes.
    std::vector<std::pair<int, int64_t>> epoch_ends;
    for (const MetricsRow& r : f.test) epoch_ends.emplace_back(r.epoch, r.step);
    if (epoch_ends.empty())
      for (size_t k = 0; k + 1 < f.train.size(); ++k)
        if (f.train[k + 1].epoch != f.train[k].epoch) epoch_ends.emplace_back(f.train[k].epoch, f.train[k].step);
    for (const auto& [epoch, step] : epoch_ends) {
      const double px = x(double(step));
      svg.line(px, loss_top, px, loss_bottom, c, 1, "2,4");
      svg.line(px, acc_top, px, acc_bottom, c, 1, "2,4");
      svg.text(px - 3, loss_top + 12 + 12 * double(i), fmt::format("epoch {}", epoch), 10, Anchor::end, c);
    }
    std::vector<double> losses;
    std::vector<std::pair<double, double>> raw, smooth, test_loss, test_acc;
    for (const MetricsRow& r : f.train) losses.push_back(r.loss);
    const std::vector<double> ema = exponential_moving_average(losses, smoothing);
    for (size_t k = 0; k < f.train.size(); ++k) {
      const double px = x(double(f.train[k].step));
      raw.emplace_back(px, finite(losses[k]) ? y_loss(losses[k]) : NAN);
      smooth.emplace_back(px, finite(ema[k]) ? y_loss(ema[k]) : NAN);
    }
    broken_polyline(svg, raw, c, 1, 0.3);
    broken_polyline(svg, smooth, c, 2.2, 1);
    for (const MetricsRow& r : f.test) {
      const double px = x(double(r.step));
      test_loss.emplace_back(px, finite(r.loss) ? y_loss(r.loss) : NAN);
      test_acc.emplace_back(px, finite(r.accuracy) ? y_acc(100 * r.accuracy) : NAN);
    }
    broken_polyline(svg, test_loss, c, 1.6, 1, "6,4");
    broken_polyline(svg, test_acc, c, 2, 1);
    // Validation (--val-split): dotted, beside the test curves of the same epochs.
    std::vector<std::pair<double, double>> val_loss, val_acc;
    for (const MetricsRow& r : f.test) {
      if (finite(r.val_loss)) val_loss.emplace_back(x(double(r.step)), y_loss(r.val_loss));
      if (finite(r.val_accuracy)) val_acc.emplace_back(x(double(r.step)), y_acc(100 * r.val_accuracy));
    }
    broken_polyline(svg, val_loss, c, 1.6, 1, "1,3");
    broken_polyline(svg, val_acc, c, 1.6, 1, "1,3");
    for (const auto& p : test_loss)
      if (finite(p.second)) svg.circle(p.first, p.second, 3.5, c);
    for (size_t k = 0; k < test_acc.size(); ++k)
      if (finite(test_acc[k].second)) {
        svg.circle(test_acc[k].first, test_acc[k].second, 3.5, c);
        if (k + 1 == test_acc.size())
          svg.text(test_acc[k].first - 6, test_acc[k].second - 7, fmt::format("{:.2f}%", 100 * f.test[k].accuracy), 10,
                   Anchor::end, c);
      }
  }

  // Legend: one entry per file, then the line styles.
  const double lx = right + 30;
  double ly = top + 6;
  svg.text(lx, ly, "files", 12, Anchor::start, "#222", 0, true);
  for (size_t i = 0; i < files.size(); ++i) {
    ly += 22;
    svg.rect(lx, ly - 10, 18, 10, color(i));
    svg.text(lx + 26, ly, shorten_label(files[i].source, 34), 11);
    const MetricsSeries& f = files[i];
    if (!f.test.empty())
      svg.text(lx + 26, ly + 13,
               fmt::format("test: loss {:.4f}, accuracy {:.2f}%", f.test.back().loss, 100 * f.test.back().accuracy), 10,
               Anchor::start, "#555");
    ly += 10;
  }
  ly += 30;
  svg.text(lx, ly, "lines", 12, Anchor::start, "#222", 0, true);
  const std::vector<std::tuple<double, double, std::string, std::string>> styles = {
      {1, 0.3, "", "training loss, per step"},
      {2.2, 1, "", "training loss, EMA"},
      {1.6, 1, "6,4", "test loss (dot: epoch end)"},
      {1.6, 1, "1,3", "validation loss and accuracy"},
      {1, 1, "2,4", "epoch end"}};
  for (const auto& [w, opacity, dash, what] : styles) {
    ly += 20;
    svg.polyline({{lx, ly - 4}, {lx + 22, ly - 4}}, "#333", w, opacity, dash);
    svg.text(lx + 30, ly, what, 11);
  }
  return svg.str();
}

std::string bench_chart_svg(const std::vector<BenchSeries>& files) {
  if (files.empty()) throw Error(ErrorKind::invalid_argument, "plot: no bench report to draw");
  // Backends in order of first appearance; the peer last, in its own colour.
  std::vector<std::string> backends;
  bool any_peer = false;
  double max_ips = 0;
  for (const BenchSeries& f : files)
    for (const BenchCase& c : f.cases) {
      if (std::find(backends.begin(), backends.end(), c.backend) == backends.end()) backends.push_back(c.backend);
      any_peer = any_peer || c.has_peer;
      max_ips = std::max(max_ips, c.images_per_s);
      if (c.has_peer) max_ips = std::max(max_ips, c.peer_images_per_s);
    }
  auto backend_color = [&](const std::string& b) {
    const auto i = static_cast<size_t>(std::find(backends.begin(), backends.end(), b) - backends.begin());
    return kBackendPalette[i % kBackendPalette.size()];
  };

  // Per file, the case names in order and, per case, its bars.
  struct Bar {
    std::string who;  // a backend or "torch"
    double ips;
    double ratio;  // > 0: parity/torch, shown on the parity bar
  };
  struct Cluster {
    std::string name;
    std::vector<Bar> bars;
  };
  std::vector<std::vector<Cluster>> groups;
  for (const BenchSeries& f : files) {
    std::vector<Cluster> clusters;
    for (const BenchCase& c : f.cases) {
      auto it = std::find_if(clusters.begin(), clusters.end(), [&](const Cluster& k) { return k.name == c.name; });
      if (it == clusters.end()) {
        clusters.push_back({c.name, {}});
        it = clusters.end() - 1;
      }
      it->bars.push_back({c.backend, c.images_per_s, c.has_peer ? c.ratio : 0});
    }
    // The peer's bar after the backends' (the first backend's peer run stands for the case).
    for (Cluster& k : clusters)
      for (const BenchCase& c : f.cases)
        if (c.name == k.name && c.has_peer) {
          k.bars.push_back({"torch", c.peer_images_per_s, 0});
          break;
        }
    groups.push_back(std::move(clusters));
  }

  const double bar_w = 34, bar_gap = 4, cluster_gap = 34, group_gap = 60, left = 90, top = 78, plot_h = 330;
  // A cluster is as wide as its bars, but at least wide enough for a label of a dozen characters.
  auto cluster_width = [&](size_t bars) { return std::max(double(bars) * (bar_w + bar_gap) - bar_gap, 76.0); };
  double plot_w = 0;
  std::vector<double> group_widths;
  for (const auto& g : groups) {
    double w = 0;
    for (const Cluster& k : g) w += cluster_width(k.bars.size()) + cluster_gap;
    w = std::max(w, 200.0);
    group_widths.push_back(w);
    plot_w += w + group_gap;
  }
  const double legend_w = 190;
  const double width = std::max(640.0, left + plot_w + legend_w), height = top + plot_h + 110;
  double y_hi = 1;
  const std::vector<double> ticks = nice_ticks(0, max_ips > 0 ? max_ips * 1.12 : 1, 6, nullptr, &y_hi);
  const LinearScale y(0, y_hi, top + plot_h, top);

  SvgDocument svg(width, height);
  svg.text(width / 2, 28, "parity bench: images per second", 17, Anchor::middle, "#111", 0, true);
  svg.text(width / 2, 46,
           any_peer ? "one bar per backend and one for the LibTorch peer; above a parity bar: its speed over the peer's"
                    : "one bar per backend (no LibTorch peer in these reports)",
           11, Anchor::middle, "#555");
  const double plot_right = left + plot_w - group_gap / 2;
  y_axis(svg, y, ticks, left, plot_right, "images/s");
  svg.line(left, y(0), plot_right, y(0), kAxis);

  double gx = left + group_gap / 2;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const double group_left = gx;
    double cx = gx + cluster_gap / 2;
    for (const Cluster& k : groups[gi]) {
      const double cluster_left = cx, cluster_right = cx + cluster_width(k.bars.size());
      cx += (cluster_right - cluster_left - (double(k.bars.size()) * (bar_w + bar_gap) - bar_gap)) / 2;
      for (const Bar& b : k.bars) {
        const std::string fill = b.who == "torch" ? kPeerColor : backend_color(b.who);
        const double top_y = y(b.ips);
        svg.rect(cx, top_y, bar_w, y(0) - top_y, fill, "none", fmt::format("{}: {:.0f} images/s", b.who, b.ips));
        svg.text(cx + bar_w / 2, top_y - 4, tick_label(std::round(b.ips)), 9, Anchor::middle);
        if (b.ratio > 0)
          svg.text(cx + bar_w / 2, top_y - 15, fmt::format("{:.2f}x", b.ratio), 10, Anchor::middle, "#000", 0, true);
        cx += bar_w + bar_gap;
      }
      const std::vector<std::string> lines =
          wrap_label(k.name, static_cast<size_t>((cluster_right - cluster_left + cluster_gap / 2) / 6), 3);
      for (size_t li = 0; li < lines.size(); ++li)
        svg.text((cluster_left + cluster_right) / 2, y(0) + 16 + 12 * double(li), lines[li], 10, Anchor::middle);
      cx = cluster_right + cluster_gap;
    }
    const double group_right = group_left + group_widths[gi];
    svg.text((group_left + group_right) / 2, y(0) + 64,
             shorten_label(files[gi].source, static_cast<size_t>(group_widths[gi] / 7)), 12, Anchor::middle, "#111", 0,
             true);
    if (gi + 1 < groups.size()) {
      const double sep = group_right + group_gap / 2;
      svg.line(sep, top, sep, y(0) + 70, "#bbb", 1, "4,4");
    }
    gx = group_right + group_gap;
  }

  double ly = top + 6;
  const double lx = plot_right + 24;
  svg.text(lx, ly, "backends", 12, Anchor::start, "#222", 0, true);
  for (const std::string& b : backends) {
    ly += 20;
    svg.rect(lx, ly - 10, 16, 10, backend_color(b));
    svg.text(lx + 24, ly, b, 11);
  }
  if (any_peer) {
    ly += 20;
    svg.rect(lx, ly - 10, 16, 10, kPeerColor);
    svg.text(lx + 24, ly, "torch (LibTorch peer)", 11);
    ly += 24;
    svg.text(lx, ly, "N.NNx: parity / torch", 10, Anchor::start, "#555");
  }
  return svg.str();
}

}  // namespace parity::tools
