// tests/test_bench_compare.cpp — `parity bench compare`: the report reader (bench/compare.h), its
// refusals of corrupt reports, and the table of two reports side by side.
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "bench/compare.h"
#include "parity/error.h"

namespace {

using namespace parity;
using namespace parity::bench;

std::string fixture(const std::string& name) {
  std::ifstream f(std::string(PARITY_TEST_DATA_DIR) + "/" + name);
  std::ostringstream text;
  text << f.rdbuf();
  return text.str();
}

// A report of one timed case, `fields` spliced into it.
std::string report_with_case(const std::string& fields) {
  return R"({"parity_bench": 1, "cases": [{"name": "x", "backend": "cpu", "median_s": 0.5, "images_per_s": 2)" +
         fields + "}]}";
}

void expect_refused(const std::string& text, const std::string& fragment) {
  try {
    parse_compared_report(text, "r.json");
    ADD_FAILURE() << "no error; expected one with '" << fragment << "' for " << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find("r.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(BenchCompare, ReadsTheTimedCasesOfAReport) {
  const ComparedReport r = parse_compared_report(fixture("bench_with_peer.json"), "fixture.json");
  EXPECT_EQ(r.source, "fixture.json");
  EXPECT_EQ(r.git, "?");  // the fixture has no git revision
  EXPECT_EQ(r.threads, 16);
  // Only the first case carries a median; the others (and the invalid one) were not timed.
  ASSERT_EQ(r.cases.size(), 1u);
  EXPECT_EQ(r.cases[0].name, "seed-cnn train step");
  EXPECT_EQ(r.cases[0].backend, "cpu");
  EXPECT_EQ(r.cases[0].threads, 16);
  EXPECT_DOUBLE_EQ(r.cases[0].median_s, 0.00298);
  EXPECT_DOUBLE_EQ(r.cases[0].images_per_s, 21500.0);
}

TEST(BenchCompare, RefusesCorruptReports) {
  expect_refused(R"({"parity_bench": 1, "cases": [)", "not valid JSON");
  expect_refused(R"({"parity_bench": 1, "cases": [1e999]})", "not valid JSON");  // nlohmann's out_of_range
  expect_refused(R"({"cases": []})", "not a parity bench report");
  expect_refused(R"([1, 2])", "not a parity bench report");
  expect_refused(R"({"parity_bench": 1})", "no \"cases\" array");
  expect_refused(R"({"parity_bench": 1, "cases": {}})", "no \"cases\" array");
  expect_refused(R"({"parity_bench": 1, "git": 7, "cases": []})", "no string \"git\"");
  expect_refused(R"({"parity_bench": 1, "threads": 2.5, "cases": []})", "\"threads\" must be an integer");
  expect_refused(R"({"parity_bench": 1, "cases": [3]})", "case 0 is not an object");
  expect_refused(R"({"parity_bench": 1, "cases": [{"backend": "cpu", "median_s": 1, "images_per_s": 1}]})",
                 "case 0 has no string \"name\"");
  expect_refused(report_with_case(R"(, "threads": "2")"), "case 'x' (cpu): \"threads\" must be an integer");
  expect_refused(report_with_case(R"(, "threads": 1e300)"), "\"threads\" must be an integer");
  expect_refused(report_with_case(R"(, "threads": -1)"), "\"threads\" must be an integer in [0, 2147483647]");
  expect_refused(report_with_case(R"(, "threads": 18446744073709551615)"), "\"threads\" must be an integer");
  expect_refused(R"({"parity_bench": 1, "cases": [{"name": "x", "backend": "cpu", "median_s": 0, "images_per_s": 1}]})",
                 "\"median_s\" must be a number > 0, got 0");
  expect_refused(R"({"parity_bench": 1, "cases": [{"name": "x", "backend": "cpu", "median_s": 1}]})",
                 "\"images_per_s\" must be a number >= 0, got nothing");
}

TEST(BenchCompare, TableMatchesCasesByNameBackendAndThreads) {
  const ComparedReport a = parse_compared_report(
      R"({"parity_bench": 1, "git": "aaa", "threads": 4, "cases": [
          {"name": "train", "backend": "cpu", "threads": 4, "median_s": 0.010, "images_per_s": 6400},
          {"name": "train", "backend": "cpu", "threads": 1, "median_s": 0.040, "images_per_s": 1600},
          {"name": "infer", "backend": "simt", "median_s": 0.5, "images_per_s": 2}]})",
      "a.json");
  const ComparedReport b = parse_compared_report(
      R"({"parity_bench": 1, "git": "bbb", "threads": 4, "cases": [
          {"name": "train", "backend": "cpu", "threads": 4, "median_s": 0.005, "images_per_s": 12800},
          {"name": "train", "backend": "cpu", "threads": 2, "median_s": 0.020, "images_per_s": 3200}]})",
      "b.json");
  const std::string table = comparison_table(a, b);
  EXPECT_NE(table.find("A: a.json (git aaa, 4 threads)\nB: b.json (git bbb, 4 threads)"), std::string::npos) << table;
  // The rows with their padding squeezed to one space.
  std::string rows;
  for (char c : table)
    if (c != ' ' || rows.empty() || rows.back() != ' ') rows += c;
  // The 4-thread case is in both: B twice as fast.
  EXPECT_NE(rows.find("\ntrain cpu 10.000 5.000 6400 12800 2.00x\n"), std::string::npos) << table;
  // The 1-thread case has no partner in B (B's is 2 threads), nor has simt's.
  EXPECT_NE(rows.find("\ntrain cpu 40.000 -\n"), std::string::npos) << table;
  EXPECT_NE(rows.find("\ninfer simt 500.000 -\n"), std::string::npos) << table;
}

}  // namespace
