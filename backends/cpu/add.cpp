// backends/cpu/add.cpp — elementwise a + b on the cpu backend, float32, same shapes (gradient
// accumulation), over fixed chunks of elements.
#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 4096;

}  // namespace

int64_t prepare_add(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  expect_value(node, node.in[0], "a", PARITY_F32, -1);
  expect_value(node, node.in[1], "b", PARITY_F32, -1);
  expect_value(node, node.out[0], "c", PARITY_F32, -1);
  expect_same_shape(node, node.in[0], "a", node.in[1], "b");
  expect_same_shape(node, node.in[0], "a", node.out[0], "c");
  node.chunk = fixed_chunk_size(node.in[0].numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(node.in[0].numel, node.chunk);
  return 0;
}

void run_add(const BoundNode& node) {
  const float* a = node.in[0].f32();
  const float* b = node.in[1].f32();
  float* c = node.out[0].f32();
  parallel_chunks(node.in[0].numel, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) c[i] = a[i] + b[i];
  });
}

}  // namespace cpu
}  // namespace parity
