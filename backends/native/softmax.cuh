// backends/native/softmax.cuh — softmax, log_softmax and their backwards over one dim (kernels
// and host code, `run_<name>`), the tensor as lanes [outer, k, inner] (ops/kernels/softmax.h).
// Rows (inner == 1, the [N,K] head): one block per row, the maximum and the sums as block
// reductions over fixed trees (softmax_xent.cuh's block_row_stats_f32, pk::block_sum). Strided
// lanes (channels of NCHW): one thread per lane, reducing along k left to right with the shared
// lane math, neighbouring threads on neighbouring addresses. No atomics: repeatable bit for bit.
#pragma once

#include <stdint.h>

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "backends/native/reduce.cuh"
#include "backends/native/softmax_xent.cuh"
#include "ops/kernels/softmax.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

PK_GLOBAL void softmax_rows_f32(const float* x, float* y, int64_t k, int log) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t r = pk::block_x();
  const float* row = x + r * k;
  float m, lse;
  block_row_stats_f32(row, k, scratch, &m, &lse);
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x())
    y[r * k + i] = log ? kernels::log_softmax_element_f32(row[i], m, lse) : kernels::softmax_element_f32(row[i], m, lse);
}

PK_GLOBAL void softmax_lanes_f32(const float* x, float* y, int64_t outer, int64_t k, int64_t inner, int log) {
  for (int64_t lane = grid_first(); lane < outer * inner; lane += grid_stride()) {
    const int64_t base = (lane / inner) * k * inner + lane % inner;
    const float m = kernels::lane_max_f32(x + base, k, inner);
    const float lse = kernels::lane_log_sum_exp_shifted_f32(x + base, k, inner, m);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t e = base + i * inner;
      y[e] = log ? kernels::log_softmax_element_f32(x[e], m, lse) : kernels::softmax_element_f32(x[e], m, lse);
    }
  }
}

PK_GLOBAL void softmax_bwd_rows_f32(const float* y, const float* dy, float* dx, int64_t k, int log) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t base = int64_t{pk::block_x()} * k;
  float partial = 0.0f;
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x())
    partial += log ? kernels::log_softmax_bwd_term_f32(y[base + i], dy[base + i])
                   : kernels::softmax_bwd_term_f32(y[base + i], dy[base + i]);
  const float sum = pk::block_sum(partial, scratch);
  for (int64_t i = pk::thread_x(); i < k; i += pk::block_dim_x())
    dx[base + i] = log ? kernels::log_softmax_bwd_element_f32(y[base + i], dy[base + i], sum)
                       : kernels::softmax_bwd_element_f32(y[base + i], dy[base + i], sum);
}

PK_GLOBAL void softmax_bwd_lanes_f32(const float* y, const float* dy, float* dx, int64_t outer, int64_t k,
                                     int64_t inner, int log) {
  for (int64_t lane = grid_first(); lane < outer * inner; lane += grid_stride()) {
    const int64_t base = (lane / inner) * k * inner + lane % inner;
    const float sum = kernels::lane_bwd_sum_f32(y + base, dy + base, k, inner, log != 0);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t e = base + i * inner;
      dx[e] = log ? kernels::log_softmax_bwd_element_f32(y[e], dy[e], sum)
                  : kernels::softmax_bwd_element_f32(y[e], dy[e], sum);
    }
  }
}

// The lanes of the node's input 0 along params.softmax's dim (refused when it names no dim).
inline kernels::SoftmaxLanes softmax_lanes_of(const NativeNode& node) {
  const parity_value_desc& x = node.in(0);
  const parity_softmax_params& p = node.desc().params.softmax;
  const int dim = kernels::softmax_dim(p, x.rank);
  if (dim < 0)
    node.fail(PARITY_STATUS_SHAPE, msg(node.label(), ": dim ", p.has_dim ? p.dim : 1, " is outside the ", x.rank,
                                       " dims of value '", x.name, "'"));
  return kernels::softmax_lanes(x.dims, x.rank, dim);
}

// x -> y (log: log_softmax).
inline void run_softmax_forward(const NativeNode& node, int log) {
  if (node.sizing()) return;  // no workspace
  const kernels::SoftmaxLanes l = softmax_lanes_of(node);
  const int64_t count = l.outer * l.k * l.inner;
  node.expect_numel(node.out(0), count);
  const float* x = node.f32_in(0);
  float* y = node.f32_out(0);
  if (!node.launching() || count == 0) return;
  if (l.inner == 1)
    PK_LAUNCH(softmax_rows_f32, pk::dim3(static_cast<unsigned>(l.outer)), pk::dim3(kRowBlock), x, y, l.k, log);
  else
    PK_LAUNCH(softmax_lanes_f32, element_grid(l.outer * l.inner), pk::dim3(kElementBlock), x, y, l.outer, l.k, l.inner,
              log);
}

// y (the forward output), dy -> dx.
inline void run_softmax_backward(const NativeNode& node, int log) {
  if (node.sizing()) return;
  const kernels::SoftmaxLanes l = softmax_lanes_of(node);
  const int64_t count = l.outer * l.k * l.inner;
  node.expect_numel(node.in(1), count);
  node.expect_numel(node.out(0), count);
  const float* y = node.f32_in(0);
  const float* dy = node.f32_in(1);
  float* dx = node.f32_out(0);
  if (!node.launching() || count == 0) return;
  if (l.inner == 1)
    PK_LAUNCH(softmax_bwd_rows_f32, pk::dim3(static_cast<unsigned>(l.outer)), pk::dim3(kRowBlock), y, dy, dx, l.k, log);
  else
    PK_LAUNCH(softmax_bwd_lanes_f32, element_grid(l.outer * l.inner), pk::dim3(kElementBlock), y, dy, dx, l.outer, l.k,
              l.inner, log);
}

inline void run_softmax(const NativeNode& node) { run_softmax_forward(node, 0); }
inline void run_log_softmax(const NativeNode& node) { run_softmax_forward(node, 1); }
inline void run_softmax_bwd(const NativeNode& node) { run_softmax_backward(node, 0); }
inline void run_log_softmax_bwd(const NativeNode& node) { run_softmax_backward(node, 1); }

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
