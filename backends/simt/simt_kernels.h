// backends/simt/simt_kernels.h — the two host builds of the native kernels (warp 32 and 64).
#pragma once

#include "backends/native/native_ops.h"

namespace parity {
namespace native {
namespace simt_w32 {
const NativeOps& native_ops();
}
namespace simt_w64 {
const NativeOps& native_ops();
}
}  // namespace native
}  // namespace parity
