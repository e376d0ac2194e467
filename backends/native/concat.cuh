// backends/native/concat.cuh — concat along dim 1 and SLICE, its backward (kernels and host code,
// `run_<name>`): a value [N, C, rest...] is N images of C * rest contiguous floats, so each input
// of a concat is one grid-stride copy into its place in every image, and a slice the reverse.
#pragma once

#include <stdint.h>

#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// Element e of a part (images of `block` floats) sits at image_stride * image + skip + e % block
// of the whole: concat writes it there, slice reads it from there.
PK_GLOBAL void copy_into_images_f32(const float* part, float* whole, int64_t count, int64_t block,
                                    int64_t image_stride, int64_t skip) {
  for (int64_t e = grid_first(); e < count; e += grid_stride())
    whole[(e / block) * image_stride + skip + e % block] = part[e];
}

PK_GLOBAL void copy_from_images_f32(const float* whole, float* part, int64_t count, int64_t block,
                                    int64_t image_stride, int64_t skip) {
  for (int64_t e = grid_first(); e < count; e += grid_stride())
    part[e] = whole[(e / block) * image_stride + skip + e % block];
}

// The floats after dim 1 of v, which must have rank >= 2 (1 for [N,F]).
inline int64_t rest_after_dim1(const NativeNode& node, const parity_value_desc& v) {
  if (v.rank < 2)
    node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": value '", v.name, "' must have rank >= 2 (dim 1 is joined)"));
  int64_t rest = 1;
  for (int32_t i = 2; i < v.rank; ++i) rest *= v.dims[i];
  return rest;
}

// x_0 .. x_{k-1} -> y: each input's images copied into y's at their offset along dim 1.
inline void run_concat(const NativeNode& node) {
  if (node.sizing()) return;  // no workspace
  const parity_value_desc& y = node.out(0);
  const int64_t rest = rest_after_dim1(node, y), images = y.dims[0];
  float* out = node.f32_out(0);
  int64_t offset = 0;
  for (int32_t i = 0; i < node.desc().num_inputs; ++i) {
    const parity_value_desc& x = node.in(i);
    const int64_t channels = x.rank == y.rank ? x.dims[1] : -1;
    if (channels < 0 || offset + channels > y.dims[1])
      node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": input '", x.name, "' ", shape_str(x.rank, x.dims),
                                            " does not fit output '", y.name, "' ", shape_str(y.rank, y.dims)));
    node.expect_numel(x, images * channels * rest);
    const float* part = node.f32_in(i);
    if (node.launching() && images * channels * rest > 0)
      PK_LAUNCH(copy_into_images_f32, element_grid(images * channels * rest), pk::dim3(kElementBlock), part, out,
                images * channels * rest, channels * rest, y.dims[1] * rest, offset * rest);
    offset += channels;
  }
  if (offset != y.dims[1])
    node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": the inputs' dim 1 sum to ", offset, ", output '", y.name,
                                          "' has ", y.dims[1]));
}

// x -> y = x[:, start : start + length].
inline void run_slice(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc& x = node.in(0);
  const parity_slice_params& p = node.desc().params.slice;
  const int64_t rest = rest_after_dim1(node, x);
  if (p.start < 0 || p.length < 1 || int64_t{p.start} + p.length > x.dims[1])
    node.fail(PARITY_STATUS_SHAPE, msg(node.label(), ": start ", p.start, " and length ", p.length,
                                       " do not lie inside dim 1 of value '", x.name, "' ", shape_str(x.rank, x.dims)));
  const int64_t count = x.dims[0] * p.length * rest;
  node.expect_numel(node.out(0), count);
  const float* whole = node.f32_in(0);
  float* part = node.f32_out(0);
  if (node.launching() && count > 0)
    PK_LAUNCH(copy_from_images_f32, element_grid(count), pk::dim3(kElementBlock), whole, part, count, p.length * rest,
              x.dims[1] * rest, p.start * rest);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
