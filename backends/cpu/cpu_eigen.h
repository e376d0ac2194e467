// backends/cpu/cpu_eigen.h — row-major Eigen maps over arena memory, for the GEMM-based ops.
// Eigen runs single-threaded here (no EIGEN_USE_THREADS, no OpenMP): parallelism is oneTBB's.
#pragma once

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

namespace parity {
namespace cpu {

using RowMatrixF32 = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRowF32 = Eigen::Map<RowMatrixF32>;
using ConstMapRowF32 = Eigen::Map<const RowMatrixF32>;
// A block of columns of a row-major matrix: rows are `stride` floats apart.
using MapRowStridedF32 = Eigen::Map<RowMatrixF32, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstMapRowStridedF32 = Eigen::Map<const RowMatrixF32, Eigen::Unaligned, Eigen::OuterStride<>>;

}  // namespace cpu
}  // namespace parity
