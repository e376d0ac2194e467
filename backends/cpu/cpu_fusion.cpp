// backends/cpu/cpu_fusion.cpp — the cpu backend's fusion pass at compile: which nodes fuse
// (conv + relu, f32 or bf16; a bf16 conv and the max-pool of its output; max-pool backward +
// relu backward, that gradient into the conv backward-weight that alone reads it, f32 or bf16)
// and which conv backwards get a sparse dy;
// each node's NodeFusion record.
#include "backends/cpu/cpu_fusion.h"

#include <algorithm>

#include "backends/cpu/half_nodes.h"
#include "backends/kit/persistent_store.h"

namespace parity {
namespace cpu {
namespace {

// By the bound pointers, not by value index like overlaps(): a fused node writes where its
// partner's output lies (a MAXPOOL2D_BWD writes its RELU_BWD's output), so only the binding
// says which bytes a node that runs writes.
bool bytes_overlap(const BoundValue& a, const BoundValue& b) {
  const auto* a0 = static_cast<const unsigned char*>(a.data);
  const auto* b0 = static_cast<const unsigned char*>(b.data);
  const int64_t a_bytes = a.numel * dtype_bytes(a.dtype), b_bytes = b.numel * dtype_bytes(b.dtype);
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

// Whether two values share arena bytes (a persistent value only with itself).
bool overlaps(const parity_plan& plan, int32_t a, int32_t b) {
  const parity_value_desc& va = plan.values[a];
  const parity_value_desc& vb = plan.values[b];
  if (kit::is_persistent(va.kind) || kit::is_persistent(vb.kind)) return a == b;
  return va.offset < vb.offset + vb.bytes && vb.offset < va.offset + va.bytes;
}

// NodeFusion::pooled_relu of the pooled form at node `conv_index`, whose pool_source is node
// `pool_index` (with its RELU_BWD fused): the forward MAXPOOL2D that made the indices, if it
// pooled the relu output the mask is, and no node that runs between it and the conv writes
// bytes of its pooled output.
void find_pooled_relu(const parity_plan& plan, const std::vector<BoundNode>& nodes, int32_t pool_index, int32_t conv_index, BoundNode& conv) {
  const int32_t idx = plan.nodes[pool_index].inputs[1];
  const int32_t mask = plan.nodes[pool_index + 1].inputs[0];
  for (int32_t f = 0; f < pool_index; ++f) {
    const parity_node_desc& fwd = plan.nodes[f];
    if (fwd.op != PARITY_OP_MAXPOOL2D || fwd.num_outputs != 2 || fwd.outputs[1] != idx) continue;
    if (fwd.inputs[0] != mask) return;
    const BoundValue& pooled = nodes[f].out[0];
    for (int32_t k = f + 1; k < conv_index; ++k) {
      const BoundNode& between = nodes[k];
      if (between.fusion.skip) continue;
      for (int32_t o = 0; o < between.num_outputs; ++o)
        if (bytes_overlap(between.out[o], pooled)) return;
    }
    conv.fusion.pooled_relu = pooled;
    return;
  }
}

// NodeFusion::pool_source: a MAXPOOL2D_BWD (with or without its fused RELU_BWD) whose result
// only the next node to run reads, a CONV2D_BWD_WEIGHT, as its dy. Its inputs die at the pool
// node, so the conv's outputs may be given their bytes: the pooled form reads all it needs
// before writing dw and db.
int64_t fuse_pooled_gradients(const parity_plan& plan, const std::vector<int32_t>& readers,
                              std::vector<BoundNode>& nodes) {
  int64_t scratch = 0;
  for (int32_t i = 0; i < plan.num_nodes; ++i) {
    BoundNode& pool = nodes[i];
    if (pool.op != PARITY_OP_MAXPOOL2D_BWD || pool.fusion.skip || touches_half(pool)) continue;
    const bool relu_fused = pool.fusion.relu_mask.data != nullptr;
    const int32_t result = relu_fused ? plan.nodes[i + 1].outputs[0] : plan.nodes[i].outputs[0];
    const int32_t next = i + (relu_fused ? 2 : 1);
    if (next >= plan.num_nodes || readers[result] != 1 || plan.values[result].keep) continue;
    BoundNode& conv = nodes[next];
    if (conv.op != PARITY_OP_CONV2D_BWD_WEIGHT || plan.nodes[next].inputs[1] != result || touches_half(conv)) continue;
    conv.fusion.pool_source = &pool;
    if (!pooled_dy_applies(conv)) {
      conv.fusion.pool_source = nullptr;
      continue;
    }
    pool.fusion.skip = true;
    scratch = std::max(scratch, prepare_pooled_dy_bwd_weight(conv));
    if (relu_fused) find_pooled_relu(plan, nodes, i, next, conv);
  }
  return scratch;
}

// The bf16 form of the above: a 2x2 MAXPOOL2D_BWD on bf16 values (pool.cpp), then a RELU_BWD
// that alone reads its result (fused into the pool or not: in a bf16 plan the relu backward's
// output may lie on the pool's dy or idx, which keeps them apart), whose result only a bf16
// CONV2D_BWD_WEIGHT reads, as its dy. The pool (and relu) nodes are skipped and the conv makes
// each image's dy itself (bf16_gemm_ops.cpp) from the pool's inputs and the relu's mask, all of
// which die at those nodes; it reads them all before it writes dw and db. Returns the scratch
// those convs need.
int64_t fuse_pooled_gradients_bf16(const parity_plan& plan, const std::vector<int32_t>& readers,
                                   std::vector<BoundNode>& nodes) {
  int64_t scratch = 0;
  for (int32_t i = 0; i + 1 < plan.num_nodes; ++i) {
    BoundNode& pool = nodes[i];
    if (pool.op != PARITY_OP_MAXPOOL2D_BWD || pool.fusion.skip || !runs_bf16_pool(pool)) continue;
    int32_t result = plan.nodes[i].outputs[0], next = i + 1;
    BoundValue mask = pool.fusion.relu_mask;
    BoundNode* relu = nullptr;
    if (mask.data) {  // the relu backward already fused into the pool
      result = plan.nodes[i + 1].outputs[0];
      next = i + 2;
    } else if (nodes[i + 1].op == PARITY_OP_RELU_BWD && runs_bf16_relu(nodes[i + 1]) &&
               plan.nodes[i + 1].inputs[1] == result && plan.nodes[i + 1].inputs[0] != result &&
               readers[result] == 1 && !plan.values[result].keep) {
      relu = &nodes[i + 1];
      mask = relu->in[0];
      result = plan.nodes[i + 1].outputs[0];
      next = i + 2;
    }
    if (next >= plan.num_nodes || readers[result] != 1 || plan.values[result].keep) continue;
    BoundNode& conv = nodes[next];
    if (conv.op != PARITY_OP_CONV2D_BWD_WEIGHT || !runs_on_gemm_bf16(conv) || plan.nodes[next].inputs[1] != result)
      continue;
    pool.fusion.skip = true;
    if (relu) relu->fusion.skip = true;
    conv.fusion.pool_source = &pool;
    conv.fusion.relu_mask = mask;
    if (mask.data) find_pooled_relu(plan, nodes, i, next, conv);
    scratch = std::max(scratch, pooled_dy_conv2d_bf16_bytes(conv));
  }
  return scratch;
}

// NodeFusion::pool_after: a CONV2D and the next node to run, a 2x2 MAXPOOL2D of the conv's
// output (its relu fused or not), where both have a kernel for it: bf16 on gemm_bf16 and
// pool.cpp's bf16 kernel, or float32 on conv2d_direct_rows.cpp and pool.cpp's 2x2 vector kernel.
// The conv runs image by image, so the pool's outputs may not share bytes with anything the
// conv reads or writes (x, w, b, y): the pool of image n is written while the conv still works
// on other images. The conv still writes y (the backward reads it); the pool reads it from cache.
void fuse_forward_pools(std::vector<BoundNode>& nodes) {
  for (size_t i = 0; i < nodes.size(); ++i) {
    BoundNode& conv = nodes[i];
    if (conv.op != PARITY_OP_CONV2D || conv.fusion.skip) continue;
    const bool bf16 = runs_on_gemm_bf16(conv), f32 = !bf16 && conv2d_runs_direct_rows_f32(conv);
    if (!bf16 && !f32) continue;
    size_t j = i + 1;
    while (j < nodes.size() && nodes[j].fusion.skip) ++j;
    if (j == nodes.size()) continue;
    BoundNode& pool = nodes[j];
    if (pool.op != PARITY_OP_MAXPOOL2D || !(bf16 ? runs_bf16_pool(pool) : runs_maxpool2x2_f32(pool)) ||
        pool.num_outputs != 2 || pool.in[0].data != conv.out[0].data || pool.in[0].numel != conv.out[0].numel)
      continue;
    bool clash = false;
    for (int32_t o = 0; o < pool.num_outputs; ++o) {
      for (int32_t k = 0; k < conv.num_inputs; ++k) clash = clash || bytes_overlap(pool.out[o], conv.in[k]);
      clash = clash || bytes_overlap(pool.out[o], conv.out[0]);
    }
    if (clash) continue;
    conv.fusion.pool_after = &pool;
    pool.fusion.skip = true;
  }
}

}  // namespace

// A MAXPOOL2D_BWD with non-overlapping windows of 4 or more elements (no padding, dilation or
// ceil_mode) passes at most a quarter
// of its dx through; RELU_BWD keeps that (it only zeroes more). A conv backward reading such a
// gradient as its dy gets NodeFusion::sparse_dy. Indices were checked by the caller.
void mark_pool_gradient(const parity_node_desc& desc, std::vector<bool>& pool_gradient, BoundNode& node) {
  switch (desc.op) {
    case PARITY_OP_MAXPOOL2D_BWD: {
      const parity_maxpool2d_params& pp = desc.params.maxpool2d;
      const bool unpadded = pp.pad_h == 0 && pp.pad_w == 0 && pp.dilation_h <= 1 && pp.dilation_w <= 1 && !pp.ceil_mode;
      if (desc.num_outputs == 1 && unpadded && pp.kernel_h * pp.kernel_w >= 4 && pp.stride_h >= pp.kernel_h &&
          pp.stride_w >= pp.kernel_w)
        pool_gradient[desc.outputs[0]] = true;
      break;
    }
    case PARITY_OP_RELU_BWD:
      if (desc.num_inputs == 2 && desc.num_outputs == 1 && pool_gradient[desc.inputs[1]])
        pool_gradient[desc.outputs[0]] = true;
      break;
    case PARITY_OP_CONV2D_BWD_DATA:
      node.fusion.sparse_dy = desc.num_inputs >= 1 && pool_gradient[desc.inputs[0]];
      break;
    case PARITY_OP_CONV2D_BWD_WEIGHT:
      node.fusion.sparse_dy = desc.num_inputs >= 2 && pool_gradient[desc.inputs[1]];
      break;
    default: break;
  }
}

// The fusions of BoundNode (cpu_ops.h). Node i fuses with node i+1 when i's output is a TEMP
// value that is not kept and that node i+1 alone reads; and since node i then writes node
// i+1's output, that output must not share arena bytes with any input of node i (the planner
// may give a value that dies at node i the same bytes). Same arithmetic, so same results.
// Returns the scratch bytes the pooled-form fusion needs.
int64_t fuse_nodes(const parity_plan& plan, std::vector<BoundNode>& nodes) {
  std::vector<int32_t> readers(static_cast<size_t>(plan.num_values), 0);
  for (int32_t i = 0; i < plan.num_nodes; ++i)
    for (int32_t k = 0; k < plan.nodes[i].num_inputs; ++k) ++readers[plan.nodes[i].inputs[k]];
  for (int32_t i = 0; i + 1 < plan.num_nodes; ++i) {
    const parity_node_desc& a = plan.nodes[i];
    const parity_node_desc& b = plan.nodes[i + 1];
    const bool conv_relu = a.op == PARITY_OP_CONV2D && b.op == PARITY_OP_RELU && a.num_outputs == 1 &&
                           b.inputs[0] == a.outputs[0];
    const bool pool_relu_bwd = a.op == PARITY_OP_MAXPOOL2D_BWD && b.op == PARITY_OP_RELU_BWD &&
                               a.num_outputs == 1 && b.inputs[1] == a.outputs[0] && b.inputs[0] != a.outputs[0];
    if (!conv_relu && !pool_relu_bwd) continue;
    // Half nodes run widened (half_nodes.h) and do not fuse, except where a half kernel does the
    // fused form itself: a bf16 conv (gemm_bf16) with its bf16 relu in the epilogue ...
    const bool half = touches_half(nodes[i]) || touches_half(nodes[i + 1]);
    const bool bf16_conv_relu = conv_relu && runs_on_gemm_bf16(nodes[i]) && nodes[i + 1].in[0].dtype == PARITY_BF16 &&
                                nodes[i + 1].out[0].dtype == PARITY_BF16;
    // ... and a bf16 max-pool backward (pool.cpp) with its bf16 relu backward's mask.
    const bool bf16_pool_relu_bwd = pool_relu_bwd && runs_bf16_pool(nodes[i]) &&
                                    nodes[i + 1].in[0].dtype == PARITY_BF16 && nodes[i + 1].in[1].dtype == PARITY_BF16 &&
                                    nodes[i + 1].out[0].dtype == PARITY_BF16;
    if (half && !bf16_conv_relu && !bf16_pool_relu_bwd) continue;
    const parity_value_desc& mid = plan.values[a.outputs[0]];
    if (mid.kind != PARITY_VALUE_TEMP || mid.keep || readers[a.outputs[0]] != 1) continue;
    bool clash = false;
    for (int32_t k = 0; k < a.num_inputs; ++k) clash = clash || overlaps(plan, a.inputs[k], b.outputs[0]);
    if (pool_relu_bwd) clash = clash || overlaps(plan, b.inputs[0], b.outputs[0]);
    if (clash) continue;
    BoundNode& first = nodes[i];
    first.out[0] = nodes[i + 1].out[0];
    if (conv_relu) first.fusion.relu = true;
    else first.fusion.relu_mask = nodes[i + 1].in[0];
    nodes[i + 1].fusion.skip = true;
    ++i;
  }
  fuse_forward_pools(nodes);
  return std::max(fuse_pooled_gradients(plan, readers, nodes), fuse_pooled_gradients_bf16(plan, readers, nodes));
}

}  // namespace cpu
}  // namespace parity
