// parity/parity.h — the whole public API in one include, plus what this build contains.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "parity/backend.h"
#include "parity/data.h"
#include "parity/error.h"
#include "parity/graph.h"
#include "parity/inference.h"
#include "parity/model.h"
#include "parity/safetensors.h"
#include "parity/tensor.h"
#include "parity/trainer.h"

namespace parity {

const char* version();
// (name, value) pairs: library versions, compiler, build type and options.
std::vector<std::pair<std::string, std::string>> build_info();

}  // namespace parity
