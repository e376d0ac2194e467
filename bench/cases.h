// bench/cases.h — the cases `parity bench` times: op cases (every conv, linear, relu and maxpool
// node of a model's training step as a one-node graph) and model cases (training step,
// inference), each compiled through graph/compiled_step.h and validated against ref.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "graph/compiled_step.h"
#include "model/random_batch.h"
#include "parity/backend.h"
#include "parity/graph.h"
#include "parity/model.h"

namespace parity::bench {

std::unique_ptr<Backend> make_backend(const std::string& name, int threads);

// ---------------------------------------------------------------- op cases
struct OpCase {
  std::string label;  // "conv2 (conv2d_bwd_data)"
  parity_op op;
  Graph graph;        // inputs "in0".., one node
  std::vector<std::string> outputs;
  double flops = 0;
};

// Every timed node of the model's training step at `batch`, each as a graph of its own whose
// inputs are INPUT values of the same shapes.
std::vector<OpCase> op_cases(const ModelSpec& spec, int64_t batch);

// The case compiled on `backend` with its inputs written (floats in [-1, 1); maxpool indices
// pointing inside their windows), ready to execute.
CompiledStep compile_op_case(const OpCase& c, Backend& backend, uint64_t seed);

// Runs the op on `backend` and on ref, compared with the op's own tolerance; empty string when
// they agree. `worst` gets the largest NMSE seen.
std::string validate_op(const OpCase& c, Backend& backend, Backend& ref, uint64_t seed, double* worst);

// ---------------------------------------------------------------- model cases
// One compiled model step (training or inference) of a bench model case on one backend, from
// the given weights, cycling through the synthetic batches, under a precision policy (autocast,
// parity/model.h: the graph `parity train --precision` runs; fp16 without its loss scaling).
// Throws the backend's Error when it cannot compile the step (e.g. a dtype it cannot store).
class ModelCaseStep {
 public:
  ModelCaseStep(const ModelSpec& spec, Backend& backend, bool train, int64_t n, uint64_t seed,
                const std::map<std::string, Tensor>& weights, Precision precision = Precision::f32);

  // One step on synthetic batch i % kSyntheticBatches; returns the loss.
  float run(int64_t i);
  // Back to the state the constructor left: the given weights, zeroed optimizer state, step
  // count 0. A training step's cost drifts as the weights learn (how many activations relu
  // zeroes, which the sparse-dy routes skip), so timings that must compare like with like
  // (bench --thread-scaling's rounds) restart before each round and replay the same steps.
  void restart();
  Tensor value(const std::string& name) const { return step_.read(name); }
  const Graph& graph() const { return graph_; }
  double flops() const { return flops_; }
  int64_t batch() const { return n_; }

 private:
  bool train_;
  int64_t n_;
  Graph graph_;
  CompiledStep step_;
  std::vector<ImageBatch> batches_;
  std::map<std::string, Tensor> weights_;
  int32_t x_ = -1, y_ = -1, loss_ = -1, optimizer_step_ = -1, steps_ = 0;
  double flops_ = 0;
};

// One step on `backend` and on ref from the same weights and batch: logits and loss (and,
// training, the updated weights) must agree. Empty string when they do. Under a half precision
// the bounds are the loosest half step tolerance of the graph's ops (half_step_nmse) where that
// is looser than float32's.
std::string validate_model(const ModelSpec& spec, Backend& backend, Backend& ref, bool train, int64_t n,
                           uint64_t seed, const std::map<std::string, Tensor>& weights, double* worst,
                           Precision precision = Precision::f32);

// The loosest step tolerance (ops::tolerance_for at each output's dtype) of the nodes of `g` that
// write a bf16 or f16 value; 0 when none does. In a chain of layers every value downstream of
// the first half node (the logits, the loss, the gradients and so the updated weights) inherits
// the loosest of these, as `parity check model --precision` rules (check/check_model.cpp).
double half_step_nmse(const Graph& g);

}  // namespace parity::bench
