// bench/bench.h — the engine behind `parity bench`: op and model cases on chosen backends, each
// validated against ref before it is timed, the machine's float32 FMA peak and matrix-product
// rate measured at start-up, the LibTorch peer run interleaved with parity's own runs, and the
// report as a terminal table or JSON (bench/compare.h compares two such JSON files).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parity/model.h"

namespace parity::bench {

struct BenchOptions {
  std::vector<std::string> backends = {"cpu"};
  std::vector<std::string> models = model_names();  // every built-in model
  bool ops = true;          // per-op cases (forward and backward of every layer of the models)
  bool model_cases = true;  // whole training step and inference per model
  int threads = 0;          // 0: every hardware thread
  int64_t batch = 64;       // training batch (op cases use the training step's shapes)
  int64_t infer_batch = 1000;
  int64_t validate_batch = 16;  // batch of the validation run against ref (ref is float64 and naive)
  double min_time = 1.0;       // seconds of timed repeats per case (per round with a peer)
  int warmup = 3;
  bool scaling = true;      // also time training with 1 thread, to report the thread scaling
  bool head_to_head = true; // with 2+ backends, pair their training steps round by round at the end
  std::string against;      // "torch": run the LibTorch peer; "": none
  std::string peer_path;    // empty: the peer built beside parity (PARITY_TORCH_PEER overrides)
  int rounds = 3;           // parity/peer alternations per model case
  // Training steps are timed at each of these (autocast, parity/model.h), interleaved round by
  // round, each half precision also as a ratio to f32; inference and op cases stay f32.
  std::vector<Precision> precisions = {Precision::f32};
  // --thread-scaling LOW,HIGH (bench/thread_scaling.h): empty unless given; then only that
  // measurement runs, in scaling_rounds alternated rounds.
  std::vector<int> scaling_threads;
  int scaling_rounds = 5;
  std::string jemalloc;     // empty: look in the usual places
  bool measure_rss = true;  // peak resident memory of a separate parity training process
  std::string json_path;
  std::string weights_dir;  // keep the peer's weights here (<model>.safetensors); empty: a temp file
  std::string self_path;    // the parity executable (for the peak-memory worker)
  uint64_t seed = 1;
};

// Runs every case; prints the table to stdout as it goes; writes JSON when asked. Returns 0,
// or 1 when a case failed validation (it is then reported and not timed).
int run_bench(const BenchOptions& options);

// The hidden worker that measures a training process's peak resident memory: trains `steps`
// steps of `model` on cpu and prints {"vm_hwm_kib": ...}.
int run_rss_worker(const std::string& model, const std::string& backend, int64_t batch, int threads,
                   int64_t steps, uint64_t seed);

}  // namespace parity::bench
