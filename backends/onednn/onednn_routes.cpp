// backends/onednn/onednn_routes.cpp — which ops the onednn backend hands to oneDNN, and its
// `parity info` line.
#include "backends/onednn/onednn_routes.h"

#include <dnnl.hpp>

#include <cstdlib>

#include <fmt/format.h>

namespace parity {
namespace onednn {

Route route_of(parity_op op) {
  switch (op) {
    case PARITY_OP_CONV2D:
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT: return Route::conv2d;
    case PARITY_OP_LINEAR:
    case PARITY_OP_LINEAR_BWD_DATA:
    case PARITY_OP_LINEAR_BWD_WEIGHT: return Route::linear;
    // Not yet: MAXPOOL2D(_BWD) — the op's idx output (h*W+w per plane, read by the backward)
    // has no oneDNN counterpart; oneDNN's max-pool keeps an opaque workspace instead, so both
    // directions would have to move together, and the cpu fusions that read idx would be lost.
    // RELU(_BWD) — memory-bound; the relu after a conv already runs as that conv's post-op.
    default: return Route::cpu;
  }
}

std::string describe() {
  const dnnl_version_t* v = dnnl_version();
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  return fmt::format("float32: oneDNN {}.{}.{} (OpenMP) runs conv2d and its two backwards (blocked, reordered at "
                     "each node) and linear with its two; all else on cpu's kernels; OMP_WAIT_POLICY={}",
                     v->major, v->minor, v->patch, policy && *policy ? policy : "unset (libgomp spins, then sleeps)");
}

}  // namespace onednn
}  // namespace parity
