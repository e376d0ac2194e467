// backends/cpu/gemm.cpp — gemm_f32 on Eigen 3.4's blocked GEMM (general_matrix_matrix_product
// and its packing), driven with our own preallocated blocking buffers.
//
// This uses Eigen::internal names, stable through the 3.4 series that CMake requires; the
// alternative, Eigen's expression API, heap-allocates its packing buffers inside every product
// larger than EIGEN_STACK_ALLOCATION_LIMIT, which execute() must not do.
//
// A row-major C[m,n] = op(A) op(B) is computed as the column-major C^T[n,m] = op(B)^T op(A)^T,
// exactly as Eigen itself evaluates a product with a row-major destination.
#include "backends/cpu/gemm.h"

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics as Eigen inlines them
// (the _mm512_undefined_ps idiom); that is not our code, so it is silenced for Eigen alone.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstring>

namespace parity {
namespace cpu {
namespace {

using Index = Eigen::Index;

// Eigen's cache blocking for a column-major [rows, depth] x [depth, cols] product, as its own
// gemm_blocking_space computes it (single thread, L3 blocking on).
struct BlockSizes {
  Index mc, nc, kc;
  Index a_floats() const { return (mc * kc + 15) / 16 * 16; }  // keeps block B 64-byte aligned
  Index b_floats() const { return (kc * nc + 15) / 16 * 16; }
};

BlockSizes block_sizes(Index rows, Index cols, Index depth) {
  BlockSizes s{rows, cols, depth};
  Eigen::internal::computeProductBlockingSizes<float, float, 1>(s.kc, s.mc, s.nc, Index{1});
  return s;
}

// level3_blocking whose packing buffers live in caller-owned scratch.
class ScratchBlocking : public Eigen::internal::level3_blocking<float, float> {
 public:
  ScratchBlocking(const BlockSizes& s, float* scratch) {
    this->m_mc = s.mc;
    this->m_nc = s.nc;
    this->m_kc = s.kc;
    this->m_blockA = scratch;
    this->m_blockB = scratch + s.a_floats();
  }
};

template <int LhsOrder, int RhsOrder>
void run_colmajor(Index rows, Index cols, Index depth, const float* lhs, Index lhs_stride, const float* rhs,
                  Index rhs_stride, float* res, Index res_stride, ScratchBlocking& blocking) {
  Eigen::internal::general_matrix_matrix_product<Index, float, LhsOrder, false, float, RhsOrder, false,
                                                 Eigen::ColMajor, 1>::run(rows, cols, depth, lhs, lhs_stride, rhs,
                                                                          rhs_stride, res, 1, res_stride, 1.0f,
                                                                          blocking);
}

}  // namespace

int64_t gemm_scratch_floats(int64_t m, int64_t n, int64_t k) {
  const BlockSizes s = block_sizes(n, m, k);
  return s.a_floats() + s.b_floats();
}

void gemm_f32(int64_t m, int64_t n, int64_t k, GemmOperand a, GemmOperand b, float* c, int64_t ldc, bool accumulate,
              float* scratch) {
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * n);
  if (m == 0 || n == 0 || k == 0) return;
  // Column-major product C^T[n,m] = lhs[n,k] * rhs[k,m] with lhs = op(B)^T, rhs = op(A)^T. An
  // untransposed row-major operand read transposed is column-major with the same stride.
  const BlockSizes sizes = block_sizes(n, m, k);
  ScratchBlocking blocking(sizes, scratch);
  if (!b.transposed && !a.transposed)
    run_colmajor<Eigen::ColMajor, Eigen::ColMajor>(n, m, k, b.data, b.stride, a.data, a.stride, c, ldc, blocking);
  else if (!b.transposed && a.transposed)
    run_colmajor<Eigen::ColMajor, Eigen::RowMajor>(n, m, k, b.data, b.stride, a.data, a.stride, c, ldc, blocking);
  else if (b.transposed && !a.transposed)
    run_colmajor<Eigen::RowMajor, Eigen::ColMajor>(n, m, k, b.data, b.stride, a.data, a.stride, c, ldc, blocking);
  else
    run_colmajor<Eigen::RowMajor, Eigen::RowMajor>(n, m, k, b.data, b.stride, a.data, a.stride, c, ldc, blocking);
}

}  // namespace cpu
}  // namespace parity
