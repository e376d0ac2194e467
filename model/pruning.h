// model/pruning.h — magnitude pruning of a model's conv and linear weights (`parity prune`): the
// masks (which elements or output channels are kept), and the reading and checking of a mask file
// for training with the pruning held (TrainOptions::mask).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "parity/model.h"
#include "parity/safetensors.h"
#include "parity/tensor.h"

namespace parity {

struct PruneOptions {
  // The fraction of the ranked units to prune, in [0, 1): round(sparsity * count) of them exactly
  // (std::llround, halves away from zero).
  double sparsity = 0.5;
  // global: one ranking over every prunable weight of the model; layer: each weight ranked alone.
  enum class Scope { global, layer } scope = Scope::global;
  // false: elements ranked by |w|; true: whole output channels (dim 0: a conv's filter, a linear
  // layer's output row) ranked by the L2 norm of their elements. Globally, norms of channels of
  // different sizes are compared as they are (not normalised): layer scope prunes each layer alike.
  bool structured_channels = false;
};

struct PrunedTensor {
  std::string name;  // the weight, e.g. "conv1.weight"
  int64_t pruned = 0, total = 0;  // elements
};

struct PruneResult {
  // One u8 mask per prunable weight, keyed "<weight>.mask" (gradient_mask_name): 1 kept, 0 pruned.
  std::map<std::string, Tensor> masks;
  std::vector<PrunedTensor> tensors;  // in the model's parameter order
  int64_t pruned = 0, total = 0;      // elements over every prunable weight
};

// The weights pruning applies to: every conv and linear weight (a model file's: every parameter
// of rank >= 2). Biases and batch-norm parameters (rank 1) never are.
std::vector<std::string> prunable_weights(const ModelSpec& spec);

// Zeroes the smallest-magnitude elements (or channels) of the prunable weights in `weights`, in
// place, and returns the masks. Ties are broken by position: among equal magnitudes the unit
// earlier in the model's parameter order, then at the lower flat (or channel) index, is pruned
// first, so the count is exact and the result depends on nothing but the weights.
// Error(invalid_argument) for a sparsity outside [0, 1); Error(data) for a missing weight, a
// weight of another shape, or a non-finite element (all naming the tensor).
PruneResult magnitude_prune(const ModelSpec& spec, std::map<std::string, Tensor>& weights, const PruneOptions& options);

// The masks of a mask file (what magnitude_prune wrote: its "<weight>.mask" tensors; other tensors
// are ignored), checked against the model: Error(data) naming `source` when the file holds no
// ".mask" tensor, a mask names a tensor that is not a prunable weight of the model (the message
// lists those), its shape differs from the weight's (both shapes named), it is not u8, or it
// holds a value other than 0 and 1. Returned keyed by weight name, as f32 0/1 tensors: what
// OptimizerConfig::gradient_masks takes.
std::map<std::string, Tensor> read_gradient_masks(const ModelSpec& spec, const TensorFile& file, const std::string& source);

}  // namespace parity
