// model/model_description.h — a model written as a JSON file, for programs that link nothing of
// parity: the LibTorch peer (bench/torch_peer/layer_net.h) builds its torch::nn modules from it.
#pragma once

#include <string>

#include "parity/model.h"

namespace parity {

// The format tag of the file; a reader refuses any other.
inline const char* model_description_format() { return "parity-model-1"; }

// {"format", "name", "input": {"channels", "height", "width"}, "num_classes", "layers": [...]},
// one object per layer: "op" (layer_op_name), "name" (parity's value name) and, by op,
// conv2d: "module", "in_channels", "out_channels", "kernel", "stride", "padding";
// maxpool2d: "kernel", "stride"; linear: "module", "in_features", "out_features".
// The input sizes are spelled out (taken from spec.params) so a reader needs no shape rules.
std::string model_description_json(const ModelSpec& spec);

// Writes model_description_json(spec) to `path` atomically. Throws Error(io) naming `path`.
void write_model_description(const ModelSpec& spec, const std::string& path);

}  // namespace parity
