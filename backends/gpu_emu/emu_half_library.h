// backends/gpu_emu/emu_half_library.h — the emulated device's stand-ins for the CUDA plugin's
// library calls on half values (bf16, f16): the checks of what a cuBLAS GEMM (Sgemm or GemmEx) and a
// cuDNN half convolution would be given, against the operands' dtypes and sizes, and host
// emulations of GemmEx (f32 accumulation, C written in its type with one round to nearest even)
// and of cuda_half_kernels.h's epilogues (round_to_half, channel_sum_f32), so that gpu_emu runs a
// half plan as CUDA would. Plain C++ on host memory (no CUDA header, no .cu): emu_library.cpp
// runs them inside launches on the emulated stream; tests/test_emu_half_library.cpp calls them
// directly.
#pragma once

#include <stdint.h>

#include <string>

#include "backends/cuda/cuda_decisions.h"

namespace parity {
namespace emu_library {

namespace plan = parity::cuda_decisions;

// One operand of a GEMM as the emulation sees it: the element type of the value (ones and the
// staging region: f32) and how many elements it holds.
struct GemmOperand {
  plan::ElementType type;
  int64_t elements;
};
// What is wrong with `g` given its operands, or "": an Sgemm with an operand that is not f32; a
// GemmEx whose A, B or C type is not the operand's, whose A and B types differ or whose C is
// neither A's type nor f32 (CUBLAS_COMPUTE_32F's combinations); a matrix that reaches past its
// operand (rows, cols, leading dimension, in elements).
std::string check_gemm(const plan::GemmCall& g, const GemmOperand& a, const GemmOperand& b, const GemmOperand& c);
// "cublasGemmEx A bf16 B bf16 C f32 compute 32F" or "cublasSgemm" (for the route log).
std::string describe_gemm(const plan::GemmCall& g);
// C = op(A) op(B) + beta C, column-major with the call's leading dimensions, each element
// accumulated in f32 over k in order; C read (beta != 0) and written in c_type, a half C rounded
// once to nearest even (ops/kernels/half.h).
void run_gemm(const plan::GemmCall& g, const void* a, const void* b, void* c);
// cuda_half_kernels.h's epilogues on host memory, tensors as [outer, channels, inner]:
// y = round(acc + bias[c]) (bias nullptr: acc alone), the sum in f32, one rounding to `element`;
void round_to_half(const float* acc, const float* bias, int64_t outer, int64_t channels, int64_t inner, void* y,
                   plan::ElementType element);
// db[c] = the sum of dy[o, c, i] widened to f32, over o then i, in f32.
void channel_sum_f32(const void* dy, plan::ElementType element, int64_t outer, int64_t channels, int64_t inner,
                     float* db);
// The cuDNN configuration a convolution's descriptors give (compute type always float):
// "FLOAT_CONFIG", "PSEUDO_HALF_CONFIG", "PSEUDO_BFLOAT16_CONFIG".
const char* conv_config(plan::ElementType element);

}  // namespace emu_library
}  // namespace parity
