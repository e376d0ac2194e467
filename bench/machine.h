// bench/machine.h — what `parity bench` measures and records about the machine before any case:
// float32 FMA peak, an Eigen matrix-product rate, CPU name, build options, git revision.
#pragma once

#include <string>

namespace parity::bench {

struct MachineInfo {
  std::string cpu;          // /proc/cpuinfo model name
  int hardware_threads = 0;
  std::string isa;          // the FMA kernel used for the peak: avx512f, avx2+fma or scalar
  double fma_peak_gflops = 0;  // float32 FMA, `threads` threads each running independent chains
  double gemm_gflops = 0;      // Eigen float32 2048x2048 product, columns split over `threads`
};

MachineInfo measure_machine(int threads);

std::string cpu_name();  // /proc/cpuinfo's model name

// The 1-minute load average (/proc/loadavg), -1 when unknown: printed beside noisy measurements.
double load_average_1min();

// CPU seconds the CPUs this process may run on (its affinity mask) have spent busy (user, nice,
// system, irq, softirq, steal in /proc/stat) since boot, and how many such CPUs there are; -1
// when unknown. With process_cpu_seconds, what other processes took of those CPUs over a while.
double allowed_cpus_busy_seconds(int* cpus);
double process_cpu_seconds();  // user + system time of every thread of this process

// Peak resident memory (VmHWM) of this process in KiB, -1 when unknown.
long long vm_hwm_kib();

std::string build_options();  // build type, -march=native, compiler
std::string git_revision();   // at configure time

}  // namespace parity::bench
