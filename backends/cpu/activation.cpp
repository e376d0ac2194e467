// backends/cpu/activation.cpp — relu, sigmoid, tanh, leaky_relu, gelu, hardtanh and their
// gradients on the cpu backend, float32, any shape: element math from ops/kernels/activation.h
// over fixed chunks of elements. The loops are plain so the compiler vectorises relu, leaky_relu
// and hardtanh; tanh is Eigen's vectorised rational approximation (a few ulp: far inside the op's
// threshold; NaN kept), sigmoid's expf and gelu's erfcf are libm calls per element.
// relu and its gradient on bf16 values (issue #14) on a CPU with AVX-512BW (runs_bf16_relu):
// 16 lanes widened exactly, the f32 comparison, stored back exactly (bf16_simd.h), so the
// bits are those of the widened f32 kernel (half_nodes.h), which other half activations take.
#include <Eigen/Core>

#include "backends/cpu/bf16_simd.h"
#include "backends/cpu/cast.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_nodes.h"
#include "ops/kernels/activation.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 4096;

// The dtype of the node's values: bf16 where its op runs on them (runs_bf16_relu), else f32.
parity_dtype value_dtype(const BoundNode& node) { return runs_bf16_relu(node) ? PARITY_BF16 : PARITY_F32; }

// x -> y of the same shape.
int64_t prepare_forward(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  expect_value(node, node.in[0], "x", value_dtype(node), -1);
  expect_value(node, node.out[0], "y", value_dtype(node), -1);
  expect_same_shape(node, node.in[0], "x", node.out[0], "y");
  node.chunk = fixed_chunk_size(node.in[0].numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(node.in[0].numel, node.chunk);
  return 0;
}

// y (the forward output) or x (the forward input), dy -> dx, all of one shape.
int64_t prepare_backward(BoundNode& node, const char* first = "y") {
  expect_arity(node, 2, 2, 1, 1);
  expect_value(node, node.in[0], first, value_dtype(node), -1);
  expect_value(node, node.in[1], "dy", value_dtype(node), -1);
  expect_value(node, node.out[0], "dx", value_dtype(node), -1);
  expect_same_shape(node, node.in[0], first, node.in[1], "dy");
  expect_same_shape(node, node.in[0], first, node.out[0], "dx");
  node.chunk = fixed_chunk_size(node.in[0].numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(node.in[0].numel, node.chunk);
  return 0;
}

// The element math is a template argument, so each loop calls it directly: inlined (and, for
// relu, vectorised), never an indirect call per element.
// The ops with params pass a lambda that binds them, called the same way.
template <typename Element>
void map_forward(const BoundNode& node, Element element) {
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = element(x[i]);
  });
}

template <typename Element>
void map_backward(const BoundNode& node, Element element) {
  const float* first = node.in[0].f32();  // y or x
  const float* dy = node.in[1].f32();
  float* dx = node.out[0].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = element(first[i], dy[i]);
  });
}

template <float (*element)(float)>
void run_forward(const BoundNode& node) {
  map_forward(node, [](float x) { return element(x); });
}

template <float (*element)(float, float)>
void run_backward(const BoundNode& node) {
  map_backward(node, [](float first, float dy) { return element(first, dy); });
}

uint16_t* bf16_data(const BoundValue& v) { return static_cast<uint16_t*>(v.data); }

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (the _mm512_undefined
// idiom, as cast.cpp notes); not our code, so silenced for these two alone.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// relu_f32 on 16 lanes of bf16: x <= 0 ? 0 : x (NaN kept).
PARITY_BF16_SIMD_TARGET void relu_bf16(const uint16_t* x, uint16_t* y, int64_t count) {
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 m = lanes16(count - i);
    const __m512 v = widen_bf16x16_fast(x + i, m);
    store_exact_bf16x16_fast(y + i, m, _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ),
                                               _mm512_setzero_ps()));
  }
}

// relu_bwd_f32 on 16 lanes of bf16: y > 0 ? dy : 0.
PARITY_BF16_SIMD_TARGET void relu_bwd_bf16(const uint16_t* y, const uint16_t* dy, uint16_t* dx, int64_t count) {
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 m = lanes16(count - i);
    const __mmask16 pass = _mm512_cmp_ps_mask(widen_bf16x16_fast(y + i, m), _mm512_setzero_ps(), _CMP_GT_OQ);
    store_exact_bf16x16_fast(dx + i, m, _mm512_maskz_mov_ps(pass, widen_bf16x16_fast(dy + i, m)));
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace

bool runs_bf16_relu(const BoundNode& node) {
  if (node.op != PARITY_OP_RELU && node.op != PARITY_OP_RELU_BWD) return false;
  if (cast_route() != CastRoute::f16c_avx512) return false;
  for (int32_t k = 0; k < node.num_inputs; ++k)
    if (node.in[k].dtype != PARITY_BF16) return false;
  for (int32_t k = 0; k < node.num_outputs; ++k)
    if (node.out[k].dtype != PARITY_BF16) return false;
  return true;
}

int64_t prepare_relu(BoundNode& node) { return prepare_forward(node); }
void run_relu(const BoundNode& node) {
  if (runs_bf16_relu(node)) {
    const uint16_t* x = bf16_data(node.in[0]);
    uint16_t* y = bf16_data(node.out[0]);
    parallel_chunks(node.in[0].numel, node.chunk,
                    [&](int64_t, int64_t begin, int64_t end) { relu_bf16(x + begin, y + begin, end - begin); });
    return;
  }
  run_forward<kernels::relu_f32>(node);
}
int64_t prepare_relu_bwd(BoundNode& node) { return prepare_backward(node); }
void run_relu_bwd(const BoundNode& node) {
  if (runs_bf16_relu(node)) {
    const uint16_t *y = bf16_data(node.in[0]), *dy = bf16_data(node.in[1]);
    uint16_t* dx = bf16_data(node.out[0]);
    parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      relu_bwd_bf16(y + begin, dy + begin, dx + begin, end - begin);
    });
    return;
  }
  run_backward<kernels::relu_bwd_f32>(node);
}

int64_t prepare_sigmoid(BoundNode& node) { return prepare_forward(node); }
void run_sigmoid(const BoundNode& node) { run_forward<kernels::sigmoid_f32>(node); }
int64_t prepare_sigmoid_bwd(BoundNode& node) { return prepare_backward(node); }
void run_sigmoid_bwd(const BoundNode& node) { run_backward<kernels::sigmoid_bwd_f32>(node); }

int64_t prepare_tanh(BoundNode& node) { return prepare_forward(node); }
// tanh over each chunk by Eigen's packet tanh (its float rational approximation clamped at
// +-9, where tanh rounds to +-1; within a few ulp of tanhf: the op's threshold, ops/activation.cpp,
// allows ~8 ulp rms), 16 lanes at a time instead of a libm call per element (lenet5's step was
// mostly tanhf). Eigen's clamp would turn a NaN into +-1, so a NaN input is passed through.
// GCC 12 reports -Wmaybe-uninitialized inside the AVX-512 min/max intrinsics of Eigen's packet
// tanh (the _mm512_undefined idiom, as for the bf16 kernels above): silenced for this function.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
void run_tanh(const BoundNode& node) {
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    Eigen::Map<Eigen::ArrayXf>(y + begin, end - begin) = Eigen::Map<const Eigen::ArrayXf>(x + begin, end - begin).tanh();
    for (int64_t i = begin; i < end; ++i)
      if (x[i] != x[i]) y[i] = x[i];
  });
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
int64_t prepare_tanh_bwd(BoundNode& node) { return prepare_backward(node); }
void run_tanh_bwd(const BoundNode& node) { run_backward<kernels::tanh_bwd_f32>(node); }

int64_t prepare_leaky_relu(BoundNode& node) { return prepare_forward(node); }
void run_leaky_relu(const BoundNode& node) {
  const float slope = node.params.leaky_relu.negative_slope;
  map_forward(node, [slope](float x) { return kernels::leaky_relu_f32(x, slope); });
}
int64_t prepare_leaky_relu_bwd(BoundNode& node) { return prepare_backward(node, "x"); }
void run_leaky_relu_bwd(const BoundNode& node) {
  const float slope = node.params.leaky_relu.negative_slope;
  map_backward(node, [slope](float x, float dy) { return kernels::leaky_relu_bwd_f32(x, dy, slope); });
}

int64_t prepare_gelu(BoundNode& node) { return prepare_forward(node); }
void run_gelu(const BoundNode& node) { run_forward<kernels::gelu_f32>(node); }
int64_t prepare_gelu_bwd(BoundNode& node) { return prepare_backward(node, "x"); }
void run_gelu_bwd(const BoundNode& node) { run_backward<kernels::gelu_bwd_f32>(node); }

int64_t prepare_hardtanh(BoundNode& node) { return prepare_forward(node); }
void run_hardtanh(const BoundNode& node) {
  const parity_hardtanh_params p = node.params.hardtanh;
  map_forward(node, [p](float x) { return kernels::hardtanh_f32(x, p.min_val, p.max_val); });
}
int64_t prepare_hardtanh_bwd(BoundNode& node) { return prepare_backward(node, "x"); }
void run_hardtanh_bwd(const BoundNode& node) {
  const parity_hardtanh_params p = node.params.hardtanh;
  map_backward(node, [p](float x, float dy) { return kernels::hardtanh_bwd_f32(x, dy, p.min_val, p.max_val); });
}

}  // namespace cpu
}  // namespace parity
