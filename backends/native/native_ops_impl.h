// backends/native/native_ops_impl.h — included once by each translation unit that compiles the
// native kernels for one target (simt_kernels_w32.cpp, simt_kernels_w64.cpp, hip_kernels.cpp,
// cuda_kernels.cu): defines `const NativeOps& PARITY_NATIVE_NS::native_ops()`, the table of
// backends/native/native_ops.h, with `run_<name>` of every op of PARITY_OP_LIST (an op whose
// .cuh lacks it does not compile), each behind cast.cuh's run_any_dtype (bf16 and f16 operands
// run through the op's f32 kernels). The includer defines PARITY_NATIVE_NS (and PARITY_SIMT_WARP
// for simt) first. A new op goes into the .cuh of its family; only a new family file is included here.
#pragma once

#include "backends/native/batchnorm.cuh"
#include "backends/native/broadcast.cuh"
#include "backends/native/cast.cuh"
#include "backends/native/concat.cuh"
#include "backends/native/conv2d.cuh"
#include "backends/native/dropout.cuh"
#include "backends/native/elementwise.cuh"
#include "backends/native/linear.cuh"
#include "backends/native/native_ops.h"
#include "backends/native/pool.cuh"
#include "backends/native/softmax.cuh"
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
      fill,
#define PARITY_NATIVE_RUNNER(ID, name, inputs, outputs, builder) run_any_dtype<run_##name>,
      PARITY_OP_LIST(PARITY_NATIVE_RUNNER)
#undef PARITY_NATIVE_RUNNER
  };
  return ops;
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
