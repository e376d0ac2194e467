// backends/cpu/gemm.h — the one matrix-multiply entry point of the cpu backend: row-major
// float32 C = op(A) op(B) on Eigen's GEMM kernel, with packing buffers the caller allocates at
// compile time (Eigen would otherwise malloc them per call once they pass 128 KiB).
#pragma once

#include <cstdint>

namespace parity {
namespace cpu {

// A matrix operand: `data` holds a row-major matrix whose rows are `stride` floats apart;
// `transposed` means the product uses its transpose.
struct GemmOperand {
  const float* data;
  int64_t stride;
  bool transposed;
};

// Floats of scratch gemm_f32 needs for an [m,k] x [k,n] product (64-byte multiple).
int64_t gemm_scratch_floats(int64_t m, int64_t n, int64_t k);

// C[m,n] (rows ldc floats apart) = op(A)[m,k] * op(B)[k,n], or C += it when `accumulate`.
// Single-threaded; `scratch` (64-byte aligned, gemm_scratch_floats(m, n, k) floats) belongs to the
// calling worker. The result depends on the shapes only, so it is reproducible.
void gemm_f32(int64_t m, int64_t n, int64_t k, GemmOperand a, GemmOperand b, float* c, int64_t ldc, bool accumulate,
              float* scratch);

}  // namespace cpu
}  // namespace parity
