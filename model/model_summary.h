// model/model_summary.h — the layer table of a model (as torchinfo or Keras print it): per node
// of the forward graph its output shape, parameters, forward and backward FLOPs and activation
// bytes, the totals of a whole training step, and the memory that step needs (the plan's arena,
// and what a backend's compiled executable holds).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "parity/backend.h"
#include "parity/graph.h"
#include "parity/model.h"
#include "parity/tensor.h"

namespace parity {

// FLOP convention: the FLOPs are the op rules' counts (ops/<op>.cpp, OpRule::flops), the same
// numbers `parity bench` divides by time. A multiply-add counts 2, so conv2d forward is
// 2*N*K*P*Q*C*R*S plus N*K*P*Q bias adds, linear forward 2*N*O*I + N*O. Backward is the sum of
// the nodes the layer's gradient rule emits: for conv2d and linear bwd_data (2x the forward's
// products, absent for the first layer, whose input needs no gradient) and bwd_weight (2x the
// forward's products plus the bias sums), so about 2x forward. Element-wise and pooling ops count
// per element: relu 1 per output (and 1 per element backward), maxpool one compare per window
// element forward and 1 per output gradient backward, reshape (flatten) 0; softmax cross-entropy
// 4 per logit each way; the accuracy count 1 per logit. Optimizer updates (adam 12 per
// parameter, sgd 4) are counted in the totals only.
struct LayerSummary {
  std::string name;        // the node and its output value ("conv1", "loss")
  std::string op;          // the layer's op (model.h's layer_op_name), else the graph op ("softmax_xent")
  Shape output;            // the first output's shape, batch included
  int64_t params = 0;      // elements of the parameters the node reads
  double flops_forward = 0;
  double flops_backward = 0;  // the nodes named "<name>.bwd*" in the training graph
  int64_t activation_bytes = 0;  // bytes of every output of the node (maxpool's i32 indices included)
};

struct ModelSummary {
  std::string model;
  int64_t batch = 0;
  Shape input;  // the "x" input, batch included
  std::vector<LayerSummary> layers;  // every node of the forward graph, in order
  int64_t params = 0, param_bytes = 0;
  double flops_forward = 0;    // every forward node
  double flops_backward = 0;   // every backward node (gradient sums and the dL/dL seed included)
  double flops_optimizer = 0;  // the update nodes
  int64_t activation_bytes = 0;
  // The training step as the Trainer compiles it (differentiate + optimizer, "loss" and
  // "correct" kept): its node count, the plan's arena (inputs and temporaries, with reuse) and
  // its persistent values (parameters and optimizer state, outside the arena).
  int64_t training_nodes = 0;
  int64_t arena_bytes = 0;
  int64_t persistent_bytes = 0;
};

// The forward graph, and the training step built from it as the Trainer builds it.
Graph build_training_step(const ModelSpec& spec, int64_t batch, const OptimizerConfig& optimizer);

// Throws Error(invalid_argument) for batch < 1.
ModelSummary summarize_model(const ModelSpec& spec, int64_t batch, const OptimizerConfig& optimizer = {});

// What a backend's compiled training step holds (arena, workspaces and persistent values): the
// backend's memory_need when it answers one (nothing allocated), else Executable::memory_bytes()
// of the compiled step. `available` false: `why` says why the backend cannot be used, or names
// the node it cannot run.
//
// An unavailable backend that plans without a device (the CUDA plugin on a machine without the
// GPU: memory_need_without_device) gives `planned`, an upper bound: what only the device settles,
// such as a convolution's workspace, is counted at its limit.
struct BackendMemory {
  std::string backend;  // as asked ("auto" resolved to the backend's name when available)
  bool available = false;
  int64_t bytes = 0;
  std::string why;
  std::optional<MemoryNeed> planned;  // unavailable backends only
};
BackendMemory training_step_memory(const ModelSpec& spec, int64_t batch, const std::string& backend,
                                   const OptimizerConfig& optimizer = {});

// The summary (and the backend's memory, when given) as JSON text:
// {"model", "batch", "input", "flop_convention", "layers": [{"name", "op", "output", "params",
//  "flops_forward", "flops_backward", "activation_bytes"}...], "totals": {...}, "training_step":
//  {"nodes", "arena_bytes", "persistent_bytes", "backend": {"name", "available", "memory_bytes"
//  | "reason" [, "planned_without_device": {"device_bytes", "host_bytes", "upper_bound": true}]}}}.
std::string model_summary_json(const ModelSummary& summary, const BackendMemory* memory);

// One line describing the FLOP convention above, for the table and the JSON.
const char* flop_convention();

}  // namespace parity
