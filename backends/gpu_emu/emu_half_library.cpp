// backends/gpu_emu/emu_half_library.cpp — the emulated device's checks and host emulations of the
// CUDA plugin's half library calls (emu_half_library.h).
#include "backends/gpu_emu/emu_half_library.h"

#include <vector>

#include "backends/native/plugin_support.h"
#include "ops/kernels/half.h"

namespace parity {
namespace emu_library {

namespace {

using native::msg;

float load(const void* p, plan::ElementType t, int64_t e) {
  switch (t) {
    case plan::ElementType::f32: return static_cast<const float*>(p)[e];
    case plan::ElementType::bf16: return kernels::bf16_bits_to_float(static_cast<const uint16_t*>(p)[e]);
    case plan::ElementType::f16: return kernels::f16_bits_to_float(static_cast<const uint16_t*>(p)[e]);
  }
  return 0.0f;
}

void store(void* p, plan::ElementType t, int64_t e, float v) {
  switch (t) {
    case plan::ElementType::f32: static_cast<float*>(p)[e] = v; return;
    case plan::ElementType::bf16: static_cast<uint16_t*>(p)[e] = kernels::float_to_bf16_bits(v); return;
    case plan::ElementType::f16: static_cast<uint16_t*>(p)[e] = kernels::float_to_f16_bits(v); return;
  }
}

// The elements of a column-major matrix with `rows`, `cols` and leading dimension `ld`.
int64_t matrix_elements(int rows, int cols, int ld) { return static_cast<int64_t>(ld) * (cols - 1) + rows; }

}  // namespace

std::string describe_gemm(const plan::GemmCall& g) {
  if (!plan::uses_gemm_ex(g)) return "cublasSgemm";
  return msg("cublasGemmEx A ", plan::element_type_name(g.a_type), " B ", plan::element_type_name(g.b_type), " C ",
             plan::element_type_name(g.c_type), " compute 32F");
}

std::string check_gemm(const plan::GemmCall& g, const GemmOperand& a, const GemmOperand& b, const GemmOperand& c) {
  const std::string call = describe_gemm(g);
  const struct {
    const char* role;
    plan::ElementType described;
    const GemmOperand& operand;
  } typed[] = {{"A", g.a_type, a}, {"B", g.b_type, b}, {"C", g.c_type, c}};
  for (const auto& t : typed)
    if (t.described != t.operand.type)
      return msg(call, ": operand ", t.role, " is described as ", plan::element_type_name(t.described),
                 " but holds ", plan::element_type_name(t.operand.type), " values");
  if (plan::uses_gemm_ex(g) && (g.a_type != g.b_type || (g.c_type != g.a_type && g.c_type != plan::ElementType::f32)))
    return msg(call, ": no CUBLAS_COMPUTE_32F GemmEx takes these types (A and B one type, C theirs or f32)");
  const struct {
    const char* role;
    int rows, cols, ld;
    const GemmOperand& operand;
  } sized[] = {{"A", g.transpose_a ? g.k : g.m, g.transpose_a ? g.m : g.k, g.lda, a},
               {"B", g.transpose_b ? g.n : g.k, g.transpose_b ? g.k : g.n, g.ldb, b},
               {"C", g.m, g.n, g.ldc, c}};
  for (const auto& s : sized)
    if (s.rows < 1 || s.cols < 1 || s.ld < s.rows || matrix_elements(s.rows, s.cols, s.ld) > s.operand.elements)
      return msg(call, ": operand ", s.role, " (", s.rows, "x", s.cols, ", leading dimension ", s.ld,
                 ") reaches beyond its ", s.operand.elements, " elements");
  return "";
}

void run_gemm(const plan::GemmCall& g, const void* a, const void* b, void* c) {
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      float acc = 0.0f;
      for (int p = 0; p < g.k; ++p) {
        const int64_t ea = g.transpose_a ? p + static_cast<int64_t>(i) * g.lda : i + static_cast<int64_t>(p) * g.lda;
        const int64_t eb = g.transpose_b ? j + static_cast<int64_t>(p) * g.ldb : p + static_cast<int64_t>(j) * g.ldb;
        acc += load(a, g.a_type, ea) * load(b, g.b_type, eb);
      }
      const int64_t ec = i + static_cast<int64_t>(j) * g.ldc;
      if (g.beta != 0.0f) acc += g.beta * load(c, g.c_type, ec);
      store(c, g.c_type, ec, acc);
    }
}

void round_to_half(const float* acc, const float* bias, int64_t outer, int64_t channels, int64_t inner, void* y,
                   plan::ElementType element) {
  const int64_t count = outer * channels * inner;
  for (int64_t e = 0; e < count; ++e) store(y, element, e, bias ? acc[e] + bias[e / inner % channels] : acc[e]);
}

void channel_sum_f32(const void* dy, plan::ElementType element, int64_t outer, int64_t channels, int64_t inner,
                     float* db) {
  for (int64_t c = 0; c < channels; ++c) {
    float sum = 0.0f;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) sum += load(dy, element, (o * channels + c) * inner + i);
    db[c] = sum;
  }
}

const char* conv_config(plan::ElementType element) {
  return element == plan::ElementType::f32    ? "FLOAT_CONFIG"
         : element == plan::ElementType::bf16 ? "PSEUDO_BFLOAT16_CONFIG"
                                              : "PSEUDO_HALF_CONFIG";
}

}  // namespace emu_library
}  // namespace parity
