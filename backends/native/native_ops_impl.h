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
      conv2d_forward, conv2d_backward_data, conv2d_backward_weight, linear_forward, linear_backward_data,
      linear_backward_weight, relu_forward, relu_backward, maxpool2d_forward, maxpool2d_backward, copy, add, fill,
      softmax_xent_forward, softmax_xent_backward, argmax, accuracy, adam_step, sgd_step, sigmoid_forward,
      sigmoid_backward};
  return ops;
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
