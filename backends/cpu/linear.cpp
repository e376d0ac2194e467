// backends/cpu/linear.cpp — linear (fully connected) on the cpu backend, float32, row-major
// x[N,I], w[O,I]: forward, backward-data and backward-weight side by side, as GEMMs (gemm.h).
// (bf16 operands: bf16_gemm_ops.cpp; f16: half_nodes.h widens them into this file's f32 kernels.)
//
//   forward       y[N,O]  = x w^T + b     columns of y (rows of w) split into fixed chunks
//   backward-data dx[N,I] = dy w          columns of dx (of w) split into fixed chunks
//   backward-wt   dw[O,I] = dy^T x        columns of dw split into fixed chunks, so each
//                 db[O]   = sum_n dy      element's reduction over the batch stays whole
// All three run on gemm_rows.h's unpacked AVX-512 products where the build has them, otherwise on
// Eigen's GEMM (gemm.h). The forward's chunks of w's rows are then at least 64 rows: each chunk
// reads all of x, which for seed-cnn-112's fc1 (x 64x25088) costs more than the arithmetic.
// Every direction splits along a dimension of w, so the weights (25088x128 in seed-cnn-112's
// fc1, far larger than the batch) are streamed from memory once per step, not once per task.
// No reduction is ever split, so no partial buffers are needed; the scratch is GEMM packing
// space, one per worker slot.
#include <algorithm>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_nodes.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/gemm_rows.h"

namespace parity {
namespace cpu {
namespace {

// Rows of w per forward task, columns of w per backward task.
constexpr int64_t kMinRowsPerChunk = 32;
constexpr int64_t kMinRowsPerChunkUnpacked = 64;
constexpr int64_t kMinColumnsPerChunk = 64;
constexpr int64_t kMaxChunks = 64;

struct LinearGeometry {
  int64_t N, I, O;
};

// Checks x[N,I] (or dx), w[O,I] (or dw) and y[N,O] (or dy) against each other.
LinearGeometry check_linear(const BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& w,
                            const char* w_role, const BoundValue& y, const char* y_role) {
  expect_value(node, x, x_role, PARITY_F32, 2);
  expect_value(node, w, w_role, PARITY_F32, 2);
  const LinearGeometry g{x.dims[0], x.dims[1], w.dims[0]};
  if (w.dims[1] != g.I)
    fail(node, std::string(w_role) + " must be [O,I] with I = " + std::to_string(g.I) + " (the features of " + x_role +
                   "), got " + w.shape_str());
  const int64_t dims[2] = {g.N, g.O};
  expect_dims(node, y, y_role, dims, 2, "[N,O]");
  return g;
}

void check_bias(const BoundNode& node, const BoundValue& b, const char* role, int64_t O) {
  expect_value(node, b, role, PARITY_F32, 1);
  const int64_t dims[1] = {O};
  expect_dims(node, b, role, dims, 1, "[O], O = the output features");
}

// Packing space per worker slot for GEMMs [m,k] x [k,n] whose n (a dimension of w) is split
// into chunks of `total` (a full chunk and a possibly shorter last one).
int64_t slot_floats(const BoundNode& node, int64_t total, int64_t m, int64_t k) {
  const int64_t last = total - (node.num_chunks - 1) * node.chunk;
  return std::max(gemm_scratch_floats(m, node.chunk, k), gemm_scratch_floats(m, last, k));
}

// The backwards' split of I: whole tiles of gemm_rows.h's kernel where it runs, so that only the
// last chunk has a masked tail.
void split_columns(BoundNode& node, int64_t I) {
  node.chunk = fixed_chunk_size(I, kMinColumnsPerChunk, kMaxChunks);
  if (gemm_rows_available())
    node.chunk = (node.chunk + kGemmRowsTileColumns - 1) / kGemmRowsTileColumns * kGemmRowsTileColumns;
  node.num_chunks = chunk_count(I, node.chunk);
}

float* slot_scratch(const BoundNode& node, int64_t slot_floats) {
  return reinterpret_cast<float*>(node.workspace) + worker_slot(node.slots) * slot_floats;
}

}  // namespace

// ---------------------------------------------------------------- forward
int64_t prepare_linear(BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return prepare_linear_bf16(node);  // bf16_gemm_ops.cpp
  expect_arity(node, 2, 3, 1, 1);
  const LinearGeometry g = check_linear(node, node.in[0], "x", node.in[1], "w", node.out[0], "y");
  if (node.num_inputs == 3) check_bias(node, node.in[2], "b", g.O);
  node.chunk = fixed_chunk_size(g.O, gemm_rows_available() ? kMinRowsPerChunkUnpacked : kMinRowsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(g.O, node.chunk);
  if (gemm_rows_available()) return 0;
  return node.slots * slot_floats(node, g.O, g.N, g.I) * 4;
}

void run_linear(const BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return run_linear_bf16(node);
  const LinearGeometry g{node.in[0].dims[0], node.in[0].dims[1], node.in[1].dims[0]};
  const float* x = node.in[0].f32();
  const float* w = node.in[1].f32();
  const float* b = node.num_inputs == 3 ? node.in[2].f32() : nullptr;
  float* y = node.out[0].f32();
  if (gemm_rows_available()) {
    parallel_chunks(g.O, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      // y[n, begin:end] = x[n, :] . w[begin:end, :] + b[begin:end]
      gemm_dot_rows_f32(g.N, end - begin, g.I, x, g.I, w + begin * g.I, g.I, b ? b + begin : nullptr, y + begin, g.O);
    });
    return;
  }
  const int64_t scratch_floats = slot_floats(node, g.O, g.N, g.I);
  parallel_chunks(g.O, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    // y[:, begin:end] = x w[begin:end, :]^T
    gemm_f32(g.N, end - begin, g.I, {x, g.I, false}, {w + begin * g.I, g.I, true}, y + begin, g.O, false,
             slot_scratch(node, scratch_floats));
    if (b)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t o = begin; o < end; ++o) y[n * g.O + o] += b[o];
  });
}

// ---------------------------------------------------------------- backward, data
int64_t prepare_linear_bwd_data(BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return prepare_linear_bf16(node);  // bf16_gemm_ops.cpp
  expect_arity(node, 2, 2, 1, 1);
  const LinearGeometry g = check_linear(node, node.out[0], "dx", node.in[1], "w", node.in[0], "dy");
  split_columns(node, g.I);
  if (gemm_rows_available()) return 0;
  return node.slots * slot_floats(node, g.I, g.N, g.O) * 4;
}

void run_linear_bwd_data(const BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return run_linear_bf16(node);
  const LinearGeometry g{node.out[0].dims[0], node.out[0].dims[1], node.in[1].dims[0]};
  const float* dy = node.in[0].f32();
  const float* w = node.in[1].f32();
  float* dx = node.out[0].f32();
  if (gemm_rows_available()) {
    parallel_chunks(g.I, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      // dx[n, begin:end] = sum over o of dy[n, o] w[o, begin:end]
      gemm_rows_f32(g.N, end - begin, g.O, dy, g.O, 1, w + begin, g.I, dx + begin, g.I);
    });
    return;
  }
  const int64_t scratch_floats = slot_floats(node, g.I, g.N, g.O);
  parallel_chunks(g.I, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    // dx[:, begin:end] = dy w[:, begin:end]
    gemm_f32(g.N, end - begin, g.O, {dy, g.O, false}, {w + begin, g.I, false}, dx + begin, g.I, false,
             slot_scratch(node, scratch_floats));
  });
}

// ---------------------------------------------------------------- backward, weight
int64_t prepare_linear_bwd_weight(BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return prepare_linear_bf16(node);  // bf16_gemm_ops.cpp
  expect_arity(node, 2, 2, 1, 2);
  const LinearGeometry g = check_linear(node, node.in[0], "x", node.out[0], "dw", node.in[1], "dy");
  if (node.num_outputs == 2) check_bias(node, node.out[1], "db", g.O);
  split_columns(node, g.I);
  if (gemm_rows_available()) return 0;
  return node.slots * slot_floats(node, g.I, g.O, g.N) * 4;
}

void run_linear_bwd_weight(const BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return run_linear_bf16(node);
  const LinearGeometry g{node.in[0].dims[0], node.in[0].dims[1], node.out[0].dims[0]};
  const float* x = node.in[0].f32();
  const float* dy = node.in[1].f32();
  float* dw = node.out[0].f32();
  float* db = node.num_outputs == 2 ? node.out[1].f32() : nullptr;
  if (gemm_rows_available()) {
    parallel_chunks(g.I, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      // dw[o, begin:end] = sum over n of dy[n, o] x[n, begin:end]
      gemm_rows_f32(g.O, end - begin, g.N, dy, 1, g.O, x + begin, g.I, dw + begin, g.I);
    });
  } else {
    const int64_t scratch_floats = slot_floats(node, g.I, g.O, g.N);
    parallel_chunks(g.I, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      // dw[:, begin:end] = dy^T x[:, begin:end]
      gemm_f32(g.O, end - begin, g.N, {dy, g.O, true}, {x + begin, g.I, false}, dw + begin, g.I, false,
               slot_scratch(node, scratch_floats));
    });
  }
  if (db) {
    // db[o] = dy[0,o] + dy[1,o] + ... in batch order.
    for (int64_t o = 0; o < g.O; ++o) db[o] = dy[o];
    for (int64_t n = 1; n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o) db[o] += dy[n * g.O + o];
  }
}

}  // namespace cpu
}  // namespace parity
