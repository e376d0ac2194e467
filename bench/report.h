// bench/report.h — the results of `parity bench`: one table row per case as it is timed, and the
// JSON of every case (which `parity bench compare` reads back: bench/compare.h).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bench/machine.h"
#include "bench/timing.h"

namespace parity::bench {

struct Report {
  nlohmann::json cases = nlohmann::json::array();
  nlohmann::json head_to_head = nlohmann::json::array();  // bench/thread_scaling.h: measure_head_to_head
  MachineInfo machine;
  int threads = 1;
  bool failed = false;

  void header() const;
  // Prints the row of a timed case and returns its JSON (not yet added to `cases`).
  nlohmann::json add(const std::string& name, const std::string& kind, const std::string& backend, int64_t batch,
                     double flops, const Timing& t, int threads_used);
  // Prints and records a case that failed validation against ref (it is not timed).
  void add_invalid(const std::string& name, const std::string& kind, const std::string& backend, const std::string& why);
};

// Writes the whole report (machine, build, options, skipped backends, cases, peer) as JSON.
void write_report_json(const std::string& path, const Report& report, const BenchOptions& o,
                       const nlohmann::json& skipped_backends, const std::string& peer);

}  // namespace parity::bench
