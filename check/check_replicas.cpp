// check/check_replicas.cpp — the replica check of a data-parallel run: after each training step,
// every rank's weights, optimizer state and buffers against rank 0's, bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "model/random_batch.h"
#include "parity/backend.h"
#include "parity/check.h"
#include "parity/error.h"
#include "parity/trainer.h"

namespace parity {
namespace {

// Rows [first, first + n) of a batch tensor.
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

// The rank PARITY_TEST_DESYNC_RANK names, or -1.
int desync_rank() {
  const char* text = std::getenv("PARITY_TEST_DESYNC_RANK");
  if (!text || !*text) return -1;
  char* end = nullptr;
  const long r = std::strtol(text, &end, 10);
  if (*end != '\0' || r < 0) throw Error(ErrorKind::invalid_argument, fmt::format("PARITY_TEST_DESYNC_RANK={}: not a rank", text));
  return static_cast<int>(r);
}

// Elements of `mine` that differ from rank 0's `theirs` (bit patterns), and the largest
// difference of the f32 ones.
std::pair<int64_t, double> differences(const Tensor& mine, const std::vector<unsigned char>& theirs) {
  int64_t count = 0;
  double max_abs = 0;
  const size_t element = mine.nbytes() / static_cast<size_t>(std::max<int64_t>(mine.numel(), 1));
  const auto* a = static_cast<const unsigned char*>(mine.data());
  for (int64_t i = 0; i < mine.numel(); ++i) {
    const size_t at = static_cast<size_t>(i) * element;
    if (std::memcmp(a + at, theirs.data() + at, element) == 0) continue;
    ++count;
    if (mine.dtype() == DType::f32) {
      float x, y;
      std::memcpy(&x, a + at, sizeof x);
      std::memcpy(&y, theirs.data() + at, sizeof y);
      max_abs = std::max(max_abs, std::fabs(double(x) - double(y)));
    }
  }
  return {count, max_abs};
}

}  // namespace

ReplicaCheckReport check_replicas(const ModelCheckOptions& o, DataParallel& dp) {
  const ModelSpec spec = load_model(o.model);
  const int ranks = dp.size(), rank = dp.rank();
  if (o.batch % ranks != 0)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check model: --batch {} is the global batch and must be divisible by the {} ranks", o.batch, ranks));
  BackendOptions bo;
  bo.threads = o.threads;
  const int64_t local = o.batch / ranks;
  Trainer trainer(spec, create_backend(o.backend, bo), OptimizerConfig{}, local, o.seed, dp.step_extension(spec));
  trainer.load_weights(init_weights(spec, o.seed), fmt::format("seed {}", o.seed));
  const int nudged = desync_rank();

  ReplicaCheckReport report;
  report.ranks = ranks;
  report.steps = std::max(o.steps, 2);
  for (int step = 1; step <= report.steps; ++step) {
    const ImageBatch global = random_batch(spec, o.batch, o.seed, step);
    dp.before_step(local, o.batch);
    trainer.train_step(rows_of(global.x, rank * local, local), rows_of(global.y, rank * local, local));
    dp.after_step(trainer);
    std::map<std::string, Tensor> state = trainer.checkpoint().tensors;
    if (step == 1 && rank == nudged && !spec.params.empty()) {
      Tensor w = state.at(spec.params.front().name);
      w.f32()[0] = std::nextafter(w.f32()[0], INFINITY);
      std::map<std::string, Tensor> weights = trainer.weights();
      weights[spec.params.front().name] = w;
      trainer.load_weights(weights, "PARITY_TEST_DESYNC_RANK");
      state[spec.params.front().name] = w;
    }
    // Per tensor (name order, the same on every rank): each rank's count of differing elements
    // and largest difference in its own slot, summed so that every rank sees all of them.
    std::vector<double> counts(state.size() * static_cast<size_t>(ranks), 0.0), largest(counts.size(), 0.0);
    size_t t = 0;
    report.tensors = static_cast<int64_t>(state.size());
    report.elements = 0;
    for (const auto& [name, tensor] : state) {
      std::vector<unsigned char> theirs(static_cast<const unsigned char*>(tensor.data()),
                                        static_cast<const unsigned char*>(tensor.data()) + tensor.nbytes());
      dp.broadcast(theirs.data(), static_cast<int64_t>(theirs.size()), 0);
      const auto [count, max_abs] = differences(tensor, theirs);
      counts[t * static_cast<size_t>(ranks) + static_cast<size_t>(rank)] = static_cast<double>(count);
      largest[t * static_cast<size_t>(ranks) + static_cast<size_t>(rank)] = max_abs;
      report.elements += tensor.numel();
      ++t;
    }
    dp.sum(counts.data(), static_cast<int64_t>(counts.size()));
    dp.sum(largest.data(), static_cast<int64_t>(largest.size()));
    for (int r = 1; r < ranks; ++r) {
      ReplicaDivergence d;
      d.step = step;
      d.rank = r;
      size_t k = 0;
      for (const auto& entry : state) {
        const size_t at = k * static_cast<size_t>(ranks) + static_cast<size_t>(r);
        if (counts[at] > 0 && d.tensor.empty()) d.tensor = entry.first;
        d.elements += static_cast<int64_t>(counts[at]);
        d.max_abs = std::max(d.max_abs, largest[at]);
        ++k;
      }
      if (d.elements > 0) report.divergences.push_back(d);
    }
  }
  return report;
}

}  // namespace parity
