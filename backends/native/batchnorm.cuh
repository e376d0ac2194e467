// backends/native/batchnorm.cuh — batchnorm2d training, evaluation and backward (kernels and host
// code, `run_<name>`): one block per channel for training and the backward, whose statistics are
// block reductions (fixed trees, no atomics: the same result every run at a given warp size);
// evaluation is element-wise. The math is ops/kernels/batchnorm.h's, as on the cpu backend.
#pragma once

#include <stdint.h>

#include <initializer_list>

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "ops/kernels/batchnorm.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// Element e in [0, n*hw) of channel ch of an [n, channels, hw] tensor.
PK_DEVICE int64_t batchnorm_at(int64_t e, int64_t ch, int64_t channels, int64_t hw) {
  return ((e / hw) * channels + ch) * hw + e % hw;
}

// One block per channel: the mean (pass 1), the sums of d = x - mean and d^2 (pass 2), the saved
// statistics and the running ones (thread 0), then y (pass 3).
PK_GLOBAL void batchnorm2d_train_f32(const float* x, const float* gamma, const float* beta, float* running_mean,
                                     float* running_var, float* y, float* saved_mean, float* saved_invstd, int64_t n,
                                     int64_t channels, int64_t hw, parity_batchnorm2d_params p) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t ch = pk::block_x(), count = n * hw;
  float sum = 0.0f;
  for (int64_t e = pk::thread_x(); e < count; e += pk::block_dim_x()) sum += x[batchnorm_at(e, ch, channels, hw)];
  const float shift = pk::block_sum(sum, scratch) / static_cast<float>(count);
  float sum_d = 0.0f, sum_d2 = 0.0f;
  for (int64_t e = pk::thread_x(); e < count; e += pk::block_dim_x()) {
    const float d = x[batchnorm_at(e, ch, channels, hw)] - shift;
    sum_d += d;
    sum_d2 += d * d;
  }
  sum_d = pk::block_sum(sum_d, scratch);
  sum_d2 = pk::block_sum(sum_d2, scratch);
  const kernels::BatchnormStats s = kernels::batchnorm_stats_f32(shift, sum_d, sum_d2, count, p.eps);
  if (pk::thread_x() == 0) {
    saved_mean[ch] = s.mean;
    saved_invstd[ch] = s.invstd;
    kernels::batchnorm_update_running_f32(&running_mean[ch], &running_var[ch], s, p);
  }
  const float g = gamma[ch], b = beta[ch];
  for (int64_t e = pk::thread_x(); e < count; e += pk::block_dim_x()) {
    const int64_t at = batchnorm_at(e, ch, channels, hw);
    y[at] = kernels::batchnorm_normalize_f32(x[at], shift, s.delta, s.invstd, g, b);
  }
}

PK_GLOBAL void batchnorm2d_eval_f32(const float* x, const float* gamma, const float* beta, const float* running_mean,
                                    const float* running_var, float* y, int64_t total, int64_t channels, int64_t hw,
                                    float eps) {
  for (int64_t i = grid_first(); i < total; i += grid_stride()) {
    const int64_t ch = (i / hw) % channels;
    y[i] = kernels::batchnorm_normalize_f32(x[i], running_mean[ch], 0.0f,
                                            kernels::batchnorm_invstd_f32(running_var[ch], eps), gamma[ch], beta[ch]);
  }
}

// One block per channel: the sums of dy and dy * x_hat, then dx; thread 0 writes dgamma, dbeta.
PK_GLOBAL void batchnorm2d_bwd_f32(const float* x, const float* dy, const float* gamma, const float* mean,
                                   const float* stat, float* dx, float* dgamma, float* dbeta, int64_t n,
                                   int64_t channels, int64_t hw, parity_batchnorm2d_params p) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  const int64_t ch = pk::block_x(), count = n * hw;
  const bool training = p.training != 0;
  const float m = mean[ch], invstd = training ? stat[ch] : kernels::batchnorm_invstd_f32(stat[ch], p.eps);
  float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
  for (int64_t e = pk::thread_x(); e < count; e += pk::block_dim_x()) {
    const int64_t at = batchnorm_at(e, ch, channels, hw);
    sum_dy += dy[at];
    sum_dy_xhat += dy[at] * kernels::batchnorm_xhat_f32(x[at], m, invstd);
  }
  sum_dy = pk::block_sum(sum_dy, scratch);
  sum_dy_xhat = pk::block_sum(sum_dy_xhat, scratch);
  if (pk::thread_x() == 0) {
    dgamma[ch] = sum_dy_xhat;
    dbeta[ch] = sum_dy;
  }
  const float c = static_cast<float>(count), gs = gamma[ch] * invstd, mean_dy = sum_dy / c, mean_dy_xhat = sum_dy_xhat / c;
  for (int64_t e = pk::thread_x(); e < count; e += pk::block_dim_x()) {
    const int64_t at = batchnorm_at(e, ch, channels, hw);
    dx[at] = kernels::batchnorm_dx_f32(dy[at], kernels::batchnorm_xhat_f32(x[at], m, invstd), gs, mean_dy, mean_dy_xhat,
                                       training);
  }
}

// x [N,C,H,W] (input 0), the [C] inputs `channel_inputs` and outputs `channel_outputs`, the
// outputs `image_outputs` of x's size; returns {N, C, H*W}.
struct BatchnormGeometry {
  int64_t n, c, hw;
};
inline BatchnormGeometry batchnorm_geometry(const NativeNode& node, std::initializer_list<int32_t> channel_inputs,
                                            std::initializer_list<int32_t> channel_outputs,
                                            std::initializer_list<int32_t> image_outputs) {
  const parity_value_desc& x = node.in(0);
  const BatchnormGeometry g{node.dim(x, 4, 0), node.dim(x, 4, 1), node.dim(x, 4, 2) * node.dim(x, 4, 3)};
  for (int32_t slot : channel_inputs) node.expect_numel(node.in(slot), g.c);
  for (int32_t slot : channel_outputs) node.expect_numel(node.out(slot), g.c);
  for (int32_t slot : image_outputs) node.expect_numel(node.out(slot), g.n * g.c * g.hw);
  return g;
}

// x, gamma, beta, running_mean, running_var (updated) -> y, saved_mean, saved_invstd.
inline void run_batchnorm2d_train(const NativeNode& node) {
  if (node.sizing()) return;
  const BatchnormGeometry g = batchnorm_geometry(node, {1, 2, 3, 4}, {1, 2}, {0});
  const parity_batchnorm2d_params p = node.desc().params.batchnorm2d;
  if (p.convention != PARITY_BATCHNORM_ONNX && g.n * g.hw < 2)
    node.fail(PARITY_STATUS_INVALID_ARGUMENT, msg(node.label(), ": training needs more than 1 value per channel, got N*H*W = ",
                                                  g.n * g.hw));
  const float* x = node.f32_in(0);
  const float* gamma = node.f32_in(1);
  const float* beta = node.f32_in(2);
  float* running_mean = node.f32_in(3);
  float* running_var = node.f32_in(4);
  float* y = node.f32_out(0);
  float* saved_mean = node.f32_out(1);
  float* saved_invstd = node.f32_out(2);
  if (node.launching() && g.c > 0 && g.n * g.hw > 0)
    PK_LAUNCH(batchnorm2d_train_f32, pk::dim3(static_cast<unsigned>(g.c)), pk::dim3(kElementBlock), x, gamma, beta,
              running_mean, running_var, y, saved_mean, saved_invstd, g.n, g.c, g.hw, p);
}

// x, gamma, beta, running_mean, running_var -> y.
inline void run_batchnorm2d_eval(const NativeNode& node) {
  if (node.sizing()) return;
  const BatchnormGeometry g = batchnorm_geometry(node, {1, 2, 3, 4}, {}, {0});
  const float* x = node.f32_in(0);
  const float* gamma = node.f32_in(1);
  const float* beta = node.f32_in(2);
  const float* mean = node.f32_in(3);
  const float* var = node.f32_in(4);
  float* y = node.f32_out(0);
  const int64_t total = g.n * g.c * g.hw;
  if (node.launching() && total > 0)
    PK_LAUNCH(batchnorm2d_eval_f32, element_grid(total), pk::dim3(kElementBlock), x, gamma, beta, mean, var, y, total,
              g.c, g.hw, node.desc().params.batchnorm2d.eps);
}

// x, dy, gamma, mean, stat -> dx, dgamma, dbeta.
inline void run_batchnorm2d_bwd(const NativeNode& node) {
  if (node.sizing()) return;
  const BatchnormGeometry g = batchnorm_geometry(node, {2, 3, 4}, {1, 2}, {0});
  node.expect_numel(node.in(1), g.n * g.c * g.hw);
  const float* x = node.f32_in(0);
  const float* dy = node.f32_in(1);
  const float* gamma = node.f32_in(2);
  const float* mean = node.f32_in(3);
  const float* stat = node.f32_in(4);
  float* dx = node.f32_out(0);
  float* dgamma = node.f32_out(1);
  float* dbeta = node.f32_out(2);
  if (node.launching() && g.c > 0)
    PK_LAUNCH(batchnorm2d_bwd_f32, pk::dim3(static_cast<unsigned>(g.c)), pk::dim3(kElementBlock), x, dy, gamma, mean,
              stat, dx, dgamma, dbeta, g.n, g.c, g.hw, node.desc().params.batchnorm2d);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
