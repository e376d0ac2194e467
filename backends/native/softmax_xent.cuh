// backends/native/softmax_xent.cuh — softmax cross-entropy, forward and backward (kernels and
// host code, `run_<name>`), with one block per row: the row maximum and the shifted
// log-sum-exp are block reductions (fixed trees), the loss term and the gradient element are
// ops/kernels/softmax_xent.h's. The batch mean is a second one-block reduction over the row
// terms. Also argmax and the accuracy count.
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

PK_GLOBAL void softmax_xent_rows_f32(const float* logits, const int32_t* labels, float* loss_terms, int64_t k) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t n = pk::block_x();
  const float* row = logits + n * k;
  float m, lse;
  block_row_stats_f32(row, k, scratch, &m, &lse);
  if (pk::thread_x() == 0) loss_terms[n] = kernels::xent_loss_term_f32(row[labels[n]], m, lse);
}

PK_GLOBAL void mean_f32(const float* terms, float* out, int64_t count) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  float partial = 0.0f;
  for (int64_t i = pk::thread_x(); i < count; i += pk::block_dim_x()) partial += terms[i];
  const float total = pk::block_sum(partial, scratch);
  if (pk::thread_x() == 0) out[0] = total / static_cast<float>(count);
}

PK_GLOBAL void softmax_xent_bwd_rows_f32(const float* logits, const int32_t* labels, const float* dloss,
                                         float* dlogits, int64_t batch, int64_t k) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t n = pk::block_x();
  const float* row = logits + n * k;
  float m, lse;
  block_row_stats_f32(row, k, scratch, &m, &lse);
  const float scale = dloss[0] / static_cast<float>(batch);
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x())
    dlogits[n * k + i] = kernels::xent_grad_element_f32(row[i], m, lse, i == labels[n], scale);
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
// of them, i32) name a class in [0, k). Checked when the host has them.
inline void check_labels(const NativeNode& node, int64_t n, int64_t k) {
  node.expect_numel(node.in(1), n);
  node.expect_dtype(node.in_index(1), PARITY_I32);
  const int32_t* labels = node.host_i32_in(1);
  if (!labels) return;
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= k)
      node.fail(PARITY_STATUS_DATA, msg(node.label(), ": label ", labels[i], " at row ", i, " of value '",
                                        node.in(1).name, "' is outside [0, ", k, ")"));
}

// logits[N,K], labels[N] -> loss[1]; the workspace holds the N row terms.
inline void run_softmax_xent(const NativeNode& node) {
  const int64_t n = node.dim(node.in(0), 2, 0), k = node.dim(node.in(0), 2, 1);
  node.need_workspace(n);
  if (node.sizing()) return;
  check_labels(node, n, k);
  node.expect_numel(node.out(0), 1);
  const float* logits = node.f32_in(0);
  const int32_t* labels = node.i32_in(1);
  float* loss = node.f32_out(0);
  if (!node.launching()) return;
  float* loss_terms = node.workspace();
  if (n > 0) PK_LAUNCH(softmax_xent_rows_f32, pk::dim3(static_cast<unsigned>(n)), pk::dim3(kRowBlock), logits, labels,
                       loss_terms, k);
  PK_LAUNCH(mean_f32, pk::dim3(1), pk::dim3(kElementBlock), loss_terms, loss, n);
}

// logits[N,K], labels[N], dloss[1] -> dlogits[N,K].
inline void run_softmax_xent_bwd(const NativeNode& node) {
  if (node.sizing()) return;  // no workspace
  const int64_t n = node.dim(node.in(0), 2, 0), k = node.dim(node.in(0), 2, 1);
  check_labels(node, n, k);
  node.expect_numel(node.in(2), 1);
  node.expect_numel(node.out(0), n * k);
  const float* logits = node.f32_in(0);
  const int32_t* labels = node.i32_in(1);
  const float* dloss = node.f32_in(2);
  float* dlogits = node.f32_out(0);
  if (node.launching() && n > 0)
    PK_LAUNCH(softmax_xent_bwd_rows_f32, pk::dim3(static_cast<unsigned>(n)), pk::dim3(kRowBlock), logits, labels,
              dloss, dlogits, n, k);
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
  check_labels(node, n, k);
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
