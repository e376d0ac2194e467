// backends/native/native_ops.h — the host-side face of the native GPU kernels: one table per
// compiled target (simt at warp 32, simt at warp 64, HIP, CUDA) with one entry per op of
// PARITY_OP_LIST, `run_<name>`, the op's host code in its .cuh (checks, workspace need and
// launches of one node, backends/native/native_node.h). Generated from the op list: a new op
// adds nothing here. Plain C++ (no pk.h), so backends include it freely.
#pragma once

#include <stdint.h>

#include "backends/native/native_node.h"
#include "parity/op_list.h"
#include "parity/plugin.h"

namespace parity {
namespace native {

struct NativeOps {
  const char* target;  // "simt_w32", "simt_w64", "hip", "cuda"
  int warp_size;       // 0 when it varies by device target (hip)
  // Not an op: y[0, count) = value on the device (the CUDA plugin's vector of ones).
  void (*fill)(float* y, int64_t count, float value);
#define PARITY_NATIVE_FIELD(ID, name, inputs, outputs, builder) NodeRunner run_##name;
  PARITY_OP_LIST(PARITY_NATIVE_FIELD)
#undef PARITY_NATIVE_FIELD
};

// Runs `node` through its op's entry of `ops` (a value outside the enum runs nothing: the plan
// checks refuse it first).
inline void run_node(const NativeOps& ops, const NativeNode& node) {
  switch (node.desc().op) {
#define PARITY_NATIVE_CASE(ID, name, inputs, outputs, builder) \
  case PARITY_OP_##ID:                                         \
    ops.run_##name(node);                                      \
    return;
    PARITY_OP_LIST(PARITY_NATIVE_CASE)
#undef PARITY_NATIVE_CASE
    case PARITY_OP_COUNT:
      if (node.sizing()) return;
      node.fail(PARITY_STATUS_INTERNAL, msg(node.backend(), ": node '", node.desc().name,
                                            "' has op PARITY_OP_COUNT, which is a count, not an op"));
  }
}

}  // namespace native
}  // namespace parity
