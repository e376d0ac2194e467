// tests/test_plot.cpp — the SVG writer (util/svg.h), the readers of `parity plot`'s files
// (tools/plot_data.h, corrupt input included) and its charts (tools/plot_svg.h).
#include <cmath>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "parity/error.h"
#include "tools/plot_data.h"
#include "tools/plot_svg.h"
#include "util/svg.h"

namespace {

using namespace parity;
using namespace parity::tools;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// Every element opened is closed (or self-closed): the tags balance as XML requires.
void expect_balanced(const std::string& svg) {
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_EQ(count(svg, "<svg "), 1u);
  EXPECT_EQ(count(svg, "</svg>"), 1u);
  for (const char* tag : {"text", "title"}) EXPECT_EQ(count(svg, std::string("<") + tag + ">") + count(svg, std::string("<") + tag + " "), count(svg, std::string("</") + tag + ">")) << tag;
  // No raw '&' that is not an entity.
  for (size_t at = svg.find('&'); at != std::string::npos; at = svg.find('&', at + 1)) {
    const std::string rest = svg.substr(at, 6);
    EXPECT_TRUE(rest.rfind("&amp;", 0) == 0 || rest.rfind("&lt;", 0) == 0 || rest.rfind("&gt;", 0) == 0 ||
                rest.rfind("&quot;", 0) == 0 || rest.rfind("&apos;", 0) == 0)
        << rest;
  }
}

template <typename F>
void expect_error(F f, ErrorKind kind, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one with '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Svg, EscapesTextAndAttributes) {
  EXPECT_EQ(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
  EXPECT_EQ(xml_escape("bell\x07 tab\t"), "bell tab\t");  // control characters are not XML
  EXPECT_EQ(xml_escape("caf\xC3\xA9"), "caf\xC3\xA9");       // UTF-8 kept
  EXPECT_EQ(xml_escape("bad\xFF"), "bad\xEF\xBF\xBD");       // not UTF-8: U+FFFD
  EXPECT_EQ(xml_escape("cut\xC3"), "cut\xEF\xBF\xBD");       // a truncated sequence too
  SvgDocument doc(100, 50);
  doc.text(10, 20, "x < y & \"z\"", 12, SvgDocument::Anchor::middle, "#000", -90, true);
  doc.rect(1, 2, 3, 4, "red", "none", "tip <1>");
  doc.line(0, 0, 10, 10, "#000", 1, "2,2");
  doc.polyline({{0, 0}, {1.005, 2.5}}, "blue");
  doc.circle(5, 5, 2, "green");
  const std::string svg = doc.str();
  expect_balanced(svg);
  EXPECT_NE(svg.find(">x &lt; y &amp; &quot;z&quot;</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find("transform=\"rotate(-90 10 20)\""), std::string::npos);
  EXPECT_NE(svg.find("<title>tip &lt;1&gt;</title>"), std::string::npos);
  EXPECT_NE(svg.find("width=\"100\" height=\"50\" viewBox=\"0 0 100 50\""), std::string::npos);
}

TEST(Svg, NumbersScaleAndTicks) {
  EXPECT_EQ(svg_number(1.5), "1.5");
  EXPECT_EQ(svg_number(2.0), "2");
  EXPECT_EQ(svg_number(-0.001), "0");
  EXPECT_EQ(svg_number(NAN), "0");
  const LinearScale y(0, 10, 100, 0);
  EXPECT_DOUBLE_EQ(y(0), 100);
  EXPECT_DOUBLE_EQ(y(10), 0);
  EXPECT_DOUBLE_EQ(y(5), 50);
  const LinearScale flat(3, 3, 0, 10);  // a degenerate range divides by nothing
  EXPECT_TRUE(std::isfinite(flat(3)));
  double lo = 0, hi = 0;
  const std::vector<double> t = nice_ticks(0.3, 2.27, 5, &lo, &hi);
  ASSERT_GE(t.size(), 3u);
  EXPECT_LE(lo, 0.3);
  EXPECT_GE(hi, 2.27);
  EXPECT_DOUBLE_EQ(t[1] - t[0], 0.5);
  EXPECT_EQ(nice_ticks(0, 938, 8).back(), 1000);
  EXPECT_FALSE(nice_ticks(5, 5).empty());
  EXPECT_EQ(tick_label(0), "0");
  EXPECT_EQ(tick_label(0.25), "0.25");
  EXPECT_EQ(tick_label(15000), "15k");
  EXPECT_EQ(tick_label(2500000), "2.5M");
}

const char* kMetrics =
    "split,epoch,step,loss,accuracy,images_per_s\n"
    "train,1,1,2.3,0.1,9000.0\n"
    "train,1,2,2.1,0.2,9100.0\n"
    "test,1,2,1.9,0.35,0.0\n"
    "train,2,3,1.7,0.4,9200.0\n"
    "train,2,4,nan,0.4,9200.0\n"
    "test,2,4,1.5,0.5,0.0\n";

TEST(PlotData, ReadsTheMetricsCsvOfParityTrain) {
  EXPECT_EQ(detect_plot_file_kind(kMetrics, "m.csv"), PlotFileKind::metrics);
  const MetricsSeries s = parse_metrics_csv(kMetrics, "m.csv");
  ASSERT_EQ(s.train.size(), 4u);
  ASSERT_EQ(s.test.size(), 2u);
  EXPECT_EQ(s.train[2].epoch, 2);
  EXPECT_EQ(s.train[2].step, 3);
  EXPECT_DOUBLE_EQ(s.test[1].accuracy, 0.5);
  EXPECT_TRUE(std::isnan(s.train[3].loss));  // a diverged step stays readable
  // CRLF line ends and a trailing empty line are fine.
  EXPECT_EQ(parse_metrics_csv("split,epoch,step,loss,accuracy,images_per_s\r\ntrain,1,1,2,0.1,5\r\n\n", "w.csv").train.size(), 1u);
}

// An fp16 run's CSV (parity train --precision fp16) ends with loss_scale,skipped_steps, with or
// without the validation columns before them; the plot reads the rest.
TEST(PlotData, ReadsTheLossScaleColumnsOfAnFp16Run) {
  const MetricsSeries s = parse_metrics_csv(
      "split,epoch,step,loss,accuracy,images_per_s,loss_scale,skipped_steps\n"
      "train,1,0,2.3,0.1,9000.0,65536,1\n"
      "train,1,1,2.2,0.1,9000.0,32768,1\n"
      "test,1,1,2.1,0.2,0.0,32768,1\n",
      "fp16.csv");
  ASSERT_EQ(s.train.size(), 2u);
  ASSERT_EQ(s.test.size(), 1u);
  EXPECT_DOUBLE_EQ(s.train[1].loss, 2.2);
  const MetricsSeries v = parse_metrics_csv(
      "split,epoch,step,loss,accuracy,images_per_s,val_loss,val_accuracy,loss_scale,skipped_steps\n"
      "train,1,1,2.2,0.1,9000.0,,,65536,0\n"
      "test,1,1,2.1,0.2,0.0,2.0,0.3,65536,0\n",
      "fp16v.csv");
  ASSERT_EQ(v.test.size(), 1u);
  EXPECT_DOUBLE_EQ(v.test[0].val_accuracy, 0.3);
  expect_error([&] { parse_metrics_csv("split,epoch,step,loss,accuracy,images_per_s,loss_scale,skipped_steps\n"
                                       "train,1,1,2.2,0.1,9000.0\n", "short.csv"); },
               ErrorKind::data, "expected 8 comma-separated fields, got 6");
}

TEST(PlotData, RefusesCorruptMetrics) {
  const std::string header = "split,epoch,step,loss,accuracy,images_per_s\n";
  expect_error([&] { parse_metrics_csv(header, "m.csv"); }, ErrorKind::data, "m.csv: no rows after the header");
  expect_error([&] { parse_metrics_csv("", "m.csv"); }, ErrorKind::data, "empty");
  expect_error([&] { parse_metrics_csv("a,b\n", "m.csv"); }, ErrorKind::data, "m.csv:1: expected the header");
  expect_error([&] { parse_metrics_csv(header + "train,1,1,2.3\n", "m.csv"); }, ErrorKind::data,
               "m.csv:2: expected 6 comma-separated fields, got 4");
  expect_error([&] { parse_metrics_csv(header + "train,1,1,abc,0.1,5\n", "m.csv"); }, ErrorKind::data,
               "m.csv:2: column loss is not a number: 'abc'");
  expect_error([&] { parse_metrics_csv(header + "valid,1,1,2,0.1,5\n", "m.csv"); }, ErrorKind::data,
               "split must be train or test, got 'valid'");
  expect_error([&] { parse_metrics_csv(header + "train,0,1,2,0.1,5\n", "m.csv"); }, ErrorKind::data, "epoch must be");
  expect_error([&] { parse_metrics_csv(header + "train,1,-3,2,0.1,5\n", "m.csv"); }, ErrorKind::data, "step must be");
  expect_error([&] { detect_plot_file_kind("hello world\n", "x.txt"); }, ErrorKind::data,
               "x.txt: neither a metrics CSV");
  expect_error([&] { detect_plot_file_kind("  \n", "e.txt"); }, ErrorKind::data, "e.txt: the file is empty");
}

std::string fixture(const std::string& name) {
  std::ifstream f(std::string(PARITY_TEST_DATA_DIR) + "/" + name);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(PlotData, ReadsTheBenchReportWithItsPeer) {
  const std::string text = fixture("bench_with_peer.json");
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(detect_plot_file_kind(text, "b.json"), PlotFileKind::bench);
  const BenchSeries s = parse_bench_json(text, "b.json");
  // The model cases that passed validation; the op case and the invalid case are left out.
  ASSERT_EQ(s.cases.size(), 5u);
  EXPECT_EQ(s.cases[0].name, "seed-cnn train step");
  EXPECT_EQ(s.cases[0].backend, "cpu");
  EXPECT_TRUE(s.cases[0].has_peer);
  EXPECT_DOUBLE_EQ(s.cases[0].peer_images_per_s, 12800.0);
  EXPECT_DOUBLE_EQ(s.cases[0].ratio, 1.68);
  EXPECT_FALSE(s.cases[3].has_peer);
  // A report of op cases only is drawn from those.
  const BenchSeries ops = parse_bench_json(
      R"({"parity_bench": 1, "cases": [{"name": "conv1", "kind": "op", "backend": "cpu", "images_per_s": 5}]})", "o.json");
  ASSERT_EQ(ops.cases.size(), 1u);
}

TEST(PlotData, RefusesCorruptBenchReports) {
  expect_error([] { parse_bench_json("{\"parity_bench\": 1, \"cases\": [", "b.json"); }, ErrorKind::data,
               "b.json: not valid JSON");
  expect_error([] { parse_bench_json("{\"cases\": []}", "b.json"); }, ErrorKind::data, "not a parity bench report");
  expect_error([] { parse_bench_json("{\"parity_bench\": 1}", "b.json"); }, ErrorKind::data, "no \"cases\" array");
  expect_error([] { parse_bench_json("{\"parity_bench\": 1, \"cases\": []}", "b.json"); }, ErrorKind::data,
               "no timed case");
  expect_error([] { parse_bench_json(R"({"parity_bench": 1, "cases": [{"name": "x", "backend": "cpu"}]})", "b.json"); },
               ErrorKind::data, "lacks a field");
  expect_error([] { parse_bench_json(R"({"parity_bench": 1, "cases": [{"name": "x", "backend": "cpu", "images_per_s": "fast"}]})", "b.json"); },
               ErrorKind::data, "wrong type");
  // A batch of 1e300 was cast to int64 (undefined behaviour) before it was checked.
  expect_error([] { parse_bench_json(R"({"parity_bench": 1, "cases": [{"name": "x", "backend": "cpu", "images_per_s": 1, "batch": 1e300}]})", "b.json"); },
               ErrorKind::data, "case 'x' (cpu): batch must be an integer >= 0, got 1e+300");
  expect_error([] { read_text_file("/nonexistent/m.csv"); }, ErrorKind::io, "/nonexistent/m.csv");
}

TEST(PlotCharts, MetricsChartOverlaysEachFileWithItsName) {
  MetricsSeries a = parse_metrics_csv(kMetrics, "run <a>.csv");
  MetricsSeries b = parse_metrics_csv(kMetrics, "run-b.csv");
  const std::string svg = metrics_chart_svg({a, b});
  expect_balanced(svg);
  EXPECT_NE(svg.find("run &lt;a&gt;.csv"), std::string::npos);
  EXPECT_NE(svg.find("run-b.csv"), std::string::npos);
  EXPECT_NE(svg.find("epoch 2"), std::string::npos);
  EXPECT_NE(svg.find("test accuracy"), std::string::npos);
  EXPECT_NE(svg.find("optimizer step"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);  // a NaN loss breaks the line, never reaches a coordinate
  expect_error([] { metrics_chart_svg({}); }, ErrorKind::invalid_argument, "no metrics file");
}

TEST(PlotCharts, BenchChartHasABarPerBackendAndPeerWithTheRatio) {
  const BenchSeries s = parse_bench_json(fixture("bench_with_peer.json"), "fixture.json");
  const std::string svg = bench_chart_svg({s, s});
  expect_balanced(svg);
  EXPECT_NE(svg.find("1.68x"), std::string::npos);
  EXPECT_NE(svg.find("1.34x"), std::string::npos);
  EXPECT_NE(svg.find("torch (LibTorch peer)"), std::string::npos);
  EXPECT_EQ(count(svg, ">fixture.json</text>"), 2u);  // the two files, side by side
  EXPECT_EQ(count(svg, "<title>cpu: "), 6u);           // 3 cpu cases per file
  EXPECT_EQ(count(svg, "<title>torch: "), 4u);
}

TEST(PlotCharts, HelpersSmoothAndShorten) {
  const std::vector<double> ema = exponential_moving_average({1, 1, 1}, 0.9);
  for (double v : ema) EXPECT_NEAR(v, 1.0, 1e-12);  // debiased: a constant stays constant
  EXPECT_DOUBLE_EQ(exponential_moving_average({2, 4}, 0)[1], 4);
  EXPECT_EQ(shorten_label("abcdefghij", 5), "ab\u2026ij");
  EXPECT_EQ(shorten_label("short", 10), "short");
  // A cut never splits a UTF-8 character.
  const std::string s = shorten_label("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 5);
  EXPECT_EQ(s, "\xC3\xA9\xC3\xA9\u2026\xC3\xA9\xC3\xA9");
}

}  // namespace
