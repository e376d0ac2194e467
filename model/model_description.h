// model/model_description.h — a model written as a JSON file, for programs that link nothing of
// parity: the LibTorch peer (bench/torch_peer/layer_net.h) builds its torch::nn modules from it.
#pragma once

#include <string>

#include "parity/model.h"

namespace parity {

// The format tag of the file; a reader refuses any other.
// 2: layers may name their inputs (residual connections); tanh, relu6, add, dropout, avgpool2d,
// global_avgpool, batchnorm2d; conv2d's groups and bias.
inline const char* model_description_format() { return "parity-model-2"; }

// {"format", "name", "input": {"channels", "height", "width"}, "num_classes", "layers": [...]},
// one object per layer: "op" (layer_op_name), "name" (parity's value name), "inputs" (only
// when not the previous layer's output: the names of earlier layers, or "x") and, by op,
// conv2d: "module", "in_channels", "out_channels", "kernel", "stride", "padding", "groups",
// "bias" (true/false); maxpool2d, avgpool2d: "kernel", "stride"; linear: "module",
// "in_features", "out_features"; batchnorm2d: "module", "channels" (eps 1e-5, momentum 0.1);
// dropout: "p", "node_key" (dropout_node_key of its name: with the run's seed, the step and the
// sample's index it gives parity's mask, ops/kernels/dropout.h).
// The input sizes are spelled out (taken from spec.params) so a reader needs no shape rules.
std::string model_description_json(const ModelSpec& spec);

// Writes model_description_json(spec) to `path` atomically. Throws Error(io) naming `path`.
void write_model_description(const ModelSpec& spec, const std::string& path);

}  // namespace parity
