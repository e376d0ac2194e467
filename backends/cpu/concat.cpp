// backends/cpu/concat.cpp — concat along dim 1 and SLICE (its backward) on the cpu backend,
// float32: a value [N, C, rest...] is N blocks of C * rest contiguous floats, so both are one
// memcpy per (image, input): a task per chunk of images.
#include <cstring>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kMinElementsPerChunk = 16384;
constexpr int64_t kMaxChunks = 256;

// The floats after dim 1 (1 for [N,F]).
int64_t rest_of(const BoundValue& v) {
  int64_t rest = 1;
  for (int32_t i = 2; i < v.rank; ++i) rest *= v.dims[i];
  return rest;
}

void split_images(BoundNode& node, const BoundValue& joined) {
  const int64_t per_image = joined.dims[1] * rest_of(joined);
  node.chunk = fixed_chunk_size(joined.dims[0], (kMinElementsPerChunk + per_image - 1) / (per_image > 0 ? per_image : 1),
                                kMaxChunks);
  node.num_chunks = chunk_count(joined.dims[0], node.chunk);
}

// Every dim of `part` but dim 1 must be `joined`'s.
void expect_same_but_dim1(const BoundNode& node, const BoundValue& part, const char* role, const BoundValue& joined) {
  int64_t dims[PARITY_MAX_RANK];
  for (int32_t i = 0; i < joined.rank; ++i) dims[i] = i == 1 ? part.dims[1] : joined.dims[i];
  expect_dims(node, part, role, dims, joined.rank, "every dim but dim 1 as the concatenation's");
}

}  // namespace

int64_t prepare_concat(BoundNode& node) {
  expect_arity(node, 1, PARITY_MAX_NODE_INPUTS, 1, 1);
  const BoundValue& y = node.out[0];
  expect_value(node, y, "y", PARITY_F32, -1);
  if (y.rank < 2) fail(node, "y ('" + std::string(y.name) + "') must have rank >= 2, got " + y.shape_str());
  int64_t channels = 0;
  for (int32_t i = 0; i < node.num_inputs; ++i) {
    const std::string role = "input " + std::to_string(i);
    expect_value(node, node.in[i], role.c_str(), PARITY_F32, y.rank);
    expect_same_but_dim1(node, node.in[i], role.c_str(), y);
    channels += node.in[i].dims[1];
  }
  if (channels != y.dims[1])
    fail(node, "the inputs' dim 1 sum to " + std::to_string(channels) + ", y " + y.shape_str() + " has " +
                   std::to_string(y.dims[1]));
  split_images(node, y);
  return 0;
}

void run_concat(const BoundNode& node) {
  const BoundValue& y = node.out[0];
  const int64_t rest = rest_of(y), y_image = y.dims[1] * rest;
  parallel_chunks(y.dims[0], node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      float* out = y.f32() + n * y_image;
      for (int32_t i = 0; i < node.num_inputs; ++i) {
        const int64_t block = node.in[i].dims[1] * rest;
        std::memcpy(out, node.in[i].f32() + n * block, static_cast<size_t>(block) * sizeof(float));
        out += block;
      }
    }
  });
}

int64_t prepare_slice(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  const BoundValue& x = node.in[0];
  expect_value(node, x, "x", PARITY_F32, -1);
  expect_value(node, node.out[0], "y", PARITY_F32, x.rank);
  const parity_slice_params& p = node.params.slice;
  if (x.rank < 2 || p.start < 0 || p.length < 1 || int64_t{p.start} + p.length > x.dims[1])
    fail(node, "start " + std::to_string(p.start) + " and length " + std::to_string(p.length) +
                   " must lie inside dim 1 of x " + x.shape_str());
  expect_same_but_dim1(node, node.out[0], "y", x);
  if (node.out[0].dims[1] != p.length)
    fail(node, "y " + node.out[0].shape_str() + " must have dim 1 = length " + std::to_string(p.length));
  split_images(node, x);
  return 0;
}

void run_slice(const BoundNode& node) {
  const BoundValue& x = node.in[0];
  const int64_t rest = rest_of(x), x_image = x.dims[1] * rest;
  const int64_t block = node.params.slice.length * rest, skip = node.params.slice.start * rest;
  parallel_chunks(x.dims[0], node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      std::memcpy(node.out[0].f32() + n * block, x.f32() + n * x_image + skip, static_cast<size_t>(block) * sizeof(float));
  });
}

}  // namespace cpu
}  // namespace parity
