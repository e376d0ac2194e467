// backends/onednn/onednn_routes.h — which ops the onednn backend hands to oneDNN and which stay
// on the cpu backend's kernels (with why), the per-op table `parity info --backend onednn`
// prints, and the line `parity info` shows for the backend.
#pragma once

#include <string>
#include <vector>

#include "parity/plugin.h"

namespace parity {
namespace onednn {

enum class Route {
  conv2d,   // CONV2D (+ fused relu), CONV2D_BWD_DATA, CONV2D_BWD_WEIGHT: onednn_conv2d.cpp
  linear,   // LINEAR, LINEAR_BWD_DATA, LINEAR_BWD_WEIGHT: onednn_linear.cpp
  eltwise,  // SIGMOID(_BWD), TANH(_BWD), GELU(_BWD), LEAKY_RELU: onednn_eltwise.cpp
  avgpool,  // AVGPOOL2D(_BWD), GLOBAL_AVGPOOL(_BWD): onednn_pool.cpp
  batchnorm,  // BATCHNORM2D_EVAL, BATCHNORM2D_BWD (both forms): onednn_batchnorm.cpp
  softmax,  // SOFTMAX_BWD: onednn_softmax.cpp
  cpu,      // every other op: the cpu backend's kernel, for cpu_reason(op)
};

Route route_of(parity_op op);

// Why an op routed to cpu stays there ("" for the ops routed to oneDNN).
std::string cpu_reason(parity_op op);

// Why a node on bf16 or f16 values (issue #14) runs on the cpu backend's kernels whatever its op's
// route: parity's half ops are cpu's (half_nodes.h, gemm_bf16), oneDNN's bf16/f16 primitives are
// not wired in this backend.
extern const char* const kHalfReason;

// One line per op of plugin.h, in enum order: the op's name and what runs it ("oneDNN <primitive>"
// with the cases that still fall back, or "cpu kernel: <why>").
struct OpRoute {
  std::string op;
  std::string runs_on;
};
std::vector<OpRoute> route_table();

// What `parity info` says of the backend (under plugin.h's 256-byte detail): the oneDNN version,
// the ops it runs, that the rest falls back to cpu, and the OpenMP wait policy in effect.
std::string describe();

}  // namespace onednn
}  // namespace parity
