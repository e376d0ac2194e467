// backends/cpu/half_nodes.cpp — ops on bf16 and f16 values through their f32 kernels: widen,
// run, round once (half_nodes.h).
#include "backends/cpu/half_nodes.h"

#include <algorithm>
#include <limits>

#include "backends/cpu/cast.h"

namespace parity {
namespace cpu {
namespace {

bool is_half(parity_dtype d) { return d == PARITY_BF16 || d == PARITY_F16; }

// Elements per conversion task: fixed by size alone, so the split never depends on threads.
constexpr int64_t kConvertChunk = int64_t{1} << 15;

void convert(const void* x, parity_dtype from, void* y, parity_dtype to, int64_t count) {
  const int64_t from_bytes = dtype_bytes(from), to_bytes = dtype_bytes(to);
  parallel_chunks(count, kConvertChunk, [&](int64_t, int64_t begin, int64_t end) {
    cast_elements(static_cast<const unsigned char*>(x) + begin * from_bytes, from,
                  static_cast<unsigned char*>(y) + begin * to_bytes, to, end - begin);
  });
}

}  // namespace

bool touches_half(const BoundNode& node) {
  for (int32_t k = 0; k < node.num_inputs; ++k)
    if (is_half(node.in[k].dtype)) return true;
  for (int32_t k = 0; k < node.num_outputs; ++k)
    if (is_half(node.out[k].dtype)) return true;
  return false;
}

bool runs_on_gemm_bf16(const BoundNode& node) {
  switch (node.op) {
    case PARITY_OP_LINEAR:
    case PARITY_OP_LINEAR_BWD_DATA:
    case PARITY_OP_LINEAR_BWD_WEIGHT:
    case PARITY_OP_CONV2D:
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT: return node.num_inputs > 0 && node.in[0].dtype == PARITY_BF16;
    default: return false;
  }
}

bool runs_widened(const BoundNode& node) {
  if (node.op == PARITY_OP_CAST || node.op == PARITY_OP_RESHAPE || runs_on_gemm_bf16(node) || runs_bf16_pool(node) ||
      runs_bf16_relu(node))
    return false;
  return touches_half(node);
}

std::unique_ptr<HalfNode> make_half_node(const BoundNode& node, int64_t (*prepare)(BoundNode&), bool poison,
                                         int64_t* bytes) {
  auto h = std::make_unique<HalfNode>();
  h->widened = node;
  h->poison = poison;
  // The f32 kernels' special paths keyed on fusion (a sparse dy, a fused partner) are for the
  // f32 graph; the widened node runs the plain kernel.
  h->widened.fusion = NodeFusion{};
  int64_t offset = 0;
  auto widen = [&](BoundValue& v, int32_t slot, std::vector<HalfNode::Copy>& copies) {
    if (!is_half(v.dtype)) return;
    copies.push_back({v, slot, offset});
    v.dtype = PARITY_F32;
    v.data = nullptr;  // bound by bind_half_node
    offset += align64(v.numel * int64_t{sizeof(float)});
  };
  for (int32_t k = 0; k < h->widened.num_inputs; ++k) widen(h->widened.in[k], k, h->inputs);
  for (int32_t k = 0; k < h->widened.num_outputs; ++k) widen(h->widened.out[k], k, h->outputs);
  h->op_scratch_offset = offset;
  *bytes = offset + prepare(h->widened);
  return h;
}

void bind_half_node(HalfNode& h, unsigned char* workspace) {
  for (const HalfNode::Copy& c : h.inputs) h.widened.in[c.slot].data = workspace + c.offset;
  for (const HalfNode::Copy& c : h.outputs) h.widened.out[c.slot].data = workspace + c.offset;
  h.widened.workspace = workspace + h.op_scratch_offset;
}

void run_half_node(const HalfNode& h, void (*run)(const BoundNode&)) {
  const unsigned char* base = h.widened.workspace - h.op_scratch_offset;
  auto wide = [&](const HalfNode::Copy& c) { return const_cast<unsigned char*>(base) + c.offset; };
  for (const HalfNode::Copy& c : h.inputs) convert(c.half.data, c.half.dtype, wide(c), PARITY_F32, c.half.numel);
  if (h.poison)
    for (const HalfNode::Copy& c : h.outputs)
      std::fill_n(reinterpret_cast<float*>(wide(c)), c.half.numel, std::numeric_limits<float>::quiet_NaN());
  run(h.widened);
  for (const HalfNode::Copy& c : h.outputs) convert(wide(c), PARITY_F32, c.half.data, c.half.dtype, c.half.numel);
}

}  // namespace cpu
}  // namespace parity
