// bench/machine.cpp — start-up measurements of the machine: float32 FMA peak (independent FMA
// chains per thread, enough to cover latency x ports) and an Eigen 2048x2048 matrix-product rate;
// plus the strings the report records (CPU, build options, git revision) and the load average.
#include "bench/machine.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <thread>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>

namespace parity::bench {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// (The diagnostics silenced above for Eigen also cover _mm512_reduce_add_ps, whose GCC 12
// implementation trips -Wuninitialized.)
// 16 independent chains: FMA latency 4 cycles x 2 ports needs at least 8 in flight.
constexpr int kChains = 16;

__attribute__((target("avx512f"))) float fma_avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(1.0f + 1e-3f * i);
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  float sum = 0;
  for (int i = 0; i < kChains; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  return sum;
}

__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iterations) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-3f * i);
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  alignas(32) float lanes[8];
  float sum = 0;
  for (int i = 0; i < kChains; ++i) {
    _mm256_store_ps(lanes, acc[i]);
    for (float v : lanes) sum += v;
  }
  return sum;
}

float fma_scalar(int64_t iterations) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = 1.0f + 1e-3f * i;
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  float sum = 0;
  for (float v : acc) sum += v;
  return sum;
}

// Runs `work` on `threads` threads at once; returns the wall time of the slowest.
template <class Work>
double on_threads(int threads, const Work& work) {
  std::vector<std::thread> pool;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) pool.emplace_back([&work, t] { work(t); });
  for (std::thread& th : pool) th.join();
  return seconds_since(t0);
}

double measure_fma(int threads, std::string& isa) {
  int lanes = 1;
  float (*kernel)(int64_t) = fma_scalar;
  if (__builtin_cpu_supports("avx512f")) kernel = fma_avx512, lanes = 16, isa = "avx512f";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) kernel = fma_avx2, lanes = 8, isa = "avx2+fma";
  else isa = "scalar";
  volatile float sink = 0;
  int64_t iterations = 1 << 20;
  double best = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const double s = on_threads(threads, [&](int) { sink = sink + kernel(iterations); });
    if (s < 0.05) {
      iterations *= 4;
      --attempt;
      continue;
    }
    best = std::max(best, 2.0 * kChains * lanes * static_cast<double>(iterations) * threads / s * 1e-9);
  }
  return best;
}

double measure_gemm(int threads) {
  const Eigen::Index n = 2048;
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
  const Eigen::Index cols = (n + threads - 1) / threads;
  double best = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const double s = on_threads(threads, [&](int t) {
      const Eigen::Index begin = t * cols, width = std::min(cols, n - begin);
      if (width > 0) c.middleCols(begin, width).noalias() = a * b.middleCols(begin, width);
    });
    best = std::max(best, 2.0 * n * n * n / s * 1e-9);
  }
  return best;
}

}  // namespace

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

std::string cpu_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

MachineInfo measure_machine(int threads) {
  MachineInfo m;
  m.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
  m.cpu = cpu_name();
  m.fma_peak_gflops = measure_fma(threads, m.isa);
  m.gemm_gflops = measure_gemm(threads);
  return m;
}

long long vm_hwm_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

double load_average_1min() {
  std::ifstream f("/proc/loadavg");
  double one = -1;
  if (!(f >> one)) return -1;
  return one;
}

double allowed_cpus_busy_seconds(int* cpus) {
  *cpus = 0;
  cpu_set_t mask;
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) return -1;
  std::ifstream f("/proc/stat");
  std::string line;
  double ticks = 0;
  while (std::getline(f, line)) {
    int index = -1;
    if (line.rfind("cpu", 0) != 0 || std::sscanf(line.c_str(), "cpu%d", &index) != 1) continue;
    if (index < 0 || index >= CPU_SETSIZE || !CPU_ISSET(index, &mask)) continue;
    std::istringstream fields(line.substr(line.find(' ')));
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (!(fields >> user >> nice >> system >> idle >> iowait >> irq >> softirq)) return -1;
    fields >> steal;  // absent before Linux 2.6.11
    ticks += user + nice + system + irq + softirq + steal;
    ++*cpus;
  }
  const long hz = ::sysconf(_SC_CLK_TCK);
  return *cpus > 0 && hz > 0 ? ticks / static_cast<double>(hz) : -1;
}

double process_cpu_seconds() {
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return -1;
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

std::string build_options() {
  std::string s = std::string(PARITY_BENCH_BUILD_TYPE) + ", " + PARITY_BENCH_FLAGS + ", g++ " + __VERSION__;
  return s;
}

std::string git_revision() { return std::string(PARITY_BENCH_GIT_REVISION) + " (at configure time)"; }

}  // namespace parity::bench
