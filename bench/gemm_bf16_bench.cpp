// bench/gemm_bf16_bench.cpp — parity-bench-gemm-bf16: GFLOP/s of the cpu backend's gemm_bf16
// on both routes beside gemm_f32, one thread, on the conv-as-GEMM and linear shapes of
// seed-cnn-112 (per image, as backends/cpu/conv2d.cpp and linear.cpp call them). Each shape is
// validated first (each bf16 route against gemm_f32 on the same widened values), then the three
// are timed in turns, several rounds, best of each, so that a noisy shared machine slows all
// three alike. Not installed; a tool for whoever works on mixed precision.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backends/cpu/gemm.h"
#include "backends/cpu/gemm_bf16.h"
#include "bench/machine.h"
#include "ops/kernels/half.h"

namespace {

using namespace parity;
using Clock = std::chrono::steady_clock;

struct GemmShape {
  const char* what;
  int64_t m, n, k;
  bool a_transposed, b_transposed;
};

// seed-cnn-112: conv1 3->16 on 112x112, conv2 16->32 on 56x56 (3x3, pad 1), fc1 25088->128.
// Backward-weight GEMMs run over panels of about 1024 columns (18 rows of 56, 9 of 112).
const GemmShape kShapes[] = {
    {"conv1 fwd     w[K,CRS] col[CRS,PQ]", 16, 12544, 27, false, false},
    {"conv1 bwd-w   dy[K,cols] col^T", 16, 27, 1008, false, true},
    {"conv2 fwd     w[K,CRS] col[CRS,PQ]", 32, 3136, 144, false, false},
    {"conv2 bwd-d   w^T[CRS,K] dy[K,PQ]", 144, 3136, 32, true, false},
    {"conv2 bwd-w   dy[K,cols] col^T", 32, 144, 1008, false, true},
    {"fc1 fwd (N=32) x[N,I] w^T", 32, 128, 25088, false, true},
};

struct AlignedBuffer {
  std::vector<unsigned char> raw;
  void* data;
  explicit AlignedBuffer(int64_t bytes) : raw(static_cast<size_t>(bytes) + 64) {
    data = raw.data() + (64 - reinterpret_cast<uintptr_t>(raw.data()) % 64) % 64;
  }
};

template <class Call>
double seconds_per_call(int64_t reps, const Call& call) {
  const auto t0 = Clock::now();
  for (int64_t r = 0; r < reps; ++r) call();
  return std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(reps);
}

}  // namespace

int main() {
  const bool have_avx512_bf16 = cpu::cpu_has_avx512_bf16();
  std::printf("CPU: %s; gemm_bf16 default route: %s; one thread, best of 7 rounds\n", bench::cpu_name().c_str(),
              cpu::bf16_gemm_route_description().c_str());
  std::printf("%-38s %6s %6s %6s %10s %12s %12s %8s\n", "shape", "m", "n", "k", "f32", "bf16 vdpbf16", "bf16 convert",
              "speedup");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  int status = 0;
  for (const GemmShape& s : kShapes) {
    // Stored operands: A is [m,k] (or [k,m] transposed), B [k,n] (or [n,k]); dense strides.
    const int64_t a_stride = s.a_transposed ? s.m : s.k, b_stride = s.b_transposed ? s.k : s.n;
    std::vector<uint16_t> a16(static_cast<size_t>(s.m * s.k)), b16(static_cast<size_t>(s.k * s.n));
    std::vector<float> a32(a16.size()), b32(b16.size());
    for (size_t i = 0; i < a16.size(); ++i)
      a32[i] = kernels::bf16_bits_to_float(a16[i] = kernels::float_to_bf16_bits(dist(rng)));
    for (size_t i = 0; i < b16.size(); ++i)
      b32[i] = kernels::bf16_bits_to_float(b16[i] = kernels::float_to_bf16_bits(dist(rng)));
    std::vector<float> c_f32(static_cast<size_t>(s.m * s.n)), c_bf16(c_f32.size());
    AlignedBuffer f32_scratch(cpu::gemm_scratch_floats(s.m, s.n, s.k) * 4);
    AlignedBuffer bf16_scratch(cpu::gemm_bf16_scratch_bytes(s.m, s.n, s.k));
    auto run_f32 = [&] {
      cpu::gemm_f32(s.m, s.n, s.k, {a32.data(), a_stride, s.a_transposed}, {b32.data(), b_stride, s.b_transposed},
                    c_f32.data(), s.n, false, static_cast<float*>(f32_scratch.data));
    };
    auto run_bf16 = [&](cpu::Bf16GemmRoute route) {
      cpu::gemm_bf16(s.m, s.n, s.k, {a16.data(), a_stride, s.a_transposed}, {b16.data(), b_stride, s.b_transposed},
                     c_bf16.data(), s.n, false, bf16_scratch.data, route);
    };
    // Validate: the same products summed in another order differ by at most gamma_k sum|ab| <=
    // k * 2^-24 * k (|a|, |b| <= 1), twice that between two routes.
    std::vector<cpu::Bf16GemmRoute> routes{cpu::Bf16GemmRoute::f32_conversion};
    if (have_avx512_bf16) routes.push_back(cpu::Bf16GemmRoute::avx512_bf16);
    run_f32();
    for (cpu::Bf16GemmRoute route : routes) {
      run_bf16(route);
      double worst = 0;
      for (size_t i = 0; i < c_f32.size(); ++i) worst = std::max(worst, std::fabs(double{c_f32[i]} - c_bf16[i]));
      if (worst > 2.0 * s.k * s.k * std::ldexp(1.0, -24)) {
        std::printf("%s: %s differs from gemm_f32 by %g\n", s.what, cpu::bf16_gemm_route_name(route), worst);
        status = 1;
      }
    }
    // Repetitions for about 20 ms per timing.
    const double flops = 2.0 * s.m * s.n * s.k;
    const int64_t reps = std::max<int64_t>(1, static_cast<int64_t>(2e-2 * 100e9 / flops));
    double best_f32 = 1e30, best_vdp = 1e30, best_convert = 1e30;
    for (int round = 0; round < 7; ++round) {
      best_f32 = std::min(best_f32, seconds_per_call(reps, run_f32));
      if (have_avx512_bf16)
        best_vdp = std::min(best_vdp, seconds_per_call(reps, [&] { run_bf16(cpu::Bf16GemmRoute::avx512_bf16); }));
      best_convert =
          std::min(best_convert, seconds_per_call(reps, [&] { run_bf16(cpu::Bf16GemmRoute::f32_conversion); }));
    }
    const double vdp = have_avx512_bf16 ? flops / best_vdp * 1e-9 : 0.0;
    std::printf("%-38s %6lld %6lld %6lld %10.1f %12.1f %12.1f %7.2fx\n", s.what, static_cast<long long>(s.m),
                static_cast<long long>(s.n), static_cast<long long>(s.k), flops / best_f32 * 1e-9, vdp,
                flops / best_convert * 1e-9, have_avx512_bf16 ? best_f32 / best_vdp : 0.0);
  }
  std::printf("GFLOP/s (2mnk / time per call, packing and widening included); speedup = f32 time / vdpbf16 time\n");
  return status;
}
