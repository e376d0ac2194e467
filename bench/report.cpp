// bench/report.cpp — printing and writing the results of `parity bench` (bench/compare.cpp reads them back).
#include "bench/report.h"

#include <cstdio>

#include <fmt/format.h>

#include "parity/error.h"
#include "util/atomic_file.h"

namespace parity::bench {

using json = nlohmann::json;

void Report::header() const {
  fmt::print("{:<50} {:>7} {:>6} {:>9} {:>9} {:>9} {:>10} {:>8} {:>6} {:>6}\n", "case", "backend", "batch",
             "median ms", "min ms", "max ms", "images/s", "GFLOP/s", "%peak", "%gemm");
}

json Report::add(const std::string& name, const std::string& kind, const std::string& backend, int64_t batch,
                 double flops, const Timing& t, int threads_used) {
  const double median = t.median();
  json c = {{"name", name}, {"kind", kind}, {"backend", backend}, {"batch", batch}, {"threads", threads_used},
            {"flops", flops}, {"runs", t.samples.size()}, {"median_s", median}, {"min_s", t.min()},
            {"max_s", t.max()}};
  const double gflops = median > 0 ? flops / median * 1e-9 : 0;
  c["images_per_s"] = median > 0 ? batch / median : 0;
  c["gflops"] = gflops;
  c["pct_fma_peak"] = 100 * gflops / machine.fma_peak_gflops;
  c["pct_gemm"] = 100 * gflops / machine.gemm_gflops;
  fmt::print("{:<50} {:>7} {:>6} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.0f} {:>8.1f} {:>5.1f}% {:>5.1f}%\n", name, backend,
             batch, median * 1e3, t.min() * 1e3, t.max() * 1e3, c["images_per_s"].get<double>(), gflops,
             c["pct_fma_peak"].get<double>(), c["pct_gemm"].get<double>());
  std::fflush(stdout);
  return c;
}

void Report::add_invalid(const std::string& name, const std::string& kind, const std::string& backend,
                         const std::string& why) {
  fmt::print("{:<50} {:>7} FAILED validation against ref: {}\n", name, backend, why);
  cases.push_back({{"name", name}, {"kind", kind}, {"backend", backend}, {"valid", false}, {"validation", why}});
  failed = true;
}

void write_report_json(const std::string& path, const Report& report, const BenchOptions& o,
                       const json& skipped_backends, const std::string& peer) {
  json precisions = json::array();
  for (const Precision p : o.precisions) precisions.push_back(precision_name(p));
  json out = {{"parity_bench", 1},
              {"machine",
               {{"cpu", report.machine.cpu}, {"hardware_threads", report.machine.hardware_threads},
                {"fma_isa", report.machine.isa}, {"fma_peak_gflops", report.machine.fma_peak_gflops},
                {"gemm_gflops", report.machine.gemm_gflops}}},
              {"threads", report.threads},
              {"build", build_options()},
              {"git", git_revision()},
              {"options",
               {{"batch", o.batch}, {"infer_batch", o.infer_batch}, {"min_time_s", o.min_time},
                {"warmup", o.warmup}, {"rounds", o.rounds}, {"seed", o.seed}, {"precisions", precisions}}},
              {"skipped_backends", skipped_backends},
              {"cases", report.cases}};
  if (!report.head_to_head.empty()) out["head_to_head"] = report.head_to_head;
  if (!peer.empty()) out["peer"] = peer;
  write_file_atomically(path, out.dump(2) + "\n");
  fmt::print("\nwrote {}\n", path);
}

}  // namespace parity::bench
