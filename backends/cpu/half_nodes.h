// backends/cpu/half_nodes.h — the cpu backend's ops on bf16 and f16 values (issue #14,
// docs/autocast.md) that have no half kernel of their own: the node's half inputs widened to f32
// scratch (cast.h, exact), the op's f32 kernel on that scratch, and its half outputs rounded once
// from f32 (cast.h, round to nearest even). f32 and i32 operands (a bias, a max-pool's indices,
// db) are used in place. Every conversion is element by element, so results are bitwise
// reproducible at any thread count, as the f32 kernel's are.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {

// Whether any input or output of the node is bf16 or f16.
bool touches_half(const BoundNode& node);

// Whether the node runs through a HalfNode: it touches half values and its op has no half kernel
// (CAST converts and RESHAPE moves bits; bf16 LINEAR and CONV2D ops use gemm_bf16; bf16 2x2
// max-pools and bf16 relus, runs_bf16_pool and runs_bf16_relu, have their own).
bool runs_widened(const BoundNode& node);

struct HalfNode {
  // A half value of the node and where its f32 copy lies in the executable's workspace.
  struct Copy {
    BoundValue half;
    int32_t slot = 0;  // its input or output slot
    int64_t offset = 0;
  };
  BoundNode widened;  // the node with its half values rebound to their f32 copies
  std::vector<Copy> inputs, outputs;
  int64_t op_scratch_offset = 0;  // where the f32 op's own scratch begins in the workspace
  bool poison = false;            // prefill the f32 copies of outputs with NaN (CompileOptions::poison_outputs)
};

// The HalfNode of `node` (its fusion already marked; fusions that change kernels are cleared) and,
// in *bytes, the workspace it needs: the f32 copies, then what `prepare` (the op's prepare_*)
// asks for on the widened node.
std::unique_ptr<HalfNode> make_half_node(const BoundNode& node, int64_t (*prepare)(BoundNode&), bool poison,
                                         int64_t* bytes);

// Points the widened node's values and scratch into the executable's workspace (once, after it
// is allocated).
void bind_half_node(HalfNode& h, unsigned char* workspace);

// Widen, run the f32 op (`run`, the executable's dispatch), round.
void run_half_node(const HalfNode& h, void (*run)(const BoundNode&));

// Whether the node is a MAXPOOL2D or MAXPOOL2D_BWD on bf16 values in 2x2 stride-2 windows on a
// CPU with AVX-512BW: those run pool.cpp's bf16 kernels (bitwise the widened path's).
bool runs_bf16_pool(const BoundNode& node);

// Planes [begin, end) of such a MAXPOOL2D_BWD's dx (then relu-masked by `mask`, the relu's bf16
// output, when not null) into dx[0, (end - begin) H W); `scratch` holds one f32 plane. What
// run_maxpool2d_bwd writes there, for a bf16 conv backward-weight that makes its dy itself
// (NodeFusion::pool_source). `pooled_mask` (may be null; NodeFusion::pooled_relu) is the forward
// pool's output when `mask` is its input: read instead of mask where the indices allow.
void maxpool2d_bwd_planes_bf16(const BoundNode& pool, const uint16_t* mask, const uint16_t* pooled_mask, int64_t begin,
                               int64_t end, uint16_t* dx, float* scratch);
// Output rows [rows_begin, rows_end) (clipped to the pool's) of planes [begin, end) of such a
// MAXPOOL2D (forward): what run_maxpool2d writes there, for a bf16 conv that pools its own
// output (NodeFusion::pool_after).
void maxpool2d_planes_bf16(const BoundNode& pool, int64_t begin, int64_t end, int64_t rows_begin, int64_t rows_end);
// The workspace bytes of a bf16 CONV2D_BWD_WEIGHT that makes its dy from pool_source.
int64_t pooled_dy_conv2d_bf16_bytes(const BoundNode& node);

// Whether the node is a RELU or RELU_BWD on bf16 values only, on a CPU with AVX-512BW: those run
// activation.cpp's bf16 loops (bitwise the widened path's).
bool runs_bf16_relu(const BoundNode& node);

// Whether the node is a LINEAR or CONV2D op (forward or backward) on bf16 values: those run on
// gemm_bf16 (bf16_gemm_ops.cpp), called from linear.cpp's and conv2d.cpp's prepare/run.
bool runs_on_gemm_bf16(const BoundNode& node);
int64_t prepare_linear_bf16(BoundNode& node);
void run_linear_bf16(const BoundNode& node);
int64_t prepare_conv2d_bf16(BoundNode& node);
void run_conv2d_bf16(const BoundNode& node);

}  // namespace cpu
}  // namespace parity
