// tools/plot_data.cpp — the readers of tools/plot_data.h.
#include "tools/plot_data.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "parity/error.h"

namespace parity::tools {
namespace {

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw Error(ErrorKind::data, fmt::format("{}: {}", source, what));
}

std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, ',')) fields.push_back(field);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  return fields;
}

double parse_number(const std::string& text, const std::string& where, const char* column) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE)
    bad(where, fmt::format("column {} is not a number: '{}'", column, text));
  return v;
}

size_t first_non_space(const std::string& s) {
  size_t i = 0;
  if (s.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // a UTF-8 byte order mark
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

}  // namespace

const char* plot_file_kind_name(PlotFileKind kind) {
  return kind == PlotFileKind::metrics ? "metrics CSV" : "bench JSON";
}

const char* metrics_csv_header() { return "split,epoch,step,loss,accuracy,images_per_s"; }
const char* metrics_csv_validation_columns() { return ",val_loss,val_accuracy"; }
const char* metrics_csv_loss_scale_columns() { return ",loss_scale,skipped_steps"; }

PlotFileKind detect_plot_file_kind(const std::string& content, const std::string& source) {
  const size_t at = first_non_space(content);
  if (at == content.size()) bad(source, "the file is empty");
  if (content[at] == '{') return PlotFileKind::bench;
  if (content.compare(at, std::string(metrics_csv_header()).size(), metrics_csv_header()) == 0)
    return PlotFileKind::metrics;
  bad(source, fmt::format("neither a metrics CSV (from parity train --metrics; header '{}') nor a bench JSON "
                          "(from parity bench --json)",
                          metrics_csv_header()));
}

MetricsSeries parse_metrics_csv(const std::string& text, const std::string& source) {
  MetricsSeries s;
  s.source = source;
  std::istringstream in(text.substr(first_non_space(text)));
  std::string line;
  int number = 0;
  bool header = false, validation = false;
  size_t extra = 0;  // trailing columns not plotted
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = fmt::format("{}:{}", source, number);
    if (!header) {
      // fp16 runs append the loss-scaling columns; the plot does not draw them.
      const std::string scaling = metrics_csv_loss_scale_columns();
      if (line.size() > scaling.size() && line.compare(line.size() - scaling.size(), scaling.size(), scaling) == 0) {
        line.resize(line.size() - scaling.size());
        extra = 2;
      }
      validation = line == std::string(metrics_csv_header()) + metrics_csv_validation_columns();
      if (line != metrics_csv_header() && !validation)
        bad(where, fmt::format("expected the header '{}' (or with '{}' after it, and '{}' after that), got '{}'",
                               metrics_csv_header(), metrics_csv_validation_columns(), scaling, line));
      header = true;
      continue;
    }
    if (line.empty()) continue;
    const std::vector<std::string> f = split_fields(line);
    const size_t fields = (validation ? 8 : 6) + extra;
    if (f.size() != fields)
      bad(where, fmt::format("expected {} comma-separated fields, got {}: '{}'", fields, f.size(), line));
    MetricsRow row;
    const double epoch = parse_number(f[1], where, "epoch");
    const double step = parse_number(f[2], where, "step");
    if (epoch < 1 || epoch != std::floor(epoch) || epoch > 1e9) bad(where, fmt::format("epoch must be an integer >= 1, got '{}'", f[1]));
    if (step < 0 || step != std::floor(step) || step > 9e15) bad(where, fmt::format("step must be an integer >= 0, got '{}'", f[2]));
    row.epoch = static_cast<int>(epoch);
    row.step = static_cast<int64_t>(step);
    row.loss = parse_number(f[3], where, "loss");
    row.accuracy = parse_number(f[4], where, "accuracy");
    row.images_per_s = parse_number(f[5], where, "images_per_s");
    if (validation && !f[6].empty()) row.val_loss = parse_number(f[6], where, "val_loss");
    if (validation && !f[7].empty()) row.val_accuracy = parse_number(f[7], where, "val_accuracy");
    if (f[0] == "train")
      s.train.push_back(row);
    else if (f[0] == "test")
      s.test.push_back(row);
    else
      bad(where, fmt::format("split must be train or test, got '{}'", f[0]));
  }
  if (!header) bad(source, "the file is empty");
  if (s.train.empty() && s.test.empty()) bad(source, "no rows after the header (the run logged no step)");
  return s;
}

BenchSeries parse_bench_json(const std::string& text, const std::string& source) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad(source, fmt::format("not valid JSON: {}", e.what()));
  }
  if (!doc.is_object() || !doc.contains("parity_bench"))
    bad(source, "not a parity bench report (no \"parity_bench\" key; write one with parity bench --json)");
  if (!doc.contains("cases") || !doc["cases"].is_array()) bad(source, "no \"cases\" array");
  BenchSeries model, op;
  try {
    for (const nlohmann::json& c : doc["cases"]) {
      if (!c.is_object()) bad(source, "a case is not an object");
      if (c.contains("valid") && c["valid"].is_boolean() && !c["valid"].get<bool>()) continue;
      BenchCase bc;
      bc.name = c.at("name").get<std::string>();
      bc.kind = c.value("kind", std::string("model"));
      bc.backend = c.at("backend").get<std::string>();
      // Checked before conversion: nlohmann converts a float such as 1e300 to int64 with a cast
      // whose result is undefined (UBSan reports it in fuzz/fuzz_plot_data).
      if (c.contains("batch") && (!c["batch"].is_number_integer() || c["batch"].get<int64_t>() < 0))
        bad(source, fmt::format("case '{}' ({}): batch must be an integer >= 0, got {}", bc.name, bc.backend,
                                c["batch"].dump()));
      bc.batch = c.value("batch", int64_t{0});
      bc.images_per_s = c.at("images_per_s").get<double>();
      if (!std::isfinite(bc.images_per_s) || bc.images_per_s < 0)
        bad(source, fmt::format("case '{}' ({}): images_per_s must be a number >= 0", bc.name, bc.backend));
      if (c.contains("peer") && c["peer"].is_object() && c["peer"].contains("images_per_s")) {
        bc.has_peer = true;
        bc.peer_images_per_s = c["peer"]["images_per_s"].get<double>();
        bc.ratio = c["peer"].contains("ratio") ? c["peer"]["ratio"].get<double>()
                                               : (bc.peer_images_per_s > 0 ? bc.images_per_s / bc.peer_images_per_s : 0);
      }
      (bc.kind == "op" ? op : model).cases.push_back(std::move(bc));
    }
  } catch (const nlohmann::json::exception& e) {
    bad(source, fmt::format("a case lacks a field or has one of the wrong type: {}", e.what()));
  }
  BenchSeries& chosen = model.cases.empty() ? op : model;
  if (chosen.cases.empty()) bad(source, "no timed case (every case is missing or failed validation)");
  chosen.source = source;
  return chosen;
}

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(ErrorKind::io, fmt::format("'{}' is a folder, not a file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::io, fmt::format("cannot open '{}'", path));
  std::ostringstream text;
  text << f.rdbuf();
  if (f.bad()) throw Error(ErrorKind::io, fmt::format("cannot read '{}'", path));
  return text.str();
}

}  // namespace parity::tools
