// backends/cpu/softmax_xent.cpp — softmax cross-entropy on the cpu backend, float32 logits[N,K]
// with int32 labels[N]: the loss (mean over the batch) and its gradient side by side, row math
// from ops/kernels/softmax_xent.h. Rows run in parallel; the loss sums the per-row terms in
// row order afterwards, so it does not depend on the split.
#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/softmax_xent.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kMinElementsPerChunk = 4096;
constexpr int64_t kMaxChunks = 256;

void check_xent(BoundNode& node, const char* out_role) {
  const BoundValue& logits = node.in[0];
  const BoundValue& labels = node.in[1];
  expect_value(node, logits, "logits", PARITY_F32, 2);
  expect_value(node, labels, "labels", PARITY_I32, 1);
  const int64_t dims[1] = {logits.dims[0]};
  expect_dims(node, labels, "labels", dims, 1, "[N], one class index per row of logits");
  const int64_t rows = logits.dims[0], classes = logits.dims[1];
  node.chunk = fixed_chunk_size(rows, (kMinElementsPerChunk + classes - 1) / classes, kMaxChunks);
  node.num_chunks = chunk_count(rows, node.chunk);
}

void check_scalar(BoundNode& node, const BoundValue& v, const char* role) {
  expect_value(node, v, role, PARITY_F32, -1);
  if (v.numel != 1) fail(node, std::string(role) + " must hold one element, got " + v.shape_str());
}

// Every label must name a class (PyTorch raises the same way; no ignore_index here).
void check_labels(const BoundNode& node) {
  const int32_t* labels = node.in[1].i32();
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  for (int64_t n = 0; n < rows; ++n)
    if (labels[n] < 0 || labels[n] >= classes)
      throw Error(ErrorKind::data, "cpu: " + std::string(parity_op_name(node.op)) + " '" + node.name + "': label " +
                                       std::to_string(labels[n]) + " of row " + std::to_string(n) +
                                       " must be in [0, " + std::to_string(classes) + ")");
}

}  // namespace

// ---------------------------------------------------------------- forward
int64_t prepare_softmax_xent(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  check_xent(node, "loss");
  check_scalar(node, node.out[0], "loss");
  return align64(node.in[0].dims[0] * 4);  // one loss term per row
}

void run_softmax_xent(const BoundNode& node) {
  check_labels(node);
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  const float* logits = node.in[0].f32();
  const int32_t* labels = node.in[1].i32();
  float* terms = reinterpret_cast<float*>(node.workspace);
  parallel_chunks(rows, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* row = logits + n * classes;
      const float row_max = kernels::row_max_f32(row, classes);
      const float lse = kernels::row_log_sum_exp_shifted_f32(row, classes, row_max);
      terms[n] = kernels::xent_loss_term_f32(row[labels[n]], row_max, lse);
    }
  });
  double sum = 0.0;  // row order, in double: the mean does not lose the small terms
  for (int64_t n = 0; n < rows; ++n) sum += terms[n];
  node.out[0].f32()[0] = static_cast<float>(sum / static_cast<double>(rows));
}

// ---------------------------------------------------------------- backward
int64_t prepare_softmax_xent_bwd(BoundNode& node) {
  expect_arity(node, 3, 3, 1, 1);
  check_xent(node, "dlogits");
  check_scalar(node, node.in[2], "dloss");
  expect_value(node, node.out[0], "dlogits", PARITY_F32, 2);
  expect_same_shape(node, node.in[0], "logits", node.out[0], "dlogits");
  return 0;
}

void run_softmax_xent_bwd(const BoundNode& node) {
  check_labels(node);
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  const float* logits = node.in[0].f32();
  const int32_t* labels = node.in[1].i32();
  const float scale = node.in[2].f32()[0] / static_cast<float>(rows);
  float* dlogits = node.out[0].f32();
  parallel_chunks(rows, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* row = logits + n * classes;
      const float row_max = kernels::row_max_f32(row, classes);
      const float lse = kernels::row_log_sum_exp_shifted_f32(row, classes, row_max);
      for (int64_t k = 0; k < classes; ++k)
        dlogits[n * classes + k] = kernels::xent_grad_element_f32(row[k], row_max, lse, k == labels[n], scale);
    }
  });
}

}  // namespace cpu
}  // namespace parity
