// backends/onednn/onednn_routes.h — which ops the onednn backend hands to oneDNN and which stay
// on the cpu backend's kernels, and the line `parity info` shows for it.
#pragma once

#include <string>

#include "parity/plugin.h"

namespace parity {
namespace onednn {

enum class Route {
  conv2d,  // CONV2D (+ fused relu), CONV2D_BWD_DATA, CONV2D_BWD_WEIGHT: onednn_conv2d.cpp
  linear,  // LINEAR, LINEAR_BWD_DATA, LINEAR_BWD_WEIGHT: onednn_linear.cpp
  cpu,     // every other op: the cpu backend's kernel
};

Route route_of(parity_op op);

// What `parity info` says of the backend (under plugin.h's 256-byte detail): the oneDNN version,
// the ops it runs, that the rest falls back to cpu, and the OpenMP wait policy in effect.
std::string describe();

}  // namespace onednn
}  // namespace parity
