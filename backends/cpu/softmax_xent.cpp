// backends/cpu/softmax_xent.cpp — softmax cross-entropy on the cpu backend, float32 logits[N,K]
// with int32 labels[N]: the loss (mean, sum or none, an optional ignore_index:
// parity_softmax_xent_params) and its gradient side by side, row math from
// ops/kernels/softmax_xent.h. Rows run in parallel; the mean and sum add the per-row terms in
// row order afterwards, so they do not depend on the split.
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

// Every label must name a class or be the ignore_index (PyTorch raises the same way). Returns
// the number of rows not ignored.
int64_t check_labels(const BoundNode& node) {
  const parity_softmax_xent_params& p = node.params.softmax_xent;
  const int32_t* labels = node.in[1].i32();
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  int64_t counted = 0;
  for (int64_t n = 0; n < rows; ++n) {
    if (kernels::xent_row_ignored(p, labels[n])) continue;
    ++counted;
    if (labels[n] < 0 || labels[n] >= classes)
      throw Error(ErrorKind::data, "cpu: " + std::string(parity_op_name(node.op)) + " '" + node.name + "': label " +
                                       std::to_string(labels[n]) + " of row " + std::to_string(n) +
                                       " must be in [0, " + std::to_string(classes) + ")" +
                                       (p.has_ignore_index ? " or be the ignore_index " + std::to_string(p.ignore_index)
                                                           : std::string()));
  }
  return counted;
}

// The reduction (parity_softmax_xent_params) and the loss's element count under it: 1, or N for none.
int64_t loss_numel(BoundNode& node) {
  const int32_t reduction = node.params.softmax_xent.reduction;
  if (reduction != PARITY_REDUCTION_MEAN && reduction != PARITY_REDUCTION_SUM && reduction != PARITY_REDUCTION_NONE)
    throw Error(ErrorKind::invalid_argument, "cpu: " + std::string(parity_op_name(node.op)) + " '" + node.name +
                                                 "': reduction " + std::to_string(reduction) +
                                                 " must be 0 (mean), 1 (sum) or 2 (none)");
  return reduction == PARITY_REDUCTION_NONE ? node.in[0].dims[0] : 1;
}

void check_loss_shape(BoundNode& node, const BoundValue& v, const char* role) {
  expect_value(node, v, role, PARITY_F32, -1);
  const int64_t want = loss_numel(node);
  if (v.numel != want)
    fail(node, std::string(role) + " must hold " + std::to_string(want) + (want == 1 ? " element" : " elements") +
                   " (one per row for reduction none), got " + v.shape_str());
}

}  // namespace

// ---------------------------------------------------------------- forward
int64_t prepare_softmax_xent(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  check_xent(node, "loss");
  check_loss_shape(node, node.out[0], "loss");
  // One loss term per row before the mean or sum; none writes them into the loss itself.
  return node.params.softmax_xent.reduction == PARITY_REDUCTION_NONE ? 0 : align64(node.in[0].dims[0] * 4);
}

void run_softmax_xent(const BoundNode& node) {
  const int64_t counted = check_labels(node);
  const parity_softmax_xent_params& p = node.params.softmax_xent;
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  const float* logits = node.in[0].f32();
  const int32_t* labels = node.in[1].i32();
  float* terms = p.reduction == PARITY_REDUCTION_NONE ? node.out[0].f32() : reinterpret_cast<float*>(node.workspace);
  parallel_chunks(rows, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* row = logits + n * classes;
      const bool ignored = kernels::xent_row_ignored(p, labels[n]);
      const float row_max = ignored ? 0.0f : kernels::row_max_f32(row, classes);
      const float lse = ignored ? 0.0f : kernels::row_log_sum_exp_shifted_f32(row, classes, row_max);
      terms[n] = kernels::xent_row_term_f32(row, classes, labels[n], ignored, row_max, lse);
    }
  });
  if (p.reduction == PARITY_REDUCTION_NONE) return;
  double sum = 0.0;  // row order, in double: the mean does not lose the small terms
  for (int64_t n = 0; n < rows; ++n) sum += terms[n];
  // The mean over no row is 0 / 0 = NaN, as torch's.
  node.out[0].f32()[0] =
      static_cast<float>(p.reduction == PARITY_REDUCTION_SUM ? sum : sum / static_cast<double>(counted));
}

// ---------------------------------------------------------------- backward
int64_t prepare_softmax_xent_bwd(BoundNode& node) {
  expect_arity(node, 3, 3, 1, 1);
  check_xent(node, "dlogits");
  check_loss_shape(node, node.in[2], "dloss");
  expect_value(node, node.out[0], "dlogits", PARITY_F32, 2);
  expect_same_shape(node, node.in[0], "logits", node.out[0], "dlogits");
  return 0;
}

void run_softmax_xent_bwd(const BoundNode& node) {
  const int64_t counted = check_labels(node);
  const parity_softmax_xent_params& p = node.params.softmax_xent;
  const int64_t rows = node.in[0].dims[0], classes = node.in[0].dims[1];
  const float* logits = node.in[0].f32();
  const int32_t* labels = node.in[1].i32();
  const float* dloss = node.in[2].f32();
  // mean: dloss / rows counted (none counted: no row uses it); sum: dloss; none: dloss[n].
  const float scale = p.reduction == PARITY_REDUCTION_MEAN ? dloss[0] / static_cast<float>(counted) : dloss[0];
  float* dlogits = node.out[0].f32();
  parallel_chunks(rows, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* row = logits + n * classes;
      const float row_max = kernels::row_max_f32(row, classes);
      const float lse = kernels::row_log_sum_exp_shifted_f32(row, classes, row_max);
      const bool ignored = kernels::xent_row_ignored(p, labels[n]);
      const float row_scale = kernels::xent_row_scale_f32(labels[n], classes, ignored,
                                                          p.reduction == PARITY_REDUCTION_NONE ? dloss[n] : scale);
      for (int64_t k = 0; k < classes; ++k)
        dlogits[n * classes + k] =
            kernels::xent_grad_element_f32(row[k], row_max, lse, !ignored && k == labels[n], row_scale);
    }
  });
}

}  // namespace cpu
}  // namespace parity
