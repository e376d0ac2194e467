// backends/native/linear.cuh — linear forward and backward on the tiled GEMM:
// y = x w^T + b, dx = dy w, dw = dy^T x, db = column sums of dy (block reduction).
#pragma once

#include "backends/native/gemm.cuh"
#include "backends/native/reduce.cuh"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

inline void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t in,
                           int64_t out) {
  GemmArgs g{x, in, 1, 0, w, 1, in, 0, y, out, 0, b, 0, 1, n, out, in, 0};
  gemm(g, 1);
}

inline void linear_backward_data(const float* dy, const float* w, float* dx, int64_t n, int64_t in, int64_t out) {
  GemmArgs g{dy, out, 1, 0, w, in, 1, 0, dx, in, 0, nullptr, 0, 0, n, in, out, 0};
  gemm(g, 1);
}

inline void linear_backward_weight(const float* x, const float* dy, float* dw, float* db, int64_t n, int64_t in,
                                   int64_t out) {
  GemmArgs g{dy, 1, out, 0, x, in, 1, 0, dw, in, 0, nullptr, 0, 0, out, in, n, 0};
  gemm(g, 1);
  sum_per_channel(dy, db, out, n, out, 1, 1);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
