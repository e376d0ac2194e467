// bench/timing.cpp — the statistics of a case's timed samples.
#include "bench/timing.h"

#include <algorithm>

namespace parity::bench {

double Timing::min() const { return samples.empty() ? 0 : *std::min_element(samples.begin(), samples.end()); }

double Timing::max() const { return samples.empty() ? 0 : *std::max_element(samples.begin(), samples.end()); }

double Timing::quantile(double q) const {
  if (samples.empty()) return 0;
  std::vector<double> s = samples;
  std::sort(s.begin(), s.end());
  return s[static_cast<size_t>(q * (s.size() - 1) + 0.5)];
}

}  // namespace parity::bench
