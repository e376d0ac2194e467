// parity/model.h — the model zoo (seed-cnn, seed-cnn-112): layer lists with PyTorch state_dict
// names, their forward graphs, and seeded initial weights identical on every backend.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "parity/data.h"
#include "parity/graph.h"
#include "parity/tensor.h"

namespace parity {

struct ParamSpec {
  std::string name;  // PyTorch state_dict key, e.g. "conv1.weight"
  Shape shape;
  int64_t fan_in;    // inputs per output unit: bounds the default initialisation
};

struct ModelSpec {
  std::string name;
  std::string description;
  int channels = 1, height = 28, width = 28;  // graph input geometry (NCHW without N)
  BatchGeometry geometry;                     // how a 28x28 Fashion-MNIST image becomes that input
  int num_classes = 10;
  std::vector<ParamSpec> params;
};

std::vector<std::string> model_names();
// Throws Error(invalid_argument) listing the known models.
const ModelSpec& model_spec(const std::string& name);

// The forward graph for one batch size. Values: INPUT "x" f32 [batch,C,H,W], INPUT "y" i32
// [batch], PARAMs named as in spec.params, and TEMP "logits", "loss" (mean cross-entropy,
// [1]) and "correct" (number of rows whose argmax is the label, [1]).
Graph build_forward(const ModelSpec& spec, int64_t batch);

// PyTorch's default initialisation, drawn from a counter-based RNG keyed by (seed, parameter
// name): every weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with
// a = sqrt(5) reduces to that bound for weights).
std::map<std::string, Tensor> init_weights(const ModelSpec& spec, uint64_t seed);

}  // namespace parity
