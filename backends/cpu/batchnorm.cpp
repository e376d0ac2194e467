// backends/cpu/batchnorm.cpp — batchnorm2d training, evaluation and backward on the cpu backend,
// float32, NCHW: per-channel statistics from per-plane partial sums (one task per (n, c) plane)
// combined over the batch in a fixed pairwise tree, element math from ops/kernels/batchnorm.h.
// A plane's sums run in kLanes lanes (element i in lane i % kLanes), each lane a pairwise sum
// over the plane's blocks of kLanes elements, then the lanes in a fixed halving tree: the
// compiler vectorizes the lanes, and the order depends on the shapes only, so results are
// bitwise identical for any thread count. The partials live in the workspace sized at prepare,
// so a step allocates nothing.
#include <algorithm>
#include <type_traits>

#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/batchnorm.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kMinPlanesPerChunk = 1;
constexpr int64_t kMaxChunks = 4096;
constexpr int64_t kLeaf = 16;  // pairwise sums add up to this many terms in order, then halve

// Pairwise (cascade) sum of term(i) for i in [0, count): log2(count / kLeaf) levels of rounding
// instead of count, in an order fixed by count alone.
template <class Term>
float pairwise_sum(int64_t begin, int64_t count, const Term& term) {
  if (count <= kLeaf) {
    float s = 0.0f;
    for (int64_t i = begin; i < begin + count; ++i) s += term(i);
    return s;
  }
  const int64_t half = count / 2;
  return pairwise_sum(begin, half, term) + pairwise_sum(begin + half, count - half, term);
}

// The lane sums of one plane: kLanes lanes of `terms` sums each.
constexpr int kLanes = 16;
constexpr int64_t kLeafBlocks = 4;  // blocks of kLanes elements a lane adds in order, then halve
template <int terms>
struct LaneSums {
  float v[terms][kLanes];
};

// Lane j of sum k: the pairwise sum, over the blocks [first, first + count) of kLanes elements,
// of term(k, block * kLanes + j); elements at or past `hw` (the last block's tail) add nothing.
// term(std::integral_constant<int, k>, i) gives element i's term of sum k.
template <int terms, class Term>
LaneSums<terms> block_sums(int64_t first, int64_t count, int64_t hw, const Term& term) {
  LaneSums<terms> out{};
  if (count <= kLeafBlocks) {
    for (int64_t b = first; b < first + count; ++b) {
      const int64_t base = b * kLanes, lanes = std::min<int64_t>(kLanes, hw - base);
      if (lanes == kLanes) {
        for (int j = 0; j < kLanes; ++j) out.v[0][j] += term(std::integral_constant<int, 0>{}, base + j);
        if constexpr (terms > 1)
          for (int j = 0; j < kLanes; ++j) out.v[1][j] += term(std::integral_constant<int, 1>{}, base + j);
      } else {
        for (int j = 0; j < lanes; ++j) out.v[0][j] += term(std::integral_constant<int, 0>{}, base + j);
        if constexpr (terms > 1)
          for (int j = 0; j < lanes; ++j) out.v[1][j] += term(std::integral_constant<int, 1>{}, base + j);
      }
    }
    return out;
  }
  const int64_t half = count / 2;
  const LaneSums<terms> a = block_sums<terms>(first, half, hw, term);
  const LaneSums<terms> b = block_sums<terms>(first + half, count - half, hw, term);
  for (int k = 0; k < terms; ++k)
    for (int j = 0; j < kLanes; ++j) out.v[k][j] = a.v[k][j] + b.v[k][j];
  return out;
}

// Sum k over the plane: its lanes added in a halving tree (lane j + lane j + width).
template <int terms>
float lanes_total(LaneSums<terms>& s, int k) {
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) s.v[k][j] += s.v[k][j + width];
  return s.v[k][0];
}

struct Geometry {
  int64_t n, c, hw;
  int64_t planes() const { return n * c; }
  int64_t count() const { return n * hw; }  // elements per channel
};

Geometry geometry(const BoundNode& node) {
  const BoundValue& x = node.in[0];
  return Geometry{x.dims[0], x.dims[1], x.dims[2] * x.dims[3]};
}

// x [N,C,H,W], the [C] inputs `channel_in` and outputs `channel_out`, the [N,C,H,W] ones
// `image_in` and `image_out`; the work split over planes; workspace floats per plane and channel.
int64_t prepare(BoundNode& node, int32_t outputs, std::initializer_list<std::pair<int32_t, const char*>> channel_in,
                std::initializer_list<std::pair<int32_t, const char*>> channel_out,
                std::initializer_list<std::pair<int32_t, const char*>> image_in,
                std::initializer_list<std::pair<int32_t, const char*>> image_out, int64_t plane_floats,
                int64_t channel_floats) {
  expect_arity(node, 5, 5, outputs, outputs);
  expect_value(node, node.in[0], "x", PARITY_F32, 4);
  const int64_t channels[1] = {node.in[0].dims[1]};
  for (const auto& [slot, role] : channel_in) {
    expect_value(node, node.in[slot], role, PARITY_F32, 1);
    expect_dims(node, node.in[slot], role, channels, 1, "[C] of x");
  }
  for (const auto& [slot, role] : channel_out) {
    expect_value(node, node.out[slot], role, PARITY_F32, 1);
    expect_dims(node, node.out[slot], role, channels, 1, "[C] of x");
  }
  for (const auto& [slot, role] : image_in) {
    expect_value(node, node.in[slot], role, PARITY_F32, 4);
    expect_same_shape(node, node.in[0], "x", node.in[slot], role);
  }
  for (const auto& [slot, role] : image_out) {
    expect_value(node, node.out[slot], role, PARITY_F32, 4);
    expect_same_shape(node, node.in[0], "x", node.out[slot], role);
  }
  const Geometry g = geometry(node);
  node.chunk = fixed_chunk_size(g.planes(), kMinPlanesPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(g.planes(), node.chunk);
  return align64(g.planes() * plane_floats * 4) + align64(g.c * channel_floats * 4);
}

float* plane_partials(const BoundNode& node) { return reinterpret_cast<float*>(node.workspace); }
float* channel_values(const BoundNode& node, const Geometry& g, int64_t plane_floats) {
  return reinterpret_cast<float*>(node.workspace + align64(g.planes() * plane_floats * 4));
}

// partial[k][plane] = the lane sums (block_sums, lanes_total) over the plane's H*W elements of
// term(k, plane, i) for the `terms` sums k (at most 2; k as std::integral_constant); plane =
// b * C + c, so partial[k][b * C + c] over b are channel c's.
template <int terms, class Term>
void sum_planes(const BoundNode& node, const Geometry& g, float* partial, const Term& term) {
  static_assert(terms == 1 || terms == 2, "block_sums adds one or two sums");
  const int64_t blocks = (g.hw + kLanes - 1) / kLanes;
  parallel_chunks(g.planes(), node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      LaneSums<terms> lanes = block_sums<terms>(
          0, blocks, g.hw, [&](auto k, int64_t i) { return term(k, plane, plane * g.hw + i); });
      for (int k = 0; k < terms; ++k) partial[k * g.planes() + plane] = lanes_total(lanes, k);
    }
  });
}

// Channel c's total of partial sum k: the pairwise sum of its N plane partials.
float channel_sum(const float* partial, const Geometry& g, int k, int64_t ch) {
  return pairwise_sum(0, g.n, [&](int64_t b) { return partial[k * g.planes() + b * g.c + ch]; });
}

}  // namespace

// ---------------------------------------------------------------- training
// Workspace: 2 partials per plane; per channel the shift m0, delta and invstd * gamma.
int64_t prepare_batchnorm2d_train(BoundNode& node) {
  const int64_t bytes = prepare(node, 3, {{1, "gamma"}, {2, "beta"}, {3, "running_mean"}, {4, "running_var"}},
                                {{1, "saved_mean"}, {2, "saved_invstd"}}, {}, {{0, "y"}}, 2, 3);
  const Geometry g = geometry(node);
  if (node.params.batchnorm2d.convention != PARITY_BATCHNORM_ONNX && g.count() < 2)
    fail(node, "training needs more than 1 value per channel, got N*H*W = " + std::to_string(g.count()));
  return bytes;
}

void run_batchnorm2d_train(const BoundNode& node) {
  const Geometry g = geometry(node);
  const parity_batchnorm2d_params p = node.params.batchnorm2d;
  const float* x = node.in[0].f32();
  const float* gamma = node.in[1].f32();
  const float* beta = node.in[2].f32();
  float* running_mean = node.in[3].f32();
  float* running_var = node.in[4].f32();
  float* y = node.out[0].f32();
  float* partial = plane_partials(node);
  float* shift = channel_values(node, g, 2);
  float* delta = shift + g.c;
  float* scale = delta + g.c;
  const float count = static_cast<float>(g.count());

  sum_planes<1>(node, g, partial, [&](auto, int64_t, int64_t at) { return x[at]; });
  for (int64_t ch = 0; ch < g.c; ++ch) shift[ch] = channel_sum(partial, g, 0, ch) / count;
  sum_planes<2>(node, g, partial, [&](auto k, int64_t plane, int64_t at) {
    const float d = x[at] - shift[plane % g.c];
    if constexpr (decltype(k)::value == 0) return d;
    else return d * d;
  });
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const kernels::BatchnormStats s =
        kernels::batchnorm_stats_f32(shift[ch], channel_sum(partial, g, 0, ch), channel_sum(partial, g, 1, ch), g.count(), p.eps);
    node.out[1].f32()[ch] = s.mean;
    node.out[2].f32()[ch] = s.invstd;
    delta[ch] = s.delta;
    scale[ch] = s.invstd;
    kernels::batchnorm_update_running_f32(&running_mean[ch], &running_var[ch], s, p);
  }
  parallel_chunks(g.planes(), node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t ch = plane % g.c;
      const float m0 = shift[ch], dm = delta[ch], invstd = scale[ch], gm = gamma[ch], bt = beta[ch];
      for (int64_t i = plane * g.hw; i < (plane + 1) * g.hw; ++i)
        y[i] = kernels::batchnorm_normalize_f32(x[i], m0, dm, invstd, gm, bt);
    }
  });
}

// ---------------------------------------------------------------- evaluation
int64_t prepare_batchnorm2d_eval(BoundNode& node) {
  return prepare(node, 1, {{1, "gamma"}, {2, "beta"}, {3, "running_mean"}, {4, "running_var"}}, {}, {}, {{0, "y"}}, 0, 0);
}

void run_batchnorm2d_eval(const BoundNode& node) {
  const Geometry g = geometry(node);
  const float eps = node.params.batchnorm2d.eps;
  const float* x = node.in[0].f32();
  const float* gamma = node.in[1].f32();
  const float* beta = node.in[2].f32();
  const float* mean = node.in[3].f32();
  const float* var = node.in[4].f32();
  float* y = node.out[0].f32();
  parallel_chunks(g.planes(), node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t ch = plane % g.c;
      const float m = mean[ch], invstd = kernels::batchnorm_invstd_f32(var[ch], eps), gm = gamma[ch], bt = beta[ch];
      for (int64_t i = plane * g.hw; i < (plane + 1) * g.hw; ++i)
        y[i] = kernels::batchnorm_normalize_f32(x[i], m, 0.0f, invstd, gm, bt);
    }
  });
}

// ---------------------------------------------------------------- backward
// Workspace: 2 partials per plane (dy, dy * x_hat); per channel invstd, mean(dy), mean(dy x_hat).
int64_t prepare_batchnorm2d_bwd(BoundNode& node) {
  const bool training = node.params.batchnorm2d.training != 0;
  return prepare(node, 3, {{2, "gamma"}, {3, training ? "saved_mean" : "running_mean"},
                           {4, training ? "saved_invstd" : "running_var"}},
                 {{1, "dgamma"}, {2, "dbeta"}}, {{1, "dy"}}, {{0, "dx"}}, 2, 3);
}

void run_batchnorm2d_bwd(const BoundNode& node) {
  const Geometry g = geometry(node);
  const parity_batchnorm2d_params p = node.params.batchnorm2d;
  const bool training = p.training != 0;
  const float* x = node.in[0].f32();
  const float* dy = node.in[1].f32();
  const float* gamma = node.in[2].f32();
  const float* mean = node.in[3].f32();
  const float* stat = node.in[4].f32();
  float* dx = node.out[0].f32();
  float* partial = plane_partials(node);
  float* invstd = channel_values(node, g, 2);
  float* mean_dy = invstd + g.c;
  float* mean_dy_xhat = mean_dy + g.c;
  const float count = static_cast<float>(g.count());

  for (int64_t ch = 0; ch < g.c; ++ch) invstd[ch] = training ? stat[ch] : kernels::batchnorm_invstd_f32(stat[ch], p.eps);
  sum_planes<2>(node, g, partial, [&](auto k, int64_t plane, int64_t at) {
    const int64_t ch = plane % g.c;
    if constexpr (decltype(k)::value == 0) return dy[at];
    else return dy[at] * kernels::batchnorm_xhat_f32(x[at], mean[ch], invstd[ch]);
  });
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float sum_dy = channel_sum(partial, g, 0, ch), sum_dy_xhat = channel_sum(partial, g, 1, ch);
    node.out[1].f32()[ch] = sum_dy_xhat;
    node.out[2].f32()[ch] = sum_dy;
    mean_dy[ch] = sum_dy / count;
    mean_dy_xhat[ch] = sum_dy_xhat / count;
  }
  parallel_chunks(g.planes(), node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t ch = plane % g.c;
      const float m = mean[ch], s = invstd[ch], gs = gamma[ch] * s, a = mean_dy[ch], b = mean_dy_xhat[ch];
      for (int64_t i = plane * g.hw; i < (plane + 1) * g.hw; ++i)
        dx[i] = kernels::batchnorm_dx_f32(dy[i], kernels::batchnorm_xhat_f32(x[i], m, s), gs, a, b, training);
    }
  });
}

}  // namespace cpu
}  // namespace parity
