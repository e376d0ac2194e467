// bench/compare.h — `parity bench compare A.json B.json`: the two reports read and checked (they
// are files from anywhere), then their timed cases side by side with B's speed over A's.
#pragma once

#include <string>
#include <vector>

namespace parity::bench {

// A case of a report that was timed (cases that failed validation carry no "median_s" and are
// left out). Cases of the two reports are matched by name, backend and threads.
struct TimedCase {
  std::string name, backend;
  int threads = 0;  // 0 when the case does not say
  double median_s = 0, images_per_s = 0;
};

struct ComparedReport {
  std::string source;  // the path, for the heading
  std::string git = "?";
  int threads = 0;
  std::vector<TimedCase> cases;
};

// Reads the JSON `parity bench --json` writes. Throws Error(data) naming `source` when the text is
// not JSON, not an object with "parity_bench" and a "cases" array, or a timed case lacks its name,
// backend, a median_s > 0 or an images_per_s >= 0, or has a field of the wrong type or out of range.
ComparedReport parse_compared_report(const std::string& text, const std::string& source);

// The table `parity bench compare` prints: the two headings, then a row per timed case of A,
// with B's times and B/A (the ratio of the medians) where B has the same case, "-" where not.
std::string comparison_table(const ComparedReport& a, const ComparedReport& b);

// Reads both files and prints their table. Error(io) when one cannot be read, Error(data) as above.
int compare_reports(const std::string& a_path, const std::string& b_path);

}  // namespace parity::bench
