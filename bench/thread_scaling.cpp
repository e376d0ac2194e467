// bench/thread_scaling.cpp — `parity bench --thread-scaling`: the statistics of the alternated
// rounds, the inconclusive rule, and the run itself (bench/thread_scaling.h).
#include "bench/thread_scaling.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/cases.h"
#include "bench/machine.h"
#include "bench/timing.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/model.h"
#include "util/atomic_file.h"

namespace parity::bench {

using json = nlohmann::json;

double median_of(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double relative_spread(const std::vector<double>& values) {
  if (values.size() < 2) return 0;
  const double m = median_of(values);
  if (m == 0) return 0;
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  return (*hi - *lo) / std::fabs(m);
}

ScalingSummary summarize_scaling(const std::vector<double>& low, const std::vector<double>& high, double noise_limit,
                                 double others_share) {
  if (low.empty() || low.size() != high.size())
    throw Error(ErrorKind::invalid_argument,
                fmt::format("thread scaling: need as many rounds at each thread count, and at least one; got {} and {}",
                            low.size(), high.size()));
  for (const std::vector<double>* side : {&low, &high})
    for (double v : *side)
      if (!(std::isfinite(v) && v > 0))
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("thread scaling: a round's images/s must be a positive finite number, got {}", v));
  ScalingSummary s;
  s.rounds = static_cast<int>(low.size());
  s.median_low = median_of(low);
  s.median_high = median_of(high);
  s.noise_low = relative_spread(low);
  s.noise_high = relative_spread(high);
  s.noise = std::max(s.noise_low, s.noise_high);
  s.noise_limit = noise_limit;
  std::vector<double> ratios(low.size());
  for (size_t i = 0; i < low.size(); ++i) ratios[i] = high[i] / low[i];
  s.ratio = median_of(ratios);
  s.ratio_of_medians = s.median_high / s.median_low;
  s.others_share = others_share;
  s.conclusive = s.rounds >= 2 && s.noise <= noise_limit && others_share <= noise_limit;
  return s;
}

std::string scaling_verdict(const ScalingSummary& s) {
  if (s.conclusive) return fmt::format("{:.2f}x", s.ratio);
  std::vector<std::string> why;
  if (s.rounds < 2) why.push_back("1 round: no noise measured");
  else if (s.noise > s.noise_limit) why.push_back(fmt::format("noise {:.1f}% > {:.1f}%", 100 * s.noise, 100 * s.noise_limit));
  if (s.others_share > s.noise_limit)
    why.push_back(fmt::format("other processes kept {:.1f}% of the CPUs busy > {:.1f}%", 100 * s.others_share,
                              100 * s.noise_limit));
  return fmt::format("inconclusive ({})", fmt::join(why, "; "));
}

std::string thread_scaling_counts_error(const std::vector<int>& counts, int hardware) {
  if (counts.size() != 2)
    return fmt::format("give two thread counts, LOW,HIGH (e.g. 1,2), got {}", counts.size());
  for (int c : counts) {
    if (c < 1) return fmt::format("a thread count must be at least 1, got {} (0, 'every thread', is not a count to compare)", c);
    if (c > hardware)
      return fmt::format("{} threads asked for, but this machine lets parity use {} hardware threads", c, hardware);
  }
  if (counts[0] >= counts[1])
    return fmt::format("the first count must be below the second (LOW,HIGH), got {},{}", counts[0], counts[1]);
  return "";
}

namespace {

// One model's training step on two backend instances A and B: each validated against ref, then
// timed in alternated rounds, B/A summarised under the rule above. Prints as it goes; returns the
// JSON case `c` with the rounds and the summary added ("valid": false and *failed set when an
// instance fails validation). The labels name the instances in the table ("1-thread", "onednn").
json measure_alternated(const BenchOptions& o, const ModelSpec& spec, const std::string& label_a, Backend& a,
                        const std::string& label_b, Backend& b, Backend& ref, json c, bool* failed) {
  const std::string name = fmt::format("{} train step", spec.name);
  const auto weights = init_weights(spec, o.seed);
  const int64_t check_batch = std::min(o.validate_batch, o.batch);
  for (const auto& [label, backend] : {std::pair<const std::string&, Backend*>{label_a, &a}, {label_b, &b}}) {
    double worst = 0;
    const std::string why = validate_model(spec, *backend, ref, true, check_batch, o.seed, weights, &worst);
    if (!why.empty()) {
      fmt::print("{}, {}: FAILED validation against ref: {}\n", name, label, why);
      c["valid"] = false;
      c["validation"] = fmt::format("{}: {}", label, why);
      *failed = true;
      return c;
    }
  }
  c["valid"] = true;
  ModelCaseStep run_a(spec, a, true, o.batch, o.seed, weights);
  ModelCaseStep run_b(spec, b, true, o.batch, o.seed, weights);
  const double load_before = load_average_1min();
  int cpus = 0;
  const double busy0 = allowed_cpus_busy_seconds(&cpus), own0 = process_cpu_seconds();
  const auto wall0 = std::chrono::steady_clock::now();
  const std::string head_a = label_a + " img/s", head_b = label_b + " img/s";
  fmt::print("  {:<8} {:>16} {:>16} {:>8}\n", "round", head_a, head_b, "ratio");
  std::vector<double> ips_a, ips_b;
  json rounds = json::array();
  for (int r = 0; r < o.scaling_rounds; ++r) {
    // Every round restarts both instances from the same weights and replays the same steps
    // (warm-up included), so rounds differ only by the machine: a training step's cost drifts as
    // the weights learn, and that drift would otherwise read as noise.
    Timing t_a, t_b;
    int64_t i_a = 0, i_b = 0;
    run_a.restart();
    time_runs([&] { run_a.run(i_a++); }, o.warmup, o.min_time, t_a);
    run_b.restart();
    time_runs([&] { run_b.run(i_b++); }, o.warmup, o.min_time, t_b);
    ips_a.push_back(static_cast<double>(o.batch) / t_a.median());
    ips_b.push_back(static_cast<double>(o.batch) / t_b.median());
    const double ratio = ips_b.back() / ips_a.back();
    fmt::print("  {:<8} {:>16.1f} {:>16.1f} {:>7.2f}x\n", r + 1, ips_a.back(), ips_b.back(), ratio);
    std::fflush(stdout);
    rounds.push_back({{"low_images_per_s", ips_a.back()}, {"high_images_per_s", ips_b.back()}, {"ratio", ratio},
                      {"low_steps", t_a.samples.size()}, {"high_steps", t_b.samples.size()}});
  }
  const double load_after = load_average_1min();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const double busy1 = allowed_cpus_busy_seconds(&cpus), own1 = process_cpu_seconds();
  double others = -1;  // unknown without /proc/stat or getrusage
  if (busy0 >= 0 && busy1 >= 0 && own0 >= 0 && own1 >= 0 && cpus > 0 && wall > 0)
    others = std::clamp(((busy1 - busy0) - (own1 - own0)) / (wall * cpus), 0.0, 1.0);
  const ScalingSummary s = summarize_scaling(ips_a, ips_b, kScalingNoiseLimit, others);
  fmt::print("  {:<8} {:>16.1f} {:>16.1f} {:>7.2f}x  (median of the per-round ratios; ratio of the medians {:.2f}x)\n",
             "median", s.median_low, s.median_high, s.ratio, s.ratio_of_medians);
  fmt::print("  {:<8} {:>15.1f}% {:>15.1f}%           ((max-min)/median of the round medians; limit {:.1f}%)\n",
             "noise", 100 * s.noise_low, 100 * s.noise_high, 100 * s.noise_limit);
  if (others >= 0)
    fmt::print("  {:<8} {:.1f}% of the {} CPUs this process may use, busy with other processes while the rounds ran "
               "(limit {:.1f}%)\n",
               "others", 100 * others, cpus, 100 * s.noise_limit);
  else
    fmt::print("  {:<8} unknown (no /proc/stat): not ruled on\n", "others");
  fmt::print("  load average {:.2f} before, {:.2f} after\n", load_before, load_after);
  fmt::print("  {}/{}: {}\n", label_b, label_a, scaling_verdict(s));
  std::fflush(stdout);
  c["rounds"] = rounds;
  c["median_images_per_s_low"] = s.median_low;
  c["median_images_per_s_high"] = s.median_high;
  c["noise_low"] = s.noise_low;
  c["noise_high"] = s.noise_high;
  c["noise"] = s.noise;
  c["noise_limit"] = s.noise_limit;
  c["others_share"] = others >= 0 ? json(others) : json(nullptr);
  c["median_round_ratio"] = s.ratio;
  c["ratio_of_medians"] = s.ratio_of_medians;
  c["conclusive"] = s.conclusive;
  c["ratio"] = s.conclusive ? json(s.ratio) : json(nullptr);  // null: inconclusive
  c["verdict"] = scaling_verdict(s);
  c["load_average_before"] = load_before;
  c["load_average_after"] = load_after;
  return c;
}

// One model on one pair of thread counts of a backend.
json measure_model(const BenchOptions& o, const ModelSpec& spec, const std::string& backend_name, Backend& low,
                   Backend& high, Backend& ref, bool* failed) {
  const int lo = low.threads(), hi = high.threads();
  const json c = {{"name", fmt::format("{} train step", spec.name)}, {"model", spec.name}, {"backend", backend_name},
                  {"batch", o.batch}, {"low_threads", lo}, {"high_threads", hi}};
  fmt::print("\n{} train step, {}, batch {}: {} vs {} threads, {} rounds\n", spec.name, backend_name, o.batch, lo, hi,
             o.scaling_rounds);
  return measure_alternated(o, spec, fmt::format("{}-thread", lo), low, fmt::format("{}-thread", hi), high, ref, c,
                            failed);
}

}  // namespace

json measure_head_to_head(const BenchOptions& o, const ModelSpec& spec, const std::string& name_a, Backend& a,
                          const std::string& name_b, Backend& b, Backend& ref, bool* failed) {
  const json c = {{"name", fmt::format("{} train step", spec.name)}, {"model", spec.name}, {"backend_a", name_a},
                  {"backend_b", name_b}, {"batch", o.batch}, {"threads", b.threads()}};
  fmt::print("\n{} train step, batch {}, {} threads: {} against {}, {} rounds\n", spec.name, o.batch, b.threads(), name_b,
             name_a, o.scaling_rounds);
  return measure_alternated(o, spec, name_a, a, name_b, b, ref, c, failed);
}

int run_thread_scaling(const BenchOptions& o) {
  const std::string bad = thread_scaling_counts_error(o.scaling_threads, hardware_threads());
  if (!bad.empty()) throw Error(ErrorKind::invalid_argument, "bench --thread-scaling: " + bad);
  if (o.scaling_rounds < kMinScalingRounds)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("bench --scaling-rounds: at least {} rounds (fewer give no usable spread), got {}",
                            kMinScalingRounds, o.scaling_rounds));
  const int lo = o.scaling_threads[0], hi = o.scaling_threads[1];
  fmt::print("machine: {} ({} hardware threads); load average {:.2f}\n", cpu_name(), hardware_threads(),
             load_average_1min());
  fmt::print("build: {}; git {}\n", build_options(), git_revision());
  fmt::print("thread scaling: training steps at {} and {} threads, alternated for {} rounds; a round restarts "
             "from the same weights, runs {} warm-up step(s), then times steps for --min-time {} s and takes their "
             "median; noise limit {:.0f}%\n",
             lo, hi, o.scaling_rounds, o.warmup, o.min_time, 100 * kScalingNoiseLimit);
  std::unique_ptr<Backend> ref = make_backend("ref", 1);
  json cases = json::array(), skipped = json::array();
  bool failed = false;
  for (const std::string& backend_name : o.backends) {
    std::unique_ptr<Backend> low, high;
    try {
      low = make_backend(backend_name, lo);
      high = make_backend(backend_name, hi);
    } catch (const Error& e) {
      fmt::print("backend {}: skipped: {}\n", backend_name, e.what());
      skipped.push_back({{"backend", backend_name}, {"reason", e.what()}});
      continue;
    }
    if (low->threads() != lo || high->threads() != hi) {
      const std::string why = fmt::format("it runs on {} and {} threads when asked for {} and {}: no thread count to vary",
                                          low->threads(), high->threads(), lo, hi);
      fmt::print("backend {}: skipped: {}\n", backend_name, why);
      skipped.push_back({{"backend", backend_name}, {"reason", why}});
      continue;
    }
    for (const std::string& model : o.models)
      cases.push_back(measure_model(o, load_model(model), backend_name, *low, *high, *ref, &failed));
  }
  if (!o.json_path.empty()) {
    json out = {{"parity_bench", 1},
                {"machine", {{"cpu", cpu_name()}, {"hardware_threads", hardware_threads()}}},
                {"threads", hi},
                {"build", build_options()},
                {"git", git_revision()},
                {"options",
                 {{"batch", o.batch}, {"min_time_s", o.min_time}, {"warmup", o.warmup}, {"seed", o.seed},
                  {"scaling_threads", o.scaling_threads}, {"scaling_rounds", o.scaling_rounds},
                  {"noise_limit", kScalingNoiseLimit}}},
                {"skipped_backends", skipped},
                {"cases", json::array()},  // no per-case timings: `parity bench compare` finds nothing to pair
                {"thread_scaling", cases}};
    write_file_atomically(o.json_path, out.dump(2) + "\n");
    fmt::print("\nwrote {}\n", o.json_path);
  }
  return failed ? 1 : 0;
}

}  // namespace parity::bench
