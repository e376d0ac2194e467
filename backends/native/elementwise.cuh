// backends/native/elementwise.cuh — the element-wise ops, kernels and host code (`run_<name>`,
// native_node.h): relu, sigmoid, tanh, leaky_relu, gelu, hardtanh and their gradients
// (ops/kernels/activation.h), reshape (a
// copy), fill, and the Adam and SGD steps (ops/kernels/optimizer.h). Grid-stride loops; one
// thread owns each element. The activations, their gradients and reshape take f32, bf16 or f16
// values (templated on the storage type); fill and the optimizer steps f32.
#pragma once

#include <stdint.h>

#include "backends/native/half_storage.h"
#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/optimizer.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

PK_GLOBAL void fill_f32(float* y, int64_t count, float value) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = value;
}

// The element-wise kernels are templated on the storage type T of their values (float, pk::bf16,
// pk::f16: backends/native/half_storage.h): each element is loaded as a float, computed in f32 by
// the shared element math, and stored rounded once to T. T = float is the f32 kernel as it was.
template <class T>
PK_GLOBAL void copy_values(const T* x, T* y, int64_t count) {  // the bits, NaN payloads and all
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = x[i];
}

template <class T>
PK_GLOBAL void relu_values(const T* x, T* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) pk::store(y, i, kernels::relu_f32(pk::load(x, i)));
}

template <class T>
PK_GLOBAL void relu_bwd_values(const T* y, const T* dy, T* dx, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(dx, i, kernels::relu_bwd_f32(pk::load(y, i), pk::load(dy, i)));
}

template <class T>
PK_GLOBAL void sigmoid_values(const T* x, T* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) pk::store(y, i, kernels::sigmoid_f32(pk::load(x, i)));
}

template <class T>
PK_GLOBAL void sigmoid_bwd_values(const T* y, const T* dy, T* dx, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(dx, i, kernels::sigmoid_bwd_f32(pk::load(y, i), pk::load(dy, i)));
}

template <class T>
PK_GLOBAL void tanh_values(const T* x, T* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) pk::store(y, i, kernels::tanh_f32(pk::load(x, i)));
}

template <class T>
PK_GLOBAL void tanh_bwd_values(const T* y, const T* dy, T* dx, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(dx, i, kernels::tanh_bwd_f32(pk::load(y, i), pk::load(dy, i)));
}

template <class T>
PK_GLOBAL void leaky_relu_values(const T* x, T* y, parity_leaky_relu_params p, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(y, i, kernels::leaky_relu_f32(pk::load(x, i), p.negative_slope));
}

template <class T>
PK_GLOBAL void leaky_relu_bwd_values(const T* x, const T* dy, T* dx, parity_leaky_relu_params p, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(dx, i, kernels::leaky_relu_bwd_f32(pk::load(x, i), pk::load(dy, i), p.negative_slope));
}

template <class T>
PK_GLOBAL void gelu_values(const T* x, T* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) pk::store(y, i, kernels::gelu_f32(pk::load(x, i)));
}

template <class T>
PK_GLOBAL void gelu_bwd_values(const T* x, const T* dy, T* dx, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(dx, i, kernels::gelu_bwd_f32(pk::load(x, i), pk::load(dy, i)));
}

template <class T>
PK_GLOBAL void hardtanh_values(const T* x, T* y, parity_hardtanh_params p, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(y, i, kernels::hardtanh_f32(pk::load(x, i), p.min_val, p.max_val));
}

template <class T>
PK_GLOBAL void hardtanh_bwd_values(const T* x, const T* dy, T* dx, parity_hardtanh_params p, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    pk::store(dx, i, kernels::hardtanh_bwd_f32(pk::load(x, i), pk::load(dy, i), p.min_val, p.max_val));
}

// The step count is read on the device (it is a graph value), and the bias corrections are
// computed per thread from it, as the element math defines them. The bodies are shared with the
// CUDA plugin's variants that also read the hyperparameters from device memory.
PK_DEVICE void adam_step_elements(float* param, const float* grad, float* m, float* v, const int32_t* step,
                                  int64_t count, const parity_adam_params& hp) {
  const int32_t t = step[0];
  const float step_size = kernels::adam_step_size(hp, t);
  const float bias_correction2_sqrt = kernels::adam_bias_correction2_sqrt(hp, t);
  const float decay_factor = kernels::adamw_decay_factor(hp, t);
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    kernels::adam_update_element(&param[i], grad[i], &m[i], &v[i], hp, step_size, bias_correction2_sqrt, decay_factor);
}

PK_DEVICE void sgd_step_elements(float* param, const float* grad, float* velocity, const int32_t* step, int64_t count,
                                 const parity_sgd_params& hp) {
  const float lr = kernels::sgd_lr(hp, step[0]);
  for (int64_t i = grid_first(); i < count; i += grid_stride())
    kernels::sgd_update_element(&param[i], grad[i], &velocity[i], hp, lr);
}

PK_GLOBAL void adam_step_f32(float* param, const float* grad, float* m, float* v, const int32_t* step, int64_t count,
                             parity_adam_params hp) {
  adam_step_elements(param, grad, m, v, step, count, hp);
}

PK_GLOBAL void sgd_step_f32(float* param, const float* grad, float* velocity, const int32_t* step, int64_t count,
                            parity_sgd_params hp) {
  sgd_step_elements(param, grad, velocity, step, count, hp);
}

#define PARITY_NATIVE_ELEMENTWISE(kernel, count, ...) \
  PK_LAUNCH(kernel, element_grid(count), pk::dim3(kElementBlock), __VA_ARGS__)

// y[0, count) = value: the FILL op's kernel, also the CUDA plugin's vector of ones (NativeOps::fill).
inline void fill(float* y, int64_t count, float value) { PARITY_NATIVE_ELEMENTWISE(fill_f32, count, y, count, value); }

// The operands of an element-wise node: `inputs` inputs (x; or y, dy; or a, b) and one output,
// all of one size and one dtype (f32, bf16 or f16: the op's rule makes them one). `b` is null for
// one input.
struct ElementwiseOperands {
  const void* a;
  const void* b;
  void* out;
  int64_t count;
  parity_dtype dtype;
};
inline ElementwiseOperands elementwise_operands(const NativeNode& node, int32_t inputs) {
  const int64_t count = numel_of(node.in(0));
  const parity_dtype dtype = node.in(0).dtype;
  for (int32_t slot = 1; slot < inputs; ++slot) node.expect_numel(node.in(slot), count);
  node.expect_numel(node.out(0), count);
  if (!is_half(dtype))
    return ElementwiseOperands{node.f32_in(0), inputs > 1 ? node.f32_in(1) : nullptr, node.f32_out(0), count, dtype};
  for (int32_t slot = 1; slot < inputs; ++slot) node.expect_dtype(node.in_index(slot), dtype);
  node.expect_dtype(node.out_index(0), dtype);
  return ElementwiseOperands{node.half_in(0), inputs > 1 ? node.half_in(1) : nullptr, node.half_out(0), count, dtype};
}

// run_<name> of an element-wise op with `inputs` inputs: the kernel template `kernel<T>` for the
// operands' storage type T gets the operands a, b (inputs 2) and out in the order listed, then
// the count. An op with params lists its params struct after the operands
// (node.desc().params.<op>), passed by value. No workspace. Half operands run here directly
// (cast.cuh's run_any_dtype does not widen these ops: takes_half_itself).
#define PARITY_NATIVE_ELEMENTWISE_OP(name, kernel, inputs, ...)                                         \
  template <class T>                                                                                     \
  inline void launch_##name(const NativeNode& node, const ElementwiseOperands& o) {                      \
    const T* a = static_cast<const T*>(o.a);                                                             \
    const T* b = static_cast<const T*>(o.b);                                                             \
    T* out = static_cast<T*>(o.out);                                                                     \
    (void)a, (void)b, (void)node;                                                                        \
    PARITY_NATIVE_ELEMENTWISE(kernel<T>, o.count, __VA_ARGS__, o.count);                                 \
  }                                                                                                      \
  inline void run_##name(const NativeNode& node) {                                                       \
    if (node.sizing()) return;                                                                           \
    const ElementwiseOperands o = elementwise_operands(node, inputs);                                     \
    if (!node.launching()) return;                                                                       \
    if (o.dtype == PARITY_BF16) launch_##name<pk::bf16>(node, o);                                        \
    else if (o.dtype == PARITY_F16) launch_##name<pk::f16>(node, o);                                     \
    else launch_##name<float>(node, o);                                                                  \
  }

PARITY_NATIVE_ELEMENTWISE_OP(relu, relu_values, 1, a, out)
PARITY_NATIVE_ELEMENTWISE_OP(relu_bwd, relu_bwd_values, 2, a, b, out)  // y, dy -> dx
PARITY_NATIVE_ELEMENTWISE_OP(sigmoid, sigmoid_values, 1, a, out)
PARITY_NATIVE_ELEMENTWISE_OP(sigmoid_bwd, sigmoid_bwd_values, 2, a, b, out)  // y, dy -> dx
PARITY_NATIVE_ELEMENTWISE_OP(tanh, tanh_values, 1, a, out)
PARITY_NATIVE_ELEMENTWISE_OP(tanh_bwd, tanh_bwd_values, 2, a, b, out)  // y, dy -> dx
PARITY_NATIVE_ELEMENTWISE_OP(leaky_relu, leaky_relu_values, 1, a, out, node.desc().params.leaky_relu)
PARITY_NATIVE_ELEMENTWISE_OP(leaky_relu_bwd, leaky_relu_bwd_values, 2, a, b, out,
                             node.desc().params.leaky_relu)  // x, dy -> dx
PARITY_NATIVE_ELEMENTWISE_OP(gelu, gelu_values, 1, a, out)
PARITY_NATIVE_ELEMENTWISE_OP(gelu_bwd, gelu_bwd_values, 2, a, b, out)  // x, dy -> dx
PARITY_NATIVE_ELEMENTWISE_OP(hardtanh, hardtanh_values, 1, a, out, node.desc().params.hardtanh)
PARITY_NATIVE_ELEMENTWISE_OP(hardtanh_bwd, hardtanh_bwd_values, 2, a, b, out,
                             node.desc().params.hardtanh)  // x, dy -> dx
PARITY_NATIVE_ELEMENTWISE_OP(reshape, copy_values, 1, a, out)

inline void run_fill(const NativeNode& node) {
  if (node.sizing()) return;
  float* y = node.f32_out(0);
  if (node.launching()) fill(y, numel_of(node.out(0)), node.desc().params.fill.value);
}

// The 1-based step count in input `slot`, checked when the host has it (its device copy is what
// the kernel reads).
inline const int32_t* step_count_in(const NativeNode& node, int32_t slot, const char* counts) {
  node.expect_numel(node.in(slot), 1);
  if (const int32_t* host = node.host_i32_in(slot))
    if (host[0] < 1)
      node.fail(PARITY_STATUS_INVALID_ARGUMENT,
                msg(node.label(), ": step ", host[0], " in value '", node.in(slot).name, "' must be >= 1 (", counts, ")"));
  return node.i32_in(slot);
}

// param, grad, m, v of one size, step[1] i32 >= 1.
inline void run_adam_step(const NativeNode& node) {
  if (node.sizing()) return;
  const int64_t count = numel_of(node.in(0));
  for (int32_t slot = 1; slot <= 3; ++slot) node.expect_numel(node.in(slot), count);
  const int32_t* step = step_count_in(node, 4, "Adam counts steps from 1");
  float* param = node.f32_in(0);
  const float* grad = node.f32_in(1);
  float* m = node.f32_in(2);
  float* v = node.f32_in(3);
  const parity_adam_params hp = node.desc().params.adam;
  if (node.launching()) PARITY_NATIVE_ELEMENTWISE(adam_step_f32, count, param, grad, m, v, step, count, hp);
}

// param, grad, velocity of one size, step[1] i32 >= 1 (the schedule's clock).
inline void run_sgd_step(const NativeNode& node) {
  if (node.sizing()) return;
  const int64_t count = numel_of(node.in(0));
  for (int32_t slot = 1; slot <= 2; ++slot) node.expect_numel(node.in(slot), count);
  const int32_t* step = step_count_in(node, 3, "the schedule counts steps from 1");
  float* param = node.f32_in(0);
  const float* grad = node.f32_in(1);
  float* velocity = node.f32_in(2);
  const parity_sgd_params hp = node.desc().params.sgd;
  if (node.launching()) PARITY_NATIVE_ELEMENTWISE(sgd_step_f32, count, param, grad, velocity, step, count, hp);
}

#undef PARITY_NATIVE_ELEMENTWISE

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
