// bench/distributed.h — `parity bench --distributed mpi` under mpirun: data-parallel training
// steps, each step's time split into compute and exposed communication (what a rank spends in
// the all-reduce's hooks: packing, starting, waiting, unpacking), with the gradients in buckets
// and with one all-reduce after the whole backward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parity::bench {

struct DistributedBenchOptions {
  std::vector<std::string> models;
  std::string backend = "cpu";
  int64_t batch = 64;  // the global batch, divided among the ranks
  int threads = 0;
  double min_time = 1.0;  // seconds of timed steps per case (rank 0's clock decides for all)
  int warmup = 3;
  double bucket_mb = 1.0;
  uint64_t seed = 0;
};

// Collective: every rank of the launch calls it. Rank 0 prints the table. Returns the exit code.
int run_distributed_bench(const DistributedBenchOptions& options);

}  // namespace parity::bench
