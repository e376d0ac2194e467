// backends/cpu/dropout.cpp — dropout and its backward on the cpu backend, float32: each sample's
// mask drawn by ops/kernels/dropout.h (the same Philox draws as every backend), samples in
// parallel chunks; the backward draws the forward's mask again.
#include <algorithm>
#include <string>

#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/dropout.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 4096;

// x (or dy) [N, ...], step[1] i32 -> y (or dx) of x's shape; chunks of whole samples.
int64_t prepare_either(BoundNode& node, const char* in, const char* out) {
  expect_arity(node, 2, 2, 1, 1);
  expect_value(node, node.in[0], in, PARITY_F32, -1);
  expect_value(node, node.in[1], "step", PARITY_I32, -1);
  expect_value(node, node.out[0], out, PARITY_F32, -1);
  expect_same_shape(node, node.in[0], in, node.out[0], out);
  if (node.in[0].rank < 1 || node.in[0].dims[0] < 1) fail(node, std::string(in) + " must be a batch [N, ...], got " + node.in[0].shape_str());
  if (node.in[1].numel != 1) fail(node, "step must hold one element, got " + node.in[1].shape_str());
  const int64_t samples = node.in[0].dims[0];
  const int64_t per_sample = node.in[0].numel / samples;
  node.chunk = fixed_chunk_size(samples, (kElementsPerChunk + per_sample - 1) / std::max<int64_t>(per_sample, 1), kMaxChunks);
  node.num_chunks = chunk_count(samples, node.chunk);
  return 0;
}

void run_either(const BoundNode& node) {
  const int32_t step = node.in[1].i32()[0];
  if (step < 1)
    throw Error(ErrorKind::invalid_argument, "cpu: " + std::string(parity_op_name(node.op)) + " '" + node.name +
                                                 "': step must be >= 1 (it is 1-based), got " + std::to_string(step));
  const int64_t samples = node.in[0].dims[0];
  const int64_t per_sample = node.in[0].numel / samples;
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  const parity_dropout_params p = node.params.dropout;
  parallel_chunks(samples, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      kernels::dropout_sample_f32(x + n * per_sample, y + n * per_sample, per_sample, p, step, n);
  });
}

}  // namespace

int64_t prepare_dropout(BoundNode& node) { return prepare_either(node, "x", "y"); }
void run_dropout(const BoundNode& node) { run_either(node); }
int64_t prepare_dropout_bwd(BoundNode& node) { return prepare_either(node, "dy", "dx"); }
void run_dropout_bwd(const BoundNode& node) { run_either(node); }

}  // namespace cpu
}  // namespace parity
