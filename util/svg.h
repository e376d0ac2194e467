// util/svg.h — writing SVG documents by hand: shapes and text with every attribute value and
// text escaped, a linear scale from data to pixels, and "nice" axis ticks (1, 2, 5 x 10^k).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace parity {

// `text` with & < > " ' replaced by entities, bytes that are not UTF-8 by U+FFFD, and control
// characters other than tab and newline dropped (XML 1.0 forbids them), so it is safe as element
// text and inside an attribute value.
std::string xml_escape(const std::string& text);

// A number as SVG coordinates want it: at most 2 decimals, no trailing zeros, never "nan"/"inf" (0).
std::string svg_number(double v);

// The document under construction; str() closes it. Colours are any SVG paint ("#1f77b4", "none").
class SvgDocument {
 public:
  SvgDocument(double width, double height);

  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& stroke = "none",
            const std::string& tooltip = "");
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& dash = "");
  void polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke, double width = 1.5,
                double opacity = 1.0, const std::string& dash = "");
  void circle(double cx, double cy, double r, const std::string& fill);
  enum class Anchor { start, middle, end };
  // rotate: degrees around (x, y) (-90 for a vertical axis label).
  void text(double x, double y, const std::string& text, double size = 12, Anchor anchor = Anchor::start,
            const std::string& fill = "#222", double rotate = 0, bool bold = false);

  double width() const { return width_; }
  double height() const { return height_; }
  std::string str() const;

 private:
  double width_, height_;
  std::string body_;
};

// Maps [lo, hi] of the data onto [from, to] pixels (to < from for a y axis growing upwards).
// A degenerate range (lo == hi) is widened by 1 either side so nothing divides by zero.
struct LinearScale {
  double lo, hi, from, to;
  LinearScale(double lo, double hi, double from, double to);
  double operator()(double v) const;
};

// About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten);
// `lo`/`hi` widened to the outer ticks are returned through `out_lo`/`out_hi` when given.
std::vector<double> nice_ticks(double lo, double hi, int count = 5, double* out_lo = nullptr,
                               double* out_hi = nullptr);

// A tick label: 0.25, 12, 1.5k, 2M (short enough for an axis).
std::string tick_label(double v);

}  // namespace parity
