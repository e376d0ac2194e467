// backends/native/softmax_xent.cuh — softmax cross-entropy, forward and backward (kernels and
// host code, `run_<name>`), with one block per row: the row maximum and the shifted
// log-sum-exp are block reductions (fixed trees), the loss term, the row's gradient scale and
// the gradient element are ops/kernels/softmax_xent.h's (reduction and ignore_index,
// parity_softmax_xent_params). The mean or sum over the batch is a second one-block reduction
// over the row terms, which also counts the rows not ignored. Also argmax and the accuracy count.
#pragma once

#include <math.h>

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "backends/native/reduce.cuh"
#include "ops/kernels/argmax.h"
#include "ops/kernels/softmax_xent.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// The maximum and log(sum exp(x - max)) of `row`, computed by the whole block; every thread gets both.
PK_DEVICE void block_row_stats_f32(const float* row, int64_t k, float* scratch, float* row_max, float* lse) {
  float m = row[0];
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x()) m = kernels::max_propagate_nan_f32(m, row[i]);
  m = block_max_f32(m, scratch);
  float sum = 0.0f;
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x()) sum += kernels::exp_shifted_f32(row[i], m);
  sum = pk::block_sum(sum, scratch);
  *row_max = m;
  *lse = logf(sum);
}

// Row n's loss term (kernels::xent_row_term_f32: 0 for an ignored row) into loss_terms[n].
PK_GLOBAL void softmax_xent_rows_f32(const float* logits, const int32_t* labels, float* loss_terms, int64_t k,
                                     parity_softmax_xent_params p) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t n = pk::block_x();
  const float* row = logits + n * k;
  float m, lse;
  block_row_stats_f32(row, k, scratch, &m, &lse);
  const int32_t label = labels[n];
  if (pk::thread_x() == 0)
    loss_terms[n] = kernels::xent_row_term_f32(row, k, label, kernels::xent_row_ignored(p, label), m, lse);
}

// The number of labels that are not the ignore_index, by the whole block; every thread gets it.
PK_DEVICE int rows_counted(const int32_t* labels, int64_t count, const parity_softmax_xent_params& p, int* scratch) {
  int counted = 0;
  for (int64_t i = pk::thread_x(); i < count; i += pk::block_dim_x())
    counted += kernels::xent_row_ignored(p, labels[i]) ? 0 : 1;
  return pk::block_sum(counted, scratch);
}

// out[0] = the sum of the row terms (reduction sum), or that sum over the rows not ignored (mean;
// no such row: 0 / 0 = NaN, as torch's).
PK_GLOBAL void reduce_xent_terms_f32(const float* terms, const int32_t* labels, float* out, int64_t count,
                                     parity_softmax_xent_params p) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  PK_SHARED(int, count_scratch, pk::kMaxWarpsPerBlock);
  float partial = 0.0f;
  for (int64_t i = pk::thread_x(); i < count; i += pk::block_dim_x()) partial += terms[i];
  const float total = pk::block_sum(partial, scratch);
  const int counted = rows_counted(labels, count, p, count_scratch);
  if (pk::thread_x() == 0) out[0] = p.reduction == PARITY_REDUCTION_MEAN ? total / static_cast<float>(counted) : total;
}

// The mean's gradient scale, dloss / rows not ignored, into scale[0] (no such row: no row reads it).
PK_GLOBAL void xent_mean_scale_f32(const int32_t* labels, const float* dloss, float* scale, int64_t count,
                                   parity_softmax_xent_params p) {
  PK_SHARED(int, scratch, pk::kMaxWarpsPerBlock);
  const int counted = rows_counted(labels, count, p, scratch);
  if (pk::thread_x() == 0) scale[0] = dloss[0] / static_cast<float>(counted);
}

// dlogits of row n, its scale scales[n * scale_stride] (stride 0: one scale for every row);
// kernels::xent_row_scale_f32 makes it 0 for an ignored row.
PK_GLOBAL void softmax_xent_bwd_rows_f32(const float* logits, const int32_t* labels, const float* scales,
                                         int64_t scale_stride, float* dlogits, int64_t k, parity_softmax_xent_params p) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t n = pk::block_x();
  const float* row = logits + n * k;
  float m, lse;
  block_row_stats_f32(row, k, scratch, &m, &lse);
  const int32_t label = labels[n];
  const bool ignored = kernels::xent_row_ignored(p, label);
  const float scale = kernels::xent_row_scale_f32(label, k, ignored, scales[n * scale_stride]);
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x())
    dlogits[n * k + i] = kernels::xent_grad_element_f32(row[i], m, lse, !ignored && i == label, scale);
}

PK_GLOBAL void argmax_rows_f32(const float* x, int32_t* idx, int64_t n, int64_t k) {
  for (int64_t r = grid_first(); r < n; r += grid_stride())
    idx[r] = static_cast<int32_t>(kernels::row_argmax_first_f32(x + r * k, k));
}

PK_GLOBAL void accuracy_f32(const float* logits, const int32_t* labels, float* correct, int64_t n, int64_t k) {
  PK_SHARED(int, scratch, pk::kMaxWarpsPerBlock);
  int hits = 0;
  for (int64_t r = pk::thread_x(); r < n; r += pk::block_dim_x())
    hits += kernels::row_argmax_first_f32(logits + r * k, k) == labels[r] ? 1 : 0;
  const int total = pk::block_sum(hits, scratch);
  if (pk::thread_x() == 0) correct[0] = static_cast<float>(total);
}

// Run-time data the graph cannot have validated (the kernels cannot fail): labels (input 1, n
// of them, i32) name a class in [0, k) or are p's ignore_index. Checked when the host has them;
// where it has not, the kernels give such a row a NaN term and gradient (xent_row_term_f32).
inline void check_labels(const NativeNode& node, int64_t n, int64_t k, const parity_softmax_xent_params& p) {
  node.expect_numel(node.in(1), n);
  node.expect_dtype(node.in_index(1), PARITY_I32);
  const int32_t* labels = node.host_i32_in(1);
  if (!labels) return;
  for (int64_t i = 0; i < n; ++i)
    if (!kernels::xent_row_ignored(p, labels[i]) && (labels[i] < 0 || labels[i] >= k))
      node.fail(PARITY_STATUS_DATA, msg(node.label(), ": label ", labels[i], " at row ", i, " of value '",
                                        node.in(1).name, "' is outside [0, ", k, ")",
                                        p.has_ignore_index ? msg(" and is not the ignore_index ", p.ignore_index)
                                                           : std::string()));
}

// A SOFTMAX_XENT(_BWD) node's params, its reduction checked; and the loss's element count under
// it: 1, or n for reduction none.
inline const parity_softmax_xent_params& xent_params(const NativeNode& node) {
  const parity_softmax_xent_params& p = node.desc().params.softmax_xent;
  if (p.reduction != PARITY_REDUCTION_MEAN && p.reduction != PARITY_REDUCTION_SUM && p.reduction != PARITY_REDUCTION_NONE)
    node.fail(PARITY_STATUS_INVALID_ARGUMENT,
              msg(node.label(), ": reduction ", p.reduction, " is none of 0 (mean), 1 (sum), 2 (none)"));
  return p;
}
inline int64_t xent_loss_numel(const parity_softmax_xent_params& p, int64_t n) {
  return p.reduction == PARITY_REDUCTION_NONE ? n : 1;
}

// logits[N,K], labels[N] -> loss[1] (none: loss[N]); the mean and sum take the N row terms in
// the workspace, none writes them into the loss.
inline void run_softmax_xent(const NativeNode& node) {
  const parity_softmax_xent_params& p = xent_params(node);
  const int64_t n = node.dim(node.in(0), 2, 0), k = node.dim(node.in(0), 2, 1);
  const bool reduces = p.reduction != PARITY_REDUCTION_NONE;
  node.need_workspace(reduces ? n : 0);
  if (node.sizing()) return;
  check_labels(node, n, k, p);
  node.expect_numel(node.out(0), xent_loss_numel(p, n));
  const float* logits = node.f32_in(0);
  const int32_t* labels = node.i32_in(1);
  float* loss = node.f32_out(0);
  if (!node.launching()) return;
  float* loss_terms = reduces ? node.workspace() : loss;
  if (n > 0) PK_LAUNCH(softmax_xent_rows_f32, pk::dim3(static_cast<unsigned>(n)), pk::dim3(kRowBlock), logits, labels,
                       loss_terms, k, p);
  if (reduces) PK_LAUNCH(reduce_xent_terms_f32, pk::dim3(1), pk::dim3(kElementBlock), loss_terms, labels, loss, n, p);
}

// logits[N,K], labels[N], dloss[1] (none: dloss[N]) -> dlogits[N,K]; the mean's scale (dloss over
// the rows not ignored) is one float of workspace.
inline void run_softmax_xent_bwd(const NativeNode& node) {
  const parity_softmax_xent_params& p = xent_params(node);
  node.need_workspace(p.reduction == PARITY_REDUCTION_MEAN ? 1 : 0);
  if (node.sizing()) return;
  const int64_t n = node.dim(node.in(0), 2, 0), k = node.dim(node.in(0), 2, 1);
  check_labels(node, n, k, p);
  node.expect_numel(node.in(2), xent_loss_numel(p, n));
  node.expect_numel(node.out(0), n * k);
  const float* logits = node.f32_in(0);
  const int32_t* labels = node.i32_in(1);
  const float* dloss = node.f32_in(2);
  float* dlogits = node.f32_out(0);
  if (!node.launching() || n == 0) return;
  const float* scales = dloss;
  if (p.reduction == PARITY_REDUCTION_MEAN) {
    scales = node.workspace();
    PK_LAUNCH(xent_mean_scale_f32, pk::dim3(1), pk::dim3(kElementBlock), labels, dloss, node.workspace(), n, p);
  }
  const int64_t scale_stride = p.reduction == PARITY_REDUCTION_NONE ? 1 : 0;
  PK_LAUNCH(softmax_xent_bwd_rows_f32, pk::dim3(static_cast<unsigned>(n)), pk::dim3(kRowBlock), logits, labels, scales,
            scale_stride, dlogits, k, p);
}

// x[N,K] -> idx[N] (first maximum of each row).
inline void run_argmax(const NativeNode& node) {
  if (node.sizing()) return;
  const int64_t n = node.dim(node.in(0), 2, 0), k = node.dim(node.in(0), 2, 1);
  node.expect_numel(node.out(0), n);
  const float* x = node.f32_in(0);
  int32_t* idx = node.i32_out(0);
  if (node.launching()) PK_LAUNCH(argmax_rows_f32, element_grid(n), pk::dim3(kElementBlock), x, idx, n, k);
}

// logits[N,K], labels[N] -> correct[1], the count of rows whose argmax is the label.
inline void run_accuracy(const NativeNode& node) {
  if (node.sizing()) return;
  const int64_t n = node.dim(node.in(0), 2, 0), k = node.dim(node.in(0), 2, 1);
  check_labels(node, n, k, parity_softmax_xent_params{});  // accuracy ignores no row
  node.expect_numel(node.out(0), 1);
  const float* logits = node.f32_in(0);
  const int32_t* labels = node.i32_in(1);
  float* correct = node.f32_out(0);
  if (node.launching())
    PK_LAUNCH(accuracy_f32, pk::dim3(1), pk::dim3(kElementBlock), logits, labels, correct, n, k);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
