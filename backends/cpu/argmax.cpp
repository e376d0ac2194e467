// backends/cpu/argmax.cpp — argmax (first maximum per row, int32) and accuracy (count of rows
// whose first maximum equals the label, as float32) on the cpu backend, float32 x[N,K].
// Accuracy counts per fixed row chunk, then adds the integer counts: exact in any order.
#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/argmax.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kMinElementsPerChunk = 4096;
constexpr int64_t kMaxChunks = 256;

void split_rows(BoundNode& node) {
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  node.chunk = fixed_chunk_size(rows, (kMinElementsPerChunk + classes - 1) / classes, kMaxChunks);
  node.num_chunks = chunk_count(rows, node.chunk);
}

// Input 0 is f32 [N,K] (named `rows_name`) and `v` an i32 [N] (named `name`): one per row.
void expect_rows_and_one_i32_per_row(BoundNode& node, const char* rows_name, const BoundValue& v, const char* name,
                                     const char* what) {
  expect_value(node, node.in[0], rows_name, PARITY_F32, 2);
  expect_value(node, v, name, PARITY_I32, 1);
  const int64_t dims[1] = {node.in[0].dims[0]};
  expect_dims(node, v, name, dims, 1, what);
}

}  // namespace

int64_t prepare_argmax(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  expect_rows_and_one_i32_per_row(node, "x", node.out[0], "idx", "[N], one index per row of x");
  split_rows(node);
  return 0;
}

void run_argmax(const BoundNode& node) {
  const int64_t classes = node.in[0].dims[1];
  const float* x = node.in[0].f32();
  int32_t* idx = node.out[0].i32();
  parallel_chunks(node.in[0].dims[0], node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      idx[n] = static_cast<int32_t>(kernels::row_argmax_first_f32(x + n * classes, classes));
  });
}

int64_t prepare_accuracy(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  expect_rows_and_one_i32_per_row(node, "logits", node.in[1], "labels", "[N], one class index per row of logits");
  expect_value(node, node.out[0], "correct", PARITY_F32, -1);
  if (node.out[0].numel != 1) fail(node, "correct must hold one element, got " + node.out[0].shape_str());
  split_rows(node);
  return align64(node.num_chunks * 8);  // one int64 count per chunk
}

void run_accuracy(const BoundNode& node) {
  const int64_t classes = node.in[0].dims[1];
  const float* logits = node.in[0].f32();
  const int32_t* labels = node.in[1].i32();
  int64_t* counts = reinterpret_cast<int64_t*>(node.workspace);
  parallel_chunks(node.in[0].dims[0], node.chunk, [&](int64_t part, int64_t begin, int64_t end) {
    int64_t count = 0;
    for (int64_t n = begin; n < end; ++n)
      count += kernels::row_argmax_first_f32(logits + n * classes, classes) == labels[n];
    counts[part] = count;
  });
  int64_t total = 0;
  for (int64_t part = 0; part < node.num_chunks; ++part) total += counts[part];
  node.out[0].f32()[0] = static_cast<float>(total);
}

}  // namespace cpu
}  // namespace parity
