// backends/cpu/softmax.cpp — softmax, log_softmax and their backwards on the cpu backend, float32,
// over any one dim: the tensor as lanes [outer, k, inner] (ops/kernels/softmax.h), each lane
// reduced left to right with that header's math. Rows (inner == 1) run a task per chunk of
// rows; strided lanes (channels of NCHW) a task per chunk of (outer, block of kLaneBlock
// neighbouring lanes), whose per-lane maxima and sums live on the stack and advance together
// along k, so the inner loops are contiguous. Every lane's arithmetic is the same in both paths
// and for any split: bitwise repeatable, no scratch, nothing allocated at run time.
#include <algorithm>

#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/softmax.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kMinElementsPerChunk = 4096;
constexpr int64_t kMaxChunks = 256;
constexpr int64_t kLaneBlock = 64;  // neighbouring strided lanes one task advances together

kernels::SoftmaxLanes lanes_of(const BoundNode& node) {
  const BoundValue& x = node.in[0];
  return kernels::softmax_lanes(x.dims, x.rank, kernels::softmax_dim(node.params.softmax, x.rank));
}

// Work items: rows when inner == 1, else (outer, lane block) pairs; chunks of them.
int64_t work_items(const kernels::SoftmaxLanes& l) {
  return l.inner == 1 ? l.outer : l.outer * ((l.inner + kLaneBlock - 1) / kLaneBlock);
}

// Checks the dim and the shapes (first: x or y, then dy for the backwards), fixes the split.
int64_t prepare(BoundNode& node, bool backward) {
  expect_arity(node, backward ? 2 : 1, backward ? 2 : 1, 1, 1);
  const char* first = backward ? "y" : "x";
  expect_value(node, node.in[0], first, PARITY_F32, -1);
  if (backward) {
    expect_value(node, node.in[1], "dy", PARITY_F32, -1);
    expect_same_shape(node, node.in[0], first, node.in[1], "dy");
  }
  expect_value(node, node.out[0], backward ? "dx" : "y", PARITY_F32, -1);
  expect_same_shape(node, node.in[0], first, node.out[0], backward ? "dx" : "y");
  const parity_softmax_params& p = node.params.softmax;
  if (kernels::softmax_dim(p, node.in[0].rank) < 0)
    fail(node, "dim " + std::to_string(p.has_dim ? p.dim : 1) + " must name one of the dims of " + first + " " +
                   node.in[0].shape_str());
  const kernels::SoftmaxLanes l = lanes_of(node);
  const int64_t items = work_items(l);
  const int64_t per_item = l.k * (l.inner == 1 ? 1 : std::min(l.inner, kLaneBlock));
  node.chunk = fixed_chunk_size(items, (kMinElementsPerChunk + per_item - 1) / per_item, kMaxChunks);
  node.num_chunks = chunk_count(items, node.chunk);
  return 0;
}

// Runs lanes(base, count) over every block of `count` neighbouring lanes starting at element
// `base` (count == 1 for rows), each block once, chunked by the node's split.
template <class Lanes>
void for_each_lane_block(const BoundNode& node, const kernels::SoftmaxLanes& l, const Lanes& lanes) {
  const int64_t blocks = l.inner == 1 ? 1 : (l.inner + kLaneBlock - 1) / kLaneBlock;
  parallel_chunks(work_items(l), node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t o = item / blocks, j0 = (item % blocks) * kLaneBlock;
      const int64_t count = l.inner == 1 ? 1 : std::min(kLaneBlock, l.inner - j0);
      lanes(o * l.k * l.inner + j0, count);
    }
  });
}

void run_forward(const BoundNode& node, bool log) {
  const kernels::SoftmaxLanes l = lanes_of(node);
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  const int64_t k = l.k, inner = l.inner;
  for_each_lane_block(node, l, [&](int64_t base, int64_t count) {
    float m[kLaneBlock], lse[kLaneBlock];
    for (int64_t j = 0; j < count; ++j) m[j] = x[base + j];
    for (int64_t i = 1; i < k; ++i)
      for (int64_t j = 0; j < count; ++j) m[j] = kernels::max_propagate_nan_f32(m[j], x[base + i * inner + j]);
    for (int64_t j = 0; j < count; ++j) lse[j] = 0.0f;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < count; ++j) lse[j] += kernels::exp_shifted_f32(x[base + i * inner + j], m[j]);
    for (int64_t j = 0; j < count; ++j) lse[j] = logf(lse[j]);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < count; ++j) {
        const int64_t e = base + i * inner + j;
        y[e] = log ? kernels::log_softmax_element_f32(x[e], m[j], lse[j])
                   : kernels::softmax_element_f32(x[e], m[j], lse[j]);
      }
  });
}

void run_backward(const BoundNode& node, bool log) {
  const kernels::SoftmaxLanes l = lanes_of(node);
  const float* y = node.in[0].f32();
  const float* dy = node.in[1].f32();
  float* dx = node.out[0].f32();
  const int64_t k = l.k, inner = l.inner;
  for_each_lane_block(node, l, [&](int64_t base, int64_t count) {
    float sum[kLaneBlock];
    for (int64_t j = 0; j < count; ++j) sum[j] = 0.0f;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < count; ++j) {
        const int64_t e = base + i * inner + j;
        sum[j] += log ? kernels::log_softmax_bwd_term_f32(y[e], dy[e]) : kernels::softmax_bwd_term_f32(y[e], dy[e]);
      }
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < count; ++j) {
        const int64_t e = base + i * inner + j;
        dx[e] = log ? kernels::log_softmax_bwd_element_f32(y[e], dy[e], sum[j])
                    : kernels::softmax_bwd_element_f32(y[e], dy[e], sum[j]);
      }
  });
}

}  // namespace

int64_t prepare_softmax(BoundNode& node) { return prepare(node, false); }
void run_softmax(const BoundNode& node) { run_forward(node, false); }
int64_t prepare_softmax_bwd(BoundNode& node) { return prepare(node, true); }
void run_softmax_bwd(const BoundNode& node) { run_backward(node, false); }

int64_t prepare_log_softmax(BoundNode& node) { return prepare(node, false); }
void run_log_softmax(const BoundNode& node) { run_forward(node, true); }
int64_t prepare_log_softmax_bwd(BoundNode& node) { return prepare(node, true); }
void run_log_softmax_bwd(const BoundNode& node) { run_backward(node, true); }

}  // namespace cpu
}  // namespace parity
