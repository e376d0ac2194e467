// backends/cpu/optimizer.cpp — the optimizer steps on the cpu backend, float32, updating
// persistent params and state in place: Adam and SGD side by side, element math from
// ops/kernels/optimizer.h over fixed chunks of elements; and clip_coef, the factor of
// gradient-norm clipping (ops/kernels/broadcast.h).
#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/broadcast.h"
#include "ops/kernels/optimizer.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 4096;

void check_state(BoundNode& node, int32_t input, const char* role) {
  expect_value(node, node.in[input], role, PARITY_F32, -1);
  expect_same_shape(node, node.in[0], "param", node.in[input], role);
}

void split_elements(BoundNode& node) {
  node.chunk = fixed_chunk_size(node.in[0].numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(node.in[0].numel, node.chunk);
}

}  // namespace

// ---------------------------------------------------------------- Adam
int64_t prepare_adam_step(BoundNode& node) {
  expect_arity(node, 5, 5, 0, 0);
  expect_value(node, node.in[0], "param", PARITY_F32, -1);
  check_state(node, 1, "grad");
  check_state(node, 2, "m");
  check_state(node, 3, "v");
  expect_value(node, node.in[4], "step", PARITY_I32, -1);
  if (node.in[4].numel != 1) fail(node, "step must hold one element, got " + node.in[4].shape_str());
  const parity_adam_params& hp = node.params.adam;
  if (!(hp.lr >= 0.0f)) fail(node, "lr must be >= 0, got " + std::to_string(hp.lr));
  if (!(hp.beta1 >= 0.0f && hp.beta1 < 1.0f)) fail(node, "beta1 must be in [0, 1), got " + std::to_string(hp.beta1));
  if (!(hp.beta2 >= 0.0f && hp.beta2 < 1.0f)) fail(node, "beta2 must be in [0, 1), got " + std::to_string(hp.beta2));
  if (!(hp.eps >= 0.0f)) fail(node, "eps must be >= 0, got " + std::to_string(hp.eps));
  split_elements(node);
  return 0;
}

void run_adam_step(const BoundNode& node) {
  const int32_t t = node.in[4].i32()[0];
  if (t < 1)
    throw Error(ErrorKind::invalid_argument,
                "cpu: adam_step '" + node.name + "': step must be >= 1 (it is 1-based), got " + std::to_string(t));
  const parity_adam_params hp = node.params.adam;
  const float step_size = kernels::adam_step_size(hp, t);
  const float bias_correction2_sqrt = kernels::adam_bias_correction2_sqrt(hp, t);
  const float decay_factor = kernels::adamw_decay_factor(hp, t);
  float* p = node.in[0].f32();
  const float* g = node.in[1].f32();
  float* m = node.in[2].f32();
  float* v = node.in[3].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    // Locals the stores cannot alias, so the loop vectorizes (with -fno-math-errno, CMakeLists).
    const parity_adam_params h = hp;
    const float a = step_size, b = bias_correction2_sqrt, d = decay_factor;
    float* __restrict p_ = p;
    const float* __restrict g_ = g;
    float* __restrict m_ = m;
    float* __restrict v_ = v;
    for (int64_t i = begin; i < end; ++i) kernels::adam_update_element(&p_[i], g_[i], &m_[i], &v_[i], h, a, b, d);
  });
}

// ---------------------------------------------------------------- SGD
int64_t prepare_sgd_step(BoundNode& node) {
  expect_arity(node, 4, 4, 0, 0);
  expect_value(node, node.in[0], "param", PARITY_F32, -1);
  check_state(node, 1, "grad");
  check_state(node, 2, "velocity");
  expect_value(node, node.in[3], "step", PARITY_I32, -1);
  if (node.in[3].numel != 1) fail(node, "step must hold one element, got " + node.in[3].shape_str());
  const parity_sgd_params& hp = node.params.sgd;
  if (!(hp.lr >= 0.0f)) fail(node, "lr must be >= 0, got " + std::to_string(hp.lr));
  if (!(hp.momentum >= 0.0f)) fail(node, "momentum must be >= 0, got " + std::to_string(hp.momentum));
  split_elements(node);
  return 0;
}

void run_sgd_step(const BoundNode& node) {
  const int32_t t = node.in[3].i32()[0];
  if (t < 1)
    throw Error(ErrorKind::invalid_argument,
                "cpu: sgd_step '" + node.name + "': step must be >= 1 (it is 1-based), got " + std::to_string(t));
  const parity_sgd_params hp = node.params.sgd;
  const float lr = kernels::sgd_lr(hp, t);
  float* p = node.in[0].f32();
  const float* g = node.in[1].f32();
  float* velocity = node.in[2].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) kernels::sgd_update_element(&p[i], g[i], &velocity[i], hp, lr);
  });
}

int64_t prepare_clip_coef(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  expect_value(node, node.in[0], "sum of squares", PARITY_F32, -1);
  expect_value(node, node.out[0], "coef", PARITY_F32, -1);
  if (node.in[0].numel != 1 || node.out[0].numel != 1)
    fail(node, "sum of squares " + node.in[0].shape_str() + " and coef " + node.out[0].shape_str() +
                   " must hold one element each");
  return 0;
}

void run_clip_coef(const BoundNode& node) {
  node.out[0].f32()[0] = kernels::clip_coef_f32(node.in[0].f32()[0], node.params.clip_coef.max_norm);
}

}  // namespace cpu
}  // namespace parity
