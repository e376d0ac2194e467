// backends/native/linear.cuh — linear forward and backward (host code, `run_<name>`) on the
// tiled GEMM: y = x w^T + b, dx = dy w, dw = dy^T x, db = column sums of dy (block reduction).
#pragma once

#include "backends/native/gemm.cuh"
#include "backends/native/native_node.h"
#include "backends/native/reduce.cuh"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

inline void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t in,
                           int64_t out) {
  GemmArgs g{x, in, 1, 0, w, 1, in, 0, y, out, 0, b, 0, 1, n, out, in, 0};
  gemm(g, 1);
}

inline void linear_backward_data(const float* dy, const float* w, float* dx, int64_t n, int64_t in, int64_t out) {
  GemmArgs g{dy, out, 1, 0, w, in, 1, 0, dx, in, 0, nullptr, 0, 0, n, in, out, 0};
  gemm(g, 1);
}

inline void linear_backward_weight(const float* x, const float* dy, float* dw, float* db, int64_t n, int64_t in,
                                   int64_t out) {
  GemmArgs g{dy, 1, out, 0, x, in, 1, 0, dw, in, 0, nullptr, 0, 0, out, in, n, 0};
  gemm(g, 1);
  sum_per_channel(dy, db, out, n, out, 1, 1);
}

// x[N,I], w[O,I], b[O] -> y[N,O].
inline void run_linear(const NativeNode& node) {
  if (node.sizing()) return;  // no workspace
  const int64_t in = node.dim(node.in(1), 2, 1), out = node.dim(node.in(1), 2, 0);
  const int64_t n = in ? numel_of(node.in(0)) / in : 0;
  node.expect_numel(node.in(0), n * in);
  node.expect_numel(node.in(2), out);
  node.expect_numel(node.out(0), n * out);
  const float *x = node.f32_in(0), *w = node.f32_in(1), *b = node.f32_in(2);
  float* y = node.f32_out(0);
  if (node.launching()) linear_forward(x, w, b, y, n, in, out);
}

// dy[N,O], w[O,I] -> dx[N,I].
inline void run_linear_bwd_data(const NativeNode& node) {
  if (node.sizing()) return;
  const int64_t in = node.dim(node.in(1), 2, 1), out = node.dim(node.in(1), 2, 0);
  const int64_t n = in ? numel_of(node.out(0)) / in : 0;
  node.expect_numel(node.out(0), n * in);
  node.expect_numel(node.in(0), n * out);
  const float *dy = node.f32_in(0), *w = node.f32_in(1);
  float* dx = node.f32_out(0);
  if (node.launching()) linear_backward_data(dy, w, dx, n, in, out);
}

// x[N,I], dy[N,O] -> dw[O,I], db[O].
inline void run_linear_bwd_weight(const NativeNode& node) {
  if (node.sizing()) return;
  const int64_t in = node.dim(node.out(0), 2, 1), out = node.dim(node.out(0), 2, 0);
  const int64_t n = in ? numel_of(node.in(0)) / in : 0;
  node.expect_numel(node.in(0), n * in);
  node.expect_numel(node.in(1), n * out);
  node.expect_numel(node.out(1), out);
  const float *x = node.f32_in(0), *dy = node.f32_in(1);
  float *dw = node.f32_out(0), *db = node.f32_out(1);
  if (node.launching()) linear_backward_weight(x, dy, dw, db, n, in, out);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
