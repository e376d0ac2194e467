// backends/native/elementwise.cuh — the element-wise kernels: relu, sigmoid and their gradients
// (ops/kernels/activation.h), add, copy (reshape), fill, and the Adam and SGD steps
// (ops/kernels/optimizer.h). Grid-stride loops; one thread owns each element.
#pragma once

#include <stdint.h>

#include "backends/native/launch_shape.cuh"
#include "ops/kernels/activation.h"
#include "ops/kernels/optimizer.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

PK_GLOBAL void fill_f32(float* y, int64_t count, float value) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = value;
}

PK_GLOBAL void copy_f32(const float* x, float* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = x[i];
}

PK_GLOBAL void add_f32(const float* a, const float* b, float* c, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) c[i] = a[i] + b[i];
}

PK_GLOBAL void relu_f32(const float* x, float* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = kernels::relu_f32(x[i]);
}

PK_GLOBAL void relu_bwd_f32(const float* y, const float* dy, float* dx, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) dx[i] = kernels::relu_bwd_f32(y[i], dy[i]);
}

PK_GLOBAL void sigmoid_f32(const float* x, float* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = kernels::sigmoid_f32(x[i]);
}

PK_GLOBAL void sigmoid_bwd_f32(const float* y, const float* dy, float* dx, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) dx[i] = kernels::sigmoid_bwd_f32(y[i], dy[i]);
}

// The step count is read on the device (it is a graph value), and the bias corrections are
// computed per thread from it, as the element math defines them. The bodies are shared with the
// CUDA plugin's variants that also read the hyperparameters from device memory.
PK_DEVICE void adam_step_elements(float* param, const float* grad, float* m, float* v, const int32_t* step,
                                  int64_t count, const parity_adam_params& hp) {
  const int32_t t = step[0];
  const float step_size = kernels::adam_step_size(hp, t);
  const float bias_correction2_sqrt = kernels::adam_bias_correction2_sqrt(hp, t);
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    kernels::adam_update_element(&param[i], grad[i], &m[i], &v[i], hp, step_size, bias_correction2_sqrt);
}

PK_DEVICE void sgd_step_elements(float* param, const float* grad, float* velocity, int64_t count,
                                 const parity_sgd_params& hp) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    kernels::sgd_update_element(&param[i], grad[i], &velocity[i], hp);
}

PK_GLOBAL void adam_step_f32(float* param, const float* grad, float* m, float* v, const int32_t* step, int64_t count,
                             parity_adam_params hp) {
  adam_step_elements(param, grad, m, v, step, count, hp);
}

PK_GLOBAL void sgd_step_f32(float* param, const float* grad, float* velocity, int64_t count, parity_sgd_params hp) {
  sgd_step_elements(param, grad, velocity, count, hp);
}

#define PARITY_NATIVE_ELEMENTWISE(kernel, count, ...) \
  PK_LAUNCH(kernel, element_grid(count), pk::dim3(kElementBlock), __VA_ARGS__)

inline void fill(float* y, int64_t count, float value) { PARITY_NATIVE_ELEMENTWISE(fill_f32, count, y, count, value); }
inline void copy(const float* x, float* y, int64_t count) { PARITY_NATIVE_ELEMENTWISE(copy_f32, count, x, y, count); }
inline void add(const float* a, const float* b, float* c, int64_t count) {
  PARITY_NATIVE_ELEMENTWISE(add_f32, count, a, b, c, count);
}
inline void relu_forward(const float* x, float* y, int64_t count) {
  PARITY_NATIVE_ELEMENTWISE(relu_f32, count, x, y, count);
}
inline void relu_backward(const float* y, const float* dy, float* dx, int64_t count) {
  PARITY_NATIVE_ELEMENTWISE(relu_bwd_f32, count, y, dy, dx, count);
}
inline void sigmoid_forward(const float* x, float* y, int64_t count) {
  PARITY_NATIVE_ELEMENTWISE(sigmoid_f32, count, x, y, count);
}
inline void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t count) {
  PARITY_NATIVE_ELEMENTWISE(sigmoid_bwd_f32, count, y, dy, dx, count);
}
inline void adam_step(float* param, const float* grad, float* m, float* v, const int32_t* step, int64_t count,
                      parity_adam_params hp) {
  PARITY_NATIVE_ELEMENTWISE(adam_step_f32, count, param, grad, m, v, step, count, hp);
}
inline void sgd_step(float* param, const float* grad, float* velocity, int64_t count, parity_sgd_params hp) {
  PARITY_NATIVE_ELEMENTWISE(sgd_step_f32, count, param, grad, velocity, count, hp);
}

#undef PARITY_NATIVE_ELEMENTWISE

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
