// backends/cpu/add.cpp — element-wise a + b and a * b on the cpu backend, float32, with
// broadcasting (equal shapes take a plain loop), and reduce_sum, over fixed chunks of elements.
#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/broadcast.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 4096;

bool same_shape(const BoundValue& a, const BoundValue& b) {
  if (a.rank != b.rank) return false;
  for (int32_t d = 0; d < a.rank; ++d)
    if (a.dims[d] != b.dims[d]) return false;
  return true;
}

// a, b -> c of one rank, each dim of a and b c's or 1 (equal shapes: the plain case).
int64_t prepare_broadcast(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  expect_value(node, node.in[0], "a", PARITY_F32, -1);
  expect_value(node, node.in[1], "b", PARITY_F32, -1);
  expect_value(node, node.out[0], "c", PARITY_F32, -1);
  const BoundValue& a = node.in[0];
  const BoundValue& b = node.in[1];
  const BoundValue& c = node.out[0];
  if (!(same_shape(a, c) && same_shape(b, c))) {
    if (a.rank != c.rank || b.rank != c.rank)
      fail(node, "a " + a.shape_str() + " and b " + b.shape_str() + " must have the rank of c " + c.shape_str());
    for (int32_t d = 0; d < c.rank; ++d)
      if ((a.dims[d] != c.dims[d] && a.dims[d] != 1) || (b.dims[d] != c.dims[d] && b.dims[d] != 1) ||
          c.dims[d] != (a.dims[d] > b.dims[d] ? a.dims[d] : b.dims[d]))
        fail(node, "a " + a.shape_str() + " and b " + b.shape_str() + " do not broadcast to c " + c.shape_str());
  }
  node.chunk = fixed_chunk_size(c.numel, kElementsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(c.numel, node.chunk);
  return 0;
}

template <class Combine>
void run_broadcast(const BoundNode& node, Combine combine) {
  const float* a = node.in[0].f32();
  const float* b = node.in[1].f32();
  float* c = node.out[0].f32();
  const int64_t count = node.out[0].numel;
  if (same_shape(node.in[0], node.out[0]) && same_shape(node.in[1], node.out[0])) {
    parallel_chunks(count, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) c[i] = combine(a[i], b[i]);
    });
    return;
  }
  const kernels::BroadcastShape shape = kernels::make_broadcast_shape(node.out[0].rank, node.in[0].dims, node.in[1].dims);
  parallel_chunks(count, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t offset_a = 0, offset_b = 0;
      kernels::broadcast_offsets(shape, i, &offset_a, &offset_b);
      c[i] = combine(a[offset_a], b[offset_b]);
    }
  });
}

}  // namespace

int64_t prepare_add(BoundNode& node) { return prepare_broadcast(node); }
void run_add(const BoundNode& node) {
  run_broadcast(node, [](float a, float b) { return a + b; });
}

int64_t prepare_mul(BoundNode& node) { return prepare_broadcast(node); }
void run_mul(const BoundNode& node) {
  run_broadcast(node, [](float a, float b) { return a * b; });
}

// x -> y, the summed dims kept with size 1; chunks of output elements.
int64_t prepare_reduce_sum(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  expect_value(node, node.in[0], "x", PARITY_F32, -1);
  expect_value(node, node.out[0], "y", PARITY_F32, node.in[0].rank);
  const BoundValue& x = node.in[0];
  const BoundValue& y = node.out[0];
  const uint32_t dims = node.params.reduce_sum.dims;
  if (dims == 0 || (dims >> x.rank) != 0)
    fail(node, "dims mask " + std::to_string(dims) + " must name at least one dim of x " + x.shape_str());
  for (int32_t d = 0; d < x.rank; ++d)
    if (y.dims[d] != (((dims >> d) & 1u) ? 1 : x.dims[d]))
      fail(node, "y " + y.shape_str() + " must be x " + x.shape_str() + " with dims mask " + std::to_string(dims) +
                     " summed to 1");
  const int64_t terms = y.numel == 0 ? 0 : x.numel / y.numel;
  // About kElementsPerChunk input elements per task.
  node.chunk = fixed_chunk_size(y.numel, terms > 0 ? (kElementsPerChunk + terms - 1) / terms : 1, kMaxChunks);
  node.num_chunks = chunk_count(y.numel, node.chunk);
  return 0;
}

// Each output element sums its terms in row-major order into a double, rounded once: the same
// bits at any thread count.
void run_reduce_sum(const BoundNode& node) {
  const kernels::ReduceShape shape =
      kernels::make_reduce_shape(node.in[0].rank, node.in[0].dims, node.params.reduce_sum.dims);
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  parallel_chunks(shape.outputs, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      double sum = 0.0;
      for (int64_t t = 0; t < shape.terms; ++t) sum += x[kernels::reduce_offset(shape, o, t)];
      y[o] = static_cast<float>(sum);
    }
  });
}

}  // namespace cpu
}  // namespace parity
