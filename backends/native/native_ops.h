// backends/native/native_ops.h — the host-side face of the native GPU kernels: one table of
// functions per compiled target (simt at warp 32, simt at warp 64, HIP), each launching the
// kernels of one op on device pointers. Plain C++ (no pk.h), so backends include it freely.
// Shapes are validated by the caller; these functions only launch.
#pragma once

#include <stdint.h>

#include "parity/plugin.h"

namespace parity {
namespace native {

struct ConvShape {
  int64_t n, c, h, w, k, r, s, p, q;
  parity_conv2d_params params;
  // Floats of the workspace (im2col columns for the whole batch) the conv2d functions need.
  int64_t workspace_floats() const { return n * c * r * s * p * q; }
};

struct PoolShape {
  int64_t n, c, h, w, p, q;
  parity_maxpool2d_params params;
};

// The launch functions of each target, X(name, (parameters)): one list makes the table's
// fields, each target's table (native_ops_impl.h) and the CUDA plugin's checks-only table.
// softmax_xent_forward's loss_terms is a workspace of n floats.
#define PARITY_NATIVE_FUNCTIONS(X)                                                                                  \
  X(conv2d_forward, (const float* x, const float* w, const float* b, float* y, const ConvShape& s, float* workspace)) \
  X(conv2d_backward_data, (const float* dy, const float* w, float* dx, const ConvShape& s, float* workspace))       \
  X(conv2d_backward_weight,                                                                                         \
    (const float* x, const float* dy, float* dw, float* db, const ConvShape& s, float* workspace))                  \
  X(linear_forward, (const float* x, const float* w, const float* b, float* y, int64_t n, int64_t in, int64_t out)) \
  X(linear_backward_data, (const float* dy, const float* w, float* dx, int64_t n, int64_t in, int64_t out))        \
  X(linear_backward_weight,                                                                                         \
    (const float* x, const float* dy, float* dw, float* db, int64_t n, int64_t in, int64_t out))                    \
  X(relu_forward, (const float* x, float* y, int64_t count))                                                        \
  X(relu_backward, (const float* y, const float* dy, float* dx, int64_t count))                                     \
  X(maxpool2d_forward, (const float* x, float* y, int32_t* idx, const PoolShape& s))                                \
  X(maxpool2d_backward, (const float* dy, const int32_t* idx, float* dx, const PoolShape& s))                       \
  X(copy, (const float* x, float* y, int64_t count))                                                                \
  X(add, (const float* a, const float* b, float* c, int64_t count))                                                 \
  X(fill, (float* y, int64_t count, float value))                                                                   \
  X(softmax_xent_forward,                                                                                           \
    (const float* logits, const int32_t* labels, float* loss, int64_t n, int64_t k, float* loss_terms))             \
  X(softmax_xent_backward,                                                                                          \
    (const float* logits, const int32_t* labels, const float* dloss, float* dlogits, int64_t n, int64_t k))         \
  X(argmax, (const float* x, int32_t* idx, int64_t n, int64_t k))                                                   \
  X(accuracy, (const float* logits, const int32_t* labels, float* correct, int64_t n, int64_t k))                  \
  X(adam_step, (float* param, const float* grad, float* m, float* v, const int32_t* step, int64_t count,            \
                parity_adam_params hp))                                                                             \
  X(sgd_step, (float* param, const float* grad, float* velocity, int64_t count, parity_sgd_params hp))              \
  X(sigmoid_forward, (const float* x, float* y, int64_t count))                                                     \
  X(sigmoid_backward, (const float* y, const float* dy, float* dx, int64_t count))

struct NativeOps {
  const char* target;  // "simt warp 32", "simt warp 64", "hip"
  int warp_size;       // 0 when it varies by device target (hip)
#define PARITY_NATIVE_FIELD(name, parameters) void(*name) parameters;
  PARITY_NATIVE_FUNCTIONS(PARITY_NATIVE_FIELD)
#undef PARITY_NATIVE_FIELD
};

}  // namespace native
}  // namespace parity
