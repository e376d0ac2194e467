// util/svg.cpp — the SVG writer, scale and ticks of util/svg.h.
#include "util/svg.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace parity {

namespace {

// The length of the valid UTF-8 sequence at text[i], or 0 when the bytes there are not one.
size_t utf8_sequence(const std::string& text, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > text.size() || (n == 2 && c < 0xC2)) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (n == 3 && ((c == 0xE0 && b(i + 1) < 0xA0) || (c == 0xED && b(i + 1) >= 0xA0))) return 0;  // overlong, surrogate
  if (n == 4 && ((c == 0xF0 && b(i + 1) < 0x90) || c > 0xF4 || (c == 0xF4 && b(i + 1) >= 0x90))) return 0;
  return n;
}

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    const size_t n = utf8_sequence(text, i);
    if (n == 0) {  // not UTF-8: the replacement character keeps the document well-formed
      out += "\uFFFD";
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(text, i, n);
      i += n;
      continue;
    }
    ++i;
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') break;
        out += c;
    }
  }
  return out;
}

std::string svg_number(double v) {
  if (!std::isfinite(v)) return "0";
  std::string s = fmt::format("{:.2f}", v);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

SvgDocument::SvgDocument(double width, double height) : width_(width), height_(height) {}

void SvgDocument::rect(double x, double y, double w, double h, const std::string& fill, const std::string& stroke,
                       const std::string& tooltip) {
  body_ += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"{}\"", svg_number(x),
                       svg_number(y), svg_number(std::max(w, 0.0)), svg_number(std::max(h, 0.0)), xml_escape(fill),
                       xml_escape(stroke));
  if (tooltip.empty())
    body_ += "/>\n";
  else
    body_ += fmt::format("><title>{}</title></rect>\n", xml_escape(tooltip));
}

void SvgDocument::line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
                       const std::string& dash) {
  body_ += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{}/>\n",
                       svg_number(x1), svg_number(y1), svg_number(x2), svg_number(y2), xml_escape(stroke),
                       svg_number(width), dash.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", xml_escape(dash)));
}

void SvgDocument::polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke, double width,
                           double opacity, const std::string& dash) {
  if (points.empty()) return;
  std::string pts;
  for (const auto& [x, y] : points) pts += fmt::format("{}{},{}", pts.empty() ? "" : " ", svg_number(x), svg_number(y));
  body_ += fmt::format(
      "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-opacity=\"{}\" "
      "stroke-linejoin=\"round\"{}/>\n",
      pts, xml_escape(stroke), svg_number(width), svg_number(opacity),
      dash.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", xml_escape(dash)));
}

void SvgDocument::circle(double cx, double cy, double r, const std::string& fill) {
  body_ += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"/>\n", svg_number(cx), svg_number(cy),
                       svg_number(r), xml_escape(fill));
}

void SvgDocument::text(double x, double y, const std::string& text, double size, Anchor anchor, const std::string& fill,
                       double rotate, bool bold) {
  const char* anchors[] = {"start", "middle", "end"};
  body_ += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{}\" fill=\"{}\"{}{}>{}</text>\n",
                       svg_number(x), svg_number(y), svg_number(size), anchors[static_cast<int>(anchor)],
                       xml_escape(fill), bold ? " font-weight=\"bold\"" : "",
                       rotate != 0 ? fmt::format(" transform=\"rotate({} {} {})\"", svg_number(rotate), svg_number(x),
                                                 svg_number(y))
                                   : "",
                       xml_escape(text));
}

std::string SvgDocument::str() const {
  return fmt::format(
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
             "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
             "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
             svg_number(width_), svg_number(height_)) +
         body_ + "</svg>\n";
}

LinearScale::LinearScale(double lo_, double hi_, double from_, double to_) : lo(lo_), hi(hi_), from(from_), to(to_) {
  if (!(hi > lo)) {
    lo -= 1;
    hi = lo + 2;
  }
}

double LinearScale::operator()(double v) const { return from + (v - lo) / (hi - lo) * (to - from); }

std::vector<double> nice_ticks(double lo, double hi, int count, double* out_lo, double* out_hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = hi = 0;
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  count = std::max(count, 2);
  const double rough = (hi - lo) / count;
  const double power = std::pow(10.0, std::floor(std::log10(rough)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= rough) {
      step = m * power;
      break;
    }
  const double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0; first + i * step <= last + step * 1e-6 && i < 1000; ++i) {
    double t = first + i * step;
    if (std::fabs(t) < step * 1e-9) t = 0;
    ticks.push_back(t);
  }
  if (out_lo) *out_lo = first;
  if (out_hi) *out_hi = last;
  return ticks;
}

std::string tick_label(double v) {
  const double a = std::fabs(v);
  auto trim = [](std::string s) {
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s == "-0" ? std::string("0") : s;
  };
  if (a >= 1e9) return trim(fmt::format("{:.2f}", v / 1e9)) + "G";
  if (a >= 1e6) return trim(fmt::format("{:.2f}", v / 1e6)) + "M";
  if (a >= 1e4) return trim(fmt::format("{:.2f}", v / 1e3)) + "k";
  if (a >= 1 || a == 0) return trim(fmt::format("{:.2f}", v));
  return trim(fmt::format("{:.4f}", v));
}

}  // namespace parity
