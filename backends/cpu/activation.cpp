// backends/cpu/activation.cpp — relu, sigmoid and their gradients on the cpu backend, float32,
// any shape: element math from ops/kernels/activation.h over fixed chunks of elements. The
// loops are plain so the compiler vectorises relu; sigmoid's expf is a libm call per element.
#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/activation.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 4096;

// x -> y of the same shape.
int64_t prepare_forward(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  expect_value(node, node.in[0], "x", PARITY_F32, -1);
  expect_value(node, node.out[0], "y", PARITY_F32, -1);
  expect_same_shape(node, node.in[0], "x", node.out[0], "y");
  node.chunk = fixed_chunk_size(node.in[0].numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(node.in[0].numel, node.chunk);
  return 0;
}

// y (the forward output), dy -> dx, all of one shape.
int64_t prepare_backward(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  expect_value(node, node.in[0], "y", PARITY_F32, -1);
  expect_value(node, node.in[1], "dy", PARITY_F32, -1);
  expect_value(node, node.out[0], "dx", PARITY_F32, -1);
  expect_same_shape(node, node.in[0], "y", node.in[1], "dy");
  expect_same_shape(node, node.in[0], "y", node.out[0], "dx");
  node.chunk = fixed_chunk_size(node.in[0].numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(node.in[0].numel, node.chunk);
  return 0;
}

// The element math is a template argument, so each loop calls it directly: inlined (and, for
// relu, vectorised), never an indirect call per element.
template <float (*element)(float)>
void run_forward(const BoundNode& node) {
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = element(x[i]);
  });
}

template <float (*element)(float, float)>
void run_backward(const BoundNode& node) {
  const float* y = node.in[0].f32();
  const float* dy = node.in[1].f32();
  float* dx = node.out[0].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = element(y[i], dy[i]);
  });
}

}  // namespace

int64_t prepare_relu(BoundNode& node) { return prepare_forward(node); }
void run_relu(const BoundNode& node) { run_forward<kernels::relu_f32>(node); }
int64_t prepare_relu_bwd(BoundNode& node) { return prepare_backward(node); }
void run_relu_bwd(const BoundNode& node) { run_backward<kernels::relu_bwd_f32>(node); }

int64_t prepare_sigmoid(BoundNode& node) { return prepare_forward(node); }
void run_sigmoid(const BoundNode& node) { run_forward<kernels::sigmoid_f32>(node); }
int64_t prepare_sigmoid_bwd(BoundNode& node) { return prepare_backward(node); }
void run_sigmoid_bwd(const BoundNode& node) { run_backward<kernels::sigmoid_bwd_f32>(node); }

}  // namespace cpu
}  // namespace parity
