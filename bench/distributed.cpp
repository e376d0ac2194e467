// bench/distributed.cpp — data-parallel training steps timed under mpirun: per model, bucketed and
// with one all-reduce after the backward, each step split into compute and exposed communication.
#include "bench/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "bench/machine.h"
#include "bench/timing.h"
#include "dist/data_parallel.h"
#include "model/random_batch.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/model.h"
#include "parity/trainer.h"

namespace parity::bench {
namespace {

using Clock = std::chrono::steady_clock;

Tensor rows_of(const Tensor& t, int64_t first, int64_t n) {
  std::vector<int64_t> dims = t.shape().dims();
  const int64_t row = t.numel() / dims[0];
  dims[0] = n;
  Tensor out(Shape(dims), t.dtype());
  const size_t element = t.nbytes() / static_cast<size_t>(t.numel());
  std::memcpy(out.data(), static_cast<const char*>(t.data()) + static_cast<size_t>(first * row) * element,
              static_cast<size_t>(n * row) * element);
  return out;
}

struct CaseResult {
  double step_ms = 0, exposed_ms = 0;  // medians over the timed steps
  int64_t steps = 0;
};

// Timed data-parallel steps of `spec` with gradient buckets of `bucket_bytes` (<= 0: one after
// the backward). Every rank takes the same number of steps: rank 0's clock decides when to stop.
CaseResult time_case(const ModelSpec& spec, const DistributedBenchOptions& o, int64_t bucket_bytes) {
  DataParallelOptions dpo;
  dpo.bucket_bytes = bucket_bytes;
  CommunicatorDataParallel dp(make_communicator("mpi"), dpo);
  const int64_t local = o.batch / dp.size();
  BackendOptions bo;
  bo.threads = o.threads;
  Trainer trainer(spec, create_backend(o.backend, bo), OptimizerConfig{}, local, o.seed, dp.step_extension(spec));
  trainer.load_weights(init_weights(spec, o.seed), "seed");
  const ImageBatch global = random_batch(spec, o.batch, o.seed);
  const Tensor x = rows_of(global.x, dp.rank() * local, local), y = rows_of(global.y, dp.rank() * local, local);
  auto step = [&] {
    dp.before_step(local, o.batch);
    trainer.train_step(x, y);
    dp.after_step(trainer);
  };
  for (int i = 0; i < o.warmup; ++i) step();
  Timing steps, exposed;
  double total = 0;
  for (;;) {
    const double comm_before = dp.exposed_communication_seconds();
    const auto t0 = Clock::now();
    step();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    steps.samples.push_back(s);
    exposed.samples.push_back(dp.exposed_communication_seconds() - comm_before);
    total += s;
    double go_on = dp.rank() == 0 && (total < o.min_time || steps.samples.size() < 5) ? 1.0 : 0.0;
    dp.sum(&go_on, 1);
    if (go_on == 0) break;
  }
  return CaseResult{steps.median() * 1e3, exposed.median() * 1e3, static_cast<int64_t>(steps.samples.size())};
}

}  // namespace

int run_distributed_bench(const DistributedBenchOptions& o) {
  // A communicator of its own for the header line; each case makes its own as well.
  std::unique_ptr<Communicator> comm = make_communicator("mpi");
  const int ranks = comm->size(), rank = comm->rank();
  if (o.batch % ranks != 0)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("bench --distributed: --batch {} is the global batch and must be divisible by the {} ranks",
                            o.batch, ranks));
  if (rank == 0) {
    fmt::print("data-parallel training over mpi: {} ranks, {} threads each on {}, global batch {} ({} per rank); {}\n",
               ranks, o.threads, o.backend, o.batch, o.batch / ranks, cpu_name());
    fmt::print("exposed communication: a rank's time inside the all-reduce hooks (packing, starting, waiting, "
               "unpacking); compute: the rest of the step\n");
    fmt::print("{:<16} {:<28} {:>9} {:>11} {:>12} {:>10} {:>7}\n", "model", "all-reduce", "step ms", "compute ms",
               "exposed ms", "images/s", "steps");
  }
  for (const std::string& name : o.models) {
    const ModelSpec spec = load_model(name);
    const int64_t bucket_bytes = static_cast<int64_t>(o.bucket_mb * 1024 * 1024);
    for (const bool bucketed : {true, false}) {
      const CaseResult r = time_case(spec, o, bucketed ? bucket_bytes : 0);
      if (rank != 0) continue;
      const std::string how = bucketed && bucket_bytes > 0 ? fmt::format("buckets of {} MiB", o.bucket_mb)
                                                           : std::string("one, after the backward");
      fmt::print("{:<16} {:<28} {:>9.3f} {:>11.3f} {:>12.3f} {:>10.0f} {:>7}\n", name, how, r.step_ms,
                 r.step_ms - r.exposed_ms, r.exposed_ms, double(o.batch) / (r.step_ms * 1e-3), r.steps);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace parity::bench
