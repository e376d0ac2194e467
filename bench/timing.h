// bench/timing.h — how a case is timed: warm-up runs, then repeats until a minimum time, and the
// statistics of the samples.
#pragma once

#include <chrono>
#include <vector>

namespace parity::bench {

struct Timing {
  std::vector<double> samples;  // seconds per run
  double median() const { return quantile(0.5); }
  double min() const;
  double max() const;
  double quantile(double q) const;
};

// Warm-up runs, then timed runs until `min_time` seconds (and at least 3 runs) have passed.
template <class Run>
void time_runs(const Run& run, int warmup, double min_time, Timing& timing) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) run();
  double total = 0;
  for (int i = 0; total < min_time || i < 3; ++i) {
    const auto t0 = Clock::now();
    run();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    timing.samples.push_back(s);
    total += s;
  }
}

}  // namespace parity::bench
