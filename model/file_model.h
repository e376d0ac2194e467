// model/file_model.h — models read from files (ONNX): the ModelSpec of one, its layers built by
// the importer for every batch size and form.
#pragma once

#include <string>

#include "parity/model.h"

namespace parity {

// Whether `name_or_file` names a model file rather than a built-in model (it ends in ".onnx").
bool is_model_file(const std::string& name_or_file);

// The ModelSpec of an ONNX file: one f32 graph input [batch, C, H, W] (batch symbolic or fixed)
// and one output [batch, classes]; or that input, an integer labels input [batch] and one output
// made by a SoftmaxCrossEntropyLoss of those labels (mean or sum), whose scores become the logits
// and whose reduction and ignore_index become spec.loss. Parameters and buffers are the graph's
// PARAM and STATE values with the file's initial values. Error naming the file and what does not
// fit.
ModelSpec load_model_file(const std::string& path);

}  // namespace parity
