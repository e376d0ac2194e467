// backends/native/native_ops_impl.h — included once by each translation unit that compiles the
// native kernels for one target (simt_kernels_w32.cpp, simt_kernels_w64.cpp, hip_kernels.hip):
// defines `const NativeOps& PARITY_NATIVE_NS::native_ops()`, the table of backends/native/native_ops.h.
// The includer defines PARITY_NATIVE_NS (and PARITY_SIMT_WARP for simt) first.
#pragma once

#include "backends/native/conv2d.cuh"
#include "backends/native/elementwise.cuh"
#include "backends/native/linear.cuh"
#include "backends/native/native_ops.h"
#include "backends/native/pool.cuh"
#include "backends/native/softmax_xent.cuh"

#define PARITY_NATIVE_STR2(x) #x
#define PARITY_NATIVE_STR(x) PARITY_NATIVE_STR2(x)

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

const NativeOps& native_ops() {
  static const NativeOps ops{
      PARITY_NATIVE_STR(PARITY_NATIVE_NS),
#if defined(PARITY_SIMT_WARP)
      pk::kWarpSize,
#else
      0,
#endif
#define PARITY_NATIVE_POINTER(name, parameters) name,
      PARITY_NATIVE_FUNCTIONS(PARITY_NATIVE_POINTER)
#undef PARITY_NATIVE_POINTER
  };
  return ops;
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
