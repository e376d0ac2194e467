// bench/compare.cpp — `parity bench compare`: reading two bench JSON reports with every field
// checked before use, and the table of their timed cases side by side.
#include "bench/compare.h"

#include <climits>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "parity/error.h"

namespace parity::bench {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw Error(ErrorKind::data, fmt::format("bench compare: {}: {}", source, what));
}

// `key` of `object` as a string; `where` names the object in the message.
std::string string_field(const json& object, const char* key, const std::string& source, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) bad(source, fmt::format("{} has no string \"{}\"", where, key));
  return it->get<std::string>();
}

// `key` of `object` as a thread count: absent is 0, otherwise an integer in [0, INT_MAX].
int threads_field(const json& object, const std::string& source, const std::string& where) {
  const auto it = object.find("threads");
  if (it == object.end()) return 0;
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT_MAX) {
    bad(source, fmt::format("{}: \"threads\" must be an integer in [0, {}], got {}", where, INT_MAX, it->dump()));
  }
  return static_cast<int>(it->get<int64_t>());
}

// `key` of `object` as a finite number, > 0 or >= 0 as `zero_allowed` says.
double seconds_or_rate(const json& object, const char* key, bool zero_allowed, const std::string& source,
                       const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0 ||
      (!zero_allowed && it->get<double>() == 0)) {
    bad(source, fmt::format("{}: \"{}\" must be a number {} 0, got {}", where, key, zero_allowed ? ">=" : ">",
                            it == object.end() ? std::string("nothing") : it->dump()));
  }
  return it->get<double>();
}

}  // namespace

ComparedReport parse_compared_report(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    bad(source, fmt::format("not valid JSON: {}", e.what()));
  }
  if (!doc.is_object() || !doc.contains("parity_bench")) {
    bad(source, "not a parity bench report (no \"parity_bench\" key; write one with parity bench --json)");
  }
  ComparedReport report;
  report.source = source;
  if (doc.contains("git")) report.git = string_field(doc, "git", source, "the report");
  report.threads = threads_field(doc, source, "the report");
  const auto cases = doc.find("cases");
  if (cases == doc.end() || !cases->is_array()) bad(source, "no \"cases\" array");
  for (size_t i = 0; i < cases->size(); ++i) {
    const json& c = (*cases)[i];
    const std::string where = fmt::format("case {}", i);
    if (!c.is_object()) bad(source, where + " is not an object");
    if (!c.contains("median_s")) continue;  // failed validation: not timed
    TimedCase t;
    t.name = string_field(c, "name", source, where);
    t.backend = string_field(c, "backend", source, where);
    const std::string named = fmt::format("case '{}' ({})", t.name, t.backend);
    t.threads = threads_field(c, source, named);
    t.median_s = seconds_or_rate(c, "median_s", false, source, named);
    t.images_per_s = seconds_or_rate(c, "images_per_s", true, source, named);
    report.cases.push_back(std::move(t));
  }
  return report;
}

std::string comparison_table(const ComparedReport& a, const ComparedReport& b) {
  using Key = std::tuple<std::string, std::string, int>;
  std::map<Key, const TimedCase*> in_b;
  for (const TimedCase& c : b.cases) in_b[Key{c.name, c.backend, c.threads}] = &c;
  std::string out;
  auto to = std::back_inserter(out);
  fmt::format_to(to, "A: {} (git {}, {} threads)\nB: {} (git {}, {} threads)\n\n", a.source, a.git, a.threads,
                 b.source, b.git, b.threads);
  fmt::format_to(to, "{:<50} {:>7} {:>11} {:>11} {:>11} {:>11} {:>8}\n", "case", "backend", "A median ms",
                 "B median ms", "A images/s", "B images/s", "B/A");
  for (const TimedCase& ca : a.cases) {
    const auto it = in_b.find(Key{ca.name, ca.backend, ca.threads});
    if (it == in_b.end()) {
      fmt::format_to(to, "{:<50} {:>7} {:>11.3f} {:>11}\n", ca.name, ca.backend, ca.median_s * 1e3, "-");
      continue;
    }
    const TimedCase& cb = *it->second;
    fmt::format_to(to, "{:<50} {:>7} {:>11.3f} {:>11.3f} {:>11.0f} {:>11.0f} {:>7.2f}x\n", ca.name, ca.backend,
                   ca.median_s * 1e3, cb.median_s * 1e3, ca.images_per_s, cb.images_per_s, ca.median_s / cb.median_s);
  }
  return out;
}

int compare_reports(const std::string& a_path, const std::string& b_path) {
  auto load = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(ErrorKind::io, "bench compare: cannot read " + path);
    std::ostringstream text;
    text << f.rdbuf();
    if (f.bad()) throw Error(ErrorKind::io, "bench compare: cannot read " + path);
    return parse_compared_report(text.str(), path);
  };
  const ComparedReport a = load(a_path), b = load(b_path);
  fmt::print("{}", comparison_table(a, b));
  return 0;
}

}  // namespace parity::bench
