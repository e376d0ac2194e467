// backends/cpu/cpu_ops.h — internal to the cpu backend: a plan node bound to memory, the fixed
// work split helpers, and the prepare/run pair of every op (one op per .cpp file).
//
// Each op has a prepare_* function, called once at compile, that checks the shapes it relies on,
// fixes its work split from the shapes alone and returns the scratch bytes it needs; and a
// run function, called every execute, that only computes. Work is split into chunks whose
// size depends on the shapes only and every reduction is summed in a fixed order, so results
// are bitwise identical from run to run and for any thread count.
#pragma once

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdint>
#include <string>

#include "parity/plugin.h"

namespace parity {
namespace cpu {

// One value of a node, bound to its memory (arena or persistent store).
struct BoundValue {
  void* data = nullptr;
  const char* name = "";
  parity_dtype dtype = PARITY_F32;
  int32_t rank = 0;
  int64_t dims[PARITY_MAX_RANK] = {};
  int64_t numel = 0;

  float* f32() const { return static_cast<float*>(data); }
  int32_t* i32() const { return static_cast<int32_t*>(data); }
  std::string shape_str() const;  // "[64,1,28,28]"
};

struct BoundNode;

// One node's fusion record, set at compile from the plan alone.
struct NodeFusion {
  // Fusion the backend does on its own (cpu_fusion.cpp, fuse_nodes), when the intermediate
  // value is read by nobody else and not kept:
  //  - CONV2D followed by RELU (relu): the conv writes relu(conv + b) into the relu's output
  //    (out[0] rebound), and the RELU node is skipped;
  //  - MAXPOOL2D_BWD followed by RELU_BWD: the pool gradient is masked by relu_mask > 0 (the
  //    relu's forward output) and written into the RELU_BWD's output; that node is skipped;
  //  - that gradient read only by the next node, a CONV2D_BWD_WEIGHT: see pool_source below.
  bool relu = false;
  BoundValue relu_mask;
  bool skip = false;
  // CONV2D_BWD_DATA and CONV2D_BWD_WEIGHT whose dy is a max-pool's gradient (MAXPOOL2D_BWD with
  // non-overlapping windows of 4 or more elements, possibly through RELU_BWD): mostly zeros, so
  // conv2d_sparse_dy.cpp visits only its nonzeros where it applies. Set by the backend at
  // compile, from the plan alone.
  bool sparse_dy = false;
  // CONV2D_BWD_WEIGHT fused with the 2x2, stride-2 MAXPOOL2D_BWD (and the RELU_BWD fused into
  // it) that makes its dy for it alone (cpu_fusion.cpp, fuse_nodes): that node is skipped and
  // this one reads dy in its pooled form (conv2d_sparse_dy.cpp), never written; when that form
  // cannot be used (an index outside its window, a non-finite x), it runs pool_source first.
  // On bf16 values (cpu_fusion.cpp, fuse_pooled_gradients_bf16) the pool's RELU_BWD may stay a
  // node of its own; both are skipped, relu_mask is then the relu's mask, and the conv makes
  // each image's dy in its scratch (bf16_gemm_ops.cpp).
  const BoundNode* pool_source = nullptr;
  // With pool_source, when the relu mask is the input of the forward MAXPOOL2D that made the
  // indices: that pool's output, which equals relu's output at each argmax. The pooled form
  // then reads it (a quarter of the size, in order) instead of gathering relu's output; set
  // only when no node that runs in between writes its bytes.
  BoundValue pooled_relu;
  // A CONV2D (relu fused or not) whose output the next node to run, a 2x2 MAXPOOL2D, pools
  // (cpu_fusion.cpp, fuse_forward_pools; bf16 on gemm_bf16, float32 on conv2d_direct_rows.cpp):
  // the conv pools each image's planes (float32: each pair of rows) right after writing them,
  // while they are in cache, and that node is skipped. Same kernel, same bits.
  const BoundNode* pool_after = nullptr;
};

// One node of the plan, bound to memory, with the work split its prepare_* function chose.
struct BoundNode {
  std::string name;
  parity_op op = PARITY_OP_COUNT;
  parity_op_params params{};
  int32_t num_inputs = 0, num_outputs = 0;
  BoundValue in[PARITY_MAX_NODE_INPUTS];
  BoundValue out[PARITY_MAX_NODE_OUTPUTS];

  int64_t chunk = 1;       // items per parallel task (images, rows or elements; see the op)
  int64_t num_chunks = 1;  // tasks; for batch reductions also the number of partial buffers
  int32_t slots = 1;       // concurrent workers: one scratch buffer each
  unsigned char* workspace = nullptr;  // the executable's scratch, shared by all nodes

  // What compile fused into or out of this node (cpu_fusion.cpp); all off by default.
  NodeFusion fusion;
};

// "[64,1,28,28]" and "f32": the spellings every cpu error message uses.
std::string shape_str(const int64_t* dims, int32_t rank);
const char* dtype_name(parity_dtype dtype);

// ---- checks used by the prepare_* functions; they throw Error(shape) naming node, value and rule
[[noreturn]] void fail(const BoundNode& node, const std::string& message);
void expect_arity(const BoundNode& node, int32_t min_inputs, int32_t max_inputs, int32_t min_outputs,
                  int32_t max_outputs);
void expect_value(const BoundNode& node, const BoundValue& v, const char* role, parity_dtype dtype,
                  int32_t rank);
void expect_dims(const BoundNode& node, const BoundValue& v, const char* role, const int64_t* dims,
                 int32_t rank, const char* rule);
void expect_same_shape(const BoundNode& node, const BoundValue& a, const char* role_a, const BoundValue& b,
                       const char* role_b);

// ---- fixed work split
// Items per chunk: at least min_chunk, and few enough chunks that there are at most max_chunks.
// Depends on the sizes only, never on the thread count.
inline int64_t fixed_chunk_size(int64_t total, int64_t min_chunk, int64_t max_chunks) {
  int64_t chunk = (total + max_chunks - 1) / max_chunks;
  if (chunk < min_chunk) chunk = min_chunk;
  return chunk < 1 ? 1 : chunk;
}
inline int64_t chunk_count(int64_t total, int64_t chunk) { return total <= 0 ? 0 : (total + chunk - 1) / chunk; }

// Runs body(chunk_index, begin, end) for every chunk of [0, total), one task per chunk
// (simple_partitioner with grain 1), inside the caller's task_arena.
template <class Body>
void parallel_chunks(int64_t total, int64_t chunk, const Body& body) {
  const int64_t n = chunk_count(total, chunk);
  if (n == 1) {
    body(int64_t{0}, int64_t{0}, total);
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n, 1),
      [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i != r.end(); ++i) {
          const int64_t b = i * chunk;
          body(i, b, b + chunk < total ? b + chunk : total);
        }
      },
      tbb::simple_partitioner());
}

// The calling worker's slot in [0, slots): picks a scratch buffer, never affects results.
int32_t worker_slot(int32_t slots);

// Bytes rounded up to a 64-byte multiple, so sub-buffers of a workspace stay aligned.
inline int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// Bytes of one element.
inline int64_t dtype_bytes(parity_dtype dtype) {
  return dtype == PARITY_I64 ? 8 : dtype == PARITY_BF16 || dtype == PARITY_F16 ? 2 : 4;
}

// ---- the ops: for every op of PARITY_OP_LIST (parity/op_list.h), prepare_<name> checks the
// node's shapes, sets its work split and returns the workspace bytes run_<name> needs, and
// run_<name> computes it. Both live in the op family's file (activation.cpp, conv2d.cpp, ...);
// cpu_backend.cpp's dispatch is generated from the same list, so one missing is a link error.
#define PARITY_CPU_OP_FUNCTIONS(ID, name, inputs, outputs, builder) \
  int64_t prepare_##name(BoundNode& node);                         \
  void run_##name(const BoundNode& node);
PARITY_OP_LIST(PARITY_CPU_OP_FUNCTIONS)
#undef PARITY_CPU_OP_FUNCTIONS

// NodeFusion::pool_after on float32 (cpu_fusion.cpp): a CONV2D that conv2d.cpp runs on
// conv2d_direct_rows.cpp's kernel, and a MAXPOOL2D that pool.cpp runs on its 2x2 vector kernel
// (AVX-512 builds). The conv pools each pair of output rows once all its channels are written.
bool conv2d_runs_direct_rows_f32(const BoundNode& node);
bool runs_maxpool2x2_f32(const BoundNode& node);
// Output rows [rows_begin, rows_end) of the pool's planes [begin, end): the same kernel and bits
// as run_maxpool2d.
void maxpool2x2_rows_f32(const BoundNode& pool, int64_t begin, int64_t end, int64_t rows_begin, int64_t rows_end);

// conv2d_sparse_dy.cpp: the backward of a node with sparse_dy, for the shapes it handles
// (stride 1, 3x3, C a multiple of 16, AVX-512 builds); scratch bytes, then the run functions.
bool sparse_dy_applies(const BoundNode& node);
int64_t prepare_sparse_dy_bwd_weight(const BoundNode& node);
int64_t prepare_sparse_dy_bwd_data(const BoundNode& node);
void conv2d_bwd_weight_sparse_dy_f32(const BoundNode& node);
// Returns false, computing nothing, when w holds a non-finite value (the dense kernel runs).
bool conv2d_bwd_data_sparse_dy_f32(const BoundNode& node);
// The pooled form of a node with pool_source (C <= 16); false when it cannot be used, with
// nothing written.
bool pooled_dy_applies(const BoundNode& node);
int64_t prepare_pooled_dy_bwd_weight(const BoundNode& node);
bool conv2d_bwd_weight_pooled_dy_f32(const BoundNode& node);

}  // namespace cpu
}  // namespace parity
