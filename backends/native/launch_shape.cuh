// backends/native/launch_shape.cuh — launch sizes shared by the native kernels: 1-D grids for
// element-wise work (block sizes are multiples of 64, so they hold whole warps at 32 and 64).
#pragma once

#include <stdint.h>

#include "backends/native/pk.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

constexpr int kElementBlock = 256;
constexpr int64_t kMaxElementBlocks = 1024;  // grid-stride loops cover the rest
constexpr int kRowBlock = 64;                // one block per row for row reductions

inline pk::Dim3 element_grid(int64_t count) {
  int64_t blocks = (count + kElementBlock - 1) / kElementBlock;
  if (blocks > kMaxElementBlocks) blocks = kMaxElementBlocks;
  if (blocks < 1) blocks = 1;
  return pk::dim3(static_cast<unsigned>(blocks));
}

// The first element and the stride of a grid-stride loop over a 1-D launch.
PK_DEVICE int64_t grid_first() { return int64_t{pk::block_x()} * pk::block_dim_x() + pk::thread_x(); }
PK_DEVICE int64_t grid_stride() { return int64_t{pk::grid_dim_x()} * pk::block_dim_x(); }

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
