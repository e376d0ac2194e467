// backends/cpu/gemm_bf16.h — the cpu backend's bfloat16 matrix multiply: row-major bf16
// operands, float32 accumulation and result, on one of two routes chosen at run time.
//
//   avx512_bf16     a VDPBF16PS microkernel (AVX512-BF16, compiled with a target attribute so
//                   the binary still runs on CPUs without it)
//   f32_conversion  widen both operands to float32 (exact) and call gemm_f32 (gemm.h)
//
// bf16_gemm_route() picks the first where the CPU has AVX512-BF16, unless the environment
// variable PARITY_CPU_BF16=convert forces the second (PARITY_CPU_BF16=auto or unset: the CPU
// decides). The avx512_bf16 route also takes operands its caller packed itself
// (gemm_bf16_packed), so that a conv writes its column matrix straight into the packed layout.
#pragma once

#include <cstdint>
#include <string>

namespace parity {
namespace cpu {

// A bf16 matrix operand: `data` holds the bit patterns of a row-major matrix whose rows are
// `stride` elements apart; `transposed` means the product uses its transpose.
struct GemmOperandBf16 {
  const uint16_t* data;
  int64_t stride;
  bool transposed;
};

enum class Bf16GemmRoute { avx512_bf16, f32_conversion };

bool cpu_has_avx512_bf16();

// The route gemm_bf16 takes by default, decided once per process (CPU and PARITY_CPU_BF16).
// Throws Error(invalid_argument) when PARITY_CPU_BF16 is neither auto nor convert.
Bf16GemmRoute bf16_gemm_route();

// "avx512_bf16 (vdpbf16ps)" or "f32 conversion".
const char* bf16_gemm_route_name(Bf16GemmRoute route);

// What `parity info` prints: the default route and why it is the one.
std::string bf16_gemm_route_description();

// Bytes of scratch gemm_bf16 needs for an [m,k] x [k,n] product on either route (64-byte multiple).
int64_t gemm_bf16_scratch_bytes(int64_t m, int64_t n, int64_t k);

// C[m,n] (float32, rows ldc floats apart) = op(A)[m,k] * op(B)[k,n], or C += it when
// `accumulate`; products of bf16 values are exact in float32 and summed in float32.
// Single-threaded; `scratch` (64-byte aligned, gemm_bf16_scratch_bytes(m, n, k) bytes) belongs
// to the calling worker. Asking for avx512_bf16 on a CPU without it throws Error(backend).
// The avx512_bf16 route treats subnormal inputs and products as zero (VDPBF16PS is DAZ/FTZ
// regardless of MXCSR); f32_conversion keeps them.
void gemm_bf16(int64_t m, int64_t n, int64_t k, GemmOperandBf16 a, GemmOperandBf16 b, float* c, int64_t ldc,
               bool accumulate, void* scratch, Bf16GemmRoute route = bf16_gemm_route());

// ---- the avx512_bf16 route on packed operands
//
// Packed A: m rows of bf16_pairs(k) 32-bit words; word p of row i = op(A)[i][2p] |
// op(A)[i][2p+1] << 16 (zero past k): a row-major [m, k] matrix of even k with rows 2 pairs
// apart is already packed. Packed B: bf16_panels(n) panels of bf16_pairs(k) rows of 16 words;
// word j of row p of panel P = op(B)[2p][16P + j] | op(B)[2p+1][16P + j] << 16 (zero outside
// op(B)). Everything below runs only where cpu_has_avx512_bf16().
constexpr int64_t kBf16PanelColumns = 16;
inline int64_t bf16_pairs(int64_t k) { return (k + 1) / 2; }
inline int64_t bf16_panels(int64_t n) { return (n + kBf16PanelColumns - 1) / kBf16PanelColumns; }
inline int64_t packed_a_words(int64_t m, int64_t k) { return m * bf16_pairs(k); }
inline int64_t packed_b_words(int64_t n, int64_t k) { return bf16_panels(n) * bf16_pairs(k) * kBf16PanelColumns; }

// Packs op(A)[m, k] / op(B)[k, n] as gemm_bf16's avx512_bf16 route does.
void pack_a_bf16(int64_t m, int64_t k, GemmOperandBf16 a, uint32_t* a_packed);
void pack_b_bf16(int64_t n, int64_t k, GemmOperandBf16 b, uint32_t* b_packed);

// Where gemm_bf16_packed puts its result: float32 C (rows ldc apart, += when accumulate), or
// rounded once to bf16, y[i][j] = bf16(relu?(sum_ij + bias[i])) (bias may be null; y rows ldy
// apart; c then only holds partial sums when k spans several blocks, and must have m rows of n).
struct GemmBf16Output {
  float* c;
  int64_t ldc;
  bool accumulate;
  uint16_t* y = nullptr;  // null: write C
  int64_t ldy = 0;
  const float* bias = nullptr;
  bool relu = false;
  // y_pitch > 0 (at least 16): product column j is position j % y_pitch of row j / y_pitch of
  // an image whose rows hold y_width <= y_pitch outputs; y's row i then holds those rows packed
  // (position (j / y_pitch) y_width + j % y_pitch), and columns with j % y_pitch >= y_width are
  // dropped. A conv computed over its padded input width (bf16_gemm_ops.cpp) writes y this way.
  int64_t y_pitch = 0, y_width = 0;
};

// op(A) op(B) on packed operands, the avx512_bf16 route's sums (bitwise gemm_bf16's on that
// route, and rounded as round_row_bf16 would round C + bias). Single-threaded, no scratch.
void gemm_bf16_packed(int64_t m, int64_t n, int64_t k, const uint32_t* a_packed, const uint32_t* b_packed,
                      const GemmBf16Output& out);

}  // namespace cpu
}  // namespace parity
