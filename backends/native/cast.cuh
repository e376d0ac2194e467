// backends/native/cast.cuh — cast (ABI 9) in the native kernels: not implemented yet. The
// targets built from these kernels (simt, HIP, CUDA's native path) store f32 and i32 values
// only, and their supports() refuses CAST nodes (backends/native/plugin_support.h,
// native_lacks), so a plan never reaches this; run_cast refuses the node if one does.
#pragma once

#include "backends/native/native_node.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

inline void run_cast(const NativeNode& node) {
  node.fail(PARITY_STATUS_UNSUPPORTED,
            msg(node.label(), ": the native kernels have no CAST (bf16 and f16 values are not stored here)"));
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
