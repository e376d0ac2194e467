// backends/native/broadcast.cuh — add and mul with broadcasting (ops/kernels/broadcast.h: each
// operand's stride is 0 along the dims it broadcasts; equal shapes take the plain loop; f32, bf16
// or f16 values, the kernels templated on the storage type),
// reduce_sum (one block per output element, a fixed tree: the same bits every run at a given
// warp size), and clip_coef (one thread), kernels and host code (`run_<name>`, native_node.h).
#pragma once

#include <stdint.h>

#include "backends/native/half_storage.h"
#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"
#include "ops/kernels/broadcast.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

struct AddOp {
  PARITY_HD float operator()(float a, float b) const { return a + b; }
};
struct MulOp {
  PARITY_HD float operator()(float a, float b) const { return a * b; }
};

// Templated on the storage type T of a, b and c (float, pk::bf16, pk::f16: half_storage.h): the
// operands loaded as floats, one f32 operation, the result stored rounded once.
template <class Op, class T>
PK_GLOBAL void binary_same_shape(const T* a, const T* b, T* c, int64_t count) {
  const Op op;
  for (int64_t i = grid_first(); i < count; i += grid_stride()) pk::store(c, i, op(pk::load(a, i), pk::load(b, i)));
}

template <class Op, class T>
PK_GLOBAL void binary_broadcast(const T* a, const T* b, T* c, kernels::BroadcastShape shape, int64_t count) {
  const Op op;
  for (int64_t i = grid_first(); i < count; i += grid_stride()) {
    int64_t offset_a = 0, offset_b = 0;
    kernels::broadcast_offsets(shape, i, &offset_a, &offset_b);
    pk::store(c, i, op(pk::load(a, offset_a), pk::load(b, offset_b)));
  }
}

inline bool same_dims(const parity_value_desc& a, const parity_value_desc& b) {
  if (a.rank != b.rank) return false;
  for (int32_t d = 0; d < a.rank; ++d)
    if (a.dims[d] != b.dims[d]) return false;
  return true;
}

// The launch of run_broadcast for storage type T; `shape` null for equal shapes. (Through
// pointers: the macros would split the templates' argument lists at their commas.)
template <class Op, class T>
void launch_broadcast(const void* a, const void* b, void* c, const kernels::BroadcastShape* shape, int64_t count) {
  const T* pa = static_cast<const T*>(a);
  const T* pb = static_cast<const T*>(b);
  T* pc = static_cast<T*>(c);
  if (!shape) {
    void (*const kernel)(const T*, const T*, T*, int64_t) = binary_same_shape<Op, T>;
    PK_LAUNCH(kernel, element_grid(count), pk::dim3(kElementBlock), pa, pb, pc, count);
    return;
  }
  void (*const kernel)(const T*, const T*, T*, kernels::BroadcastShape, int64_t) = binary_broadcast<Op, T>;
  PK_LAUNCH(kernel, element_grid(count), pk::dim3(kElementBlock), pa, pb, pc, *shape, count);
}

// a, b -> c of one dtype (f32, bf16 or f16): equal shapes, or one rank with each dim of a and b
// c's or 1.
template <class Op>
void run_broadcast(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc& a = node.in(0);
  const parity_value_desc& b = node.in(1);
  const parity_value_desc& c = node.out(0);
  const bool half = is_half(a.dtype);
  if (half) {
    node.expect_dtype(node.in_index(1), a.dtype);
    node.expect_dtype(node.out_index(0), a.dtype);
  }
  const void* pa = half ? node.half_in(0) : node.f32_in(0);
  const void* pb = half ? node.half_in(1) : node.f32_in(1);
  void* pc = half ? node.half_out(0) : node.f32_out(0);
  const int64_t count = numel_of(c);
  const bool same = same_dims(a, c) && same_dims(b, c);
  bool broadcasts = same || (a.rank == c.rank && b.rank == c.rank);
  for (int32_t d = 0; !same && broadcasts && d < c.rank; ++d)
    broadcasts = (a.dims[d] == c.dims[d] || a.dims[d] == 1) && (b.dims[d] == c.dims[d] || b.dims[d] == 1) &&
                 c.dims[d] == (a.dims[d] > b.dims[d] ? a.dims[d] : b.dims[d]);
  if (!broadcasts)
    node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": ", shape_str(a.rank, a.dims), " and ",
                                          shape_str(b.rank, b.dims), " do not broadcast to ", shape_str(c.rank, c.dims)));
  const kernels::BroadcastShape shape = kernels::make_broadcast_shape(c.rank, a.dims, b.dims);
  if (!node.launching()) return;
  const kernels::BroadcastShape* broadcast = same ? nullptr : &shape;
  if (a.dtype == PARITY_BF16) launch_broadcast<Op, pk::bf16>(pa, pb, pc, broadcast, count);
  else if (a.dtype == PARITY_F16) launch_broadcast<Op, pk::f16>(pa, pb, pc, broadcast, count);
  else launch_broadcast<Op, float>(pa, pb, pc, broadcast, count);
}

inline void run_add(const NativeNode& node) { run_broadcast<AddOp>(node); }
inline void run_mul(const NativeNode& node) { run_broadcast<MulOp>(node); }

// One block per output element (blocks loop past the grid): each thread sums a strided share
// of the element's terms, then block_sum adds the shares in a fixed tree.
PK_GLOBAL void reduce_sum_f32(const float* x, float* y, kernels::ReduceShape shape) {
  PK_SHARED(float, scratch, pk::kMaxWarpsPerBlock);
  for (int64_t o = pk::block_x(); o < shape.outputs; o += pk::grid_dim_x()) {
    float partial = 0.0f;
    for (int64_t t = pk::thread_x(); t < shape.terms; t += pk::block_dim_x())
      partial += x[kernels::reduce_offset(shape, o, t)];
    const float total = pk::block_sum(partial, scratch);
    if (pk::thread_x() == 0) y[o] = total;
  }
}

constexpr int64_t kMaxReduceBlocks = 65535;

inline void run_reduce_sum(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc& x = node.in(0);
  const parity_value_desc& y = node.out(0);
  const uint32_t dims = node.desc().params.reduce_sum.dims;
  bool reduces = y.rank == x.rank && dims != 0 && (dims >> x.rank) == 0;
  for (int32_t d = 0; reduces && d < x.rank; ++d) reduces = y.dims[d] == (((dims >> d) & 1u) ? 1 : x.dims[d]);
  if (!reduces)
    node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": dims mask ", dims, " does not reduce ",
                                          shape_str(x.rank, x.dims), " to ", shape_str(y.rank, y.dims)));
  const float* px = node.f32_in(0);
  float* py = node.f32_out(0);
  const kernels::ReduceShape shape = kernels::make_reduce_shape(x.rank, x.dims, dims);
  if (!node.launching() || shape.outputs == 0) return;
  const int threads = shape.terms >= kElementBlock ? kElementBlock : kRowBlock;
  const int64_t blocks = shape.outputs < kMaxReduceBlocks ? shape.outputs : kMaxReduceBlocks;
  PK_LAUNCH(reduce_sum_f32, pk::dim3(static_cast<unsigned>(blocks)), pk::dim3(threads), px, py, shape);
}

PK_GLOBAL void clip_coef_f32(const float* sum_of_squares, float* coef, float max_norm) {
  if (grid_first() == 0) coef[0] = kernels::clip_coef_f32(sum_of_squares[0], max_norm);
}

inline void run_clip_coef(const NativeNode& node) {
  if (node.sizing()) return;
  node.expect_numel(node.in(0), 1);
  node.expect_numel(node.out(0), 1);
  const float* sum_of_squares = node.f32_in(0);
  float* coef = node.f32_out(0);
  const float max_norm = node.desc().params.clip_coef.max_norm;
  if (node.launching()) PK_LAUNCH(clip_coef_f32, pk::dim3(1), pk::dim3(pk::kWarpSize), sum_of_squares, coef, max_norm);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
