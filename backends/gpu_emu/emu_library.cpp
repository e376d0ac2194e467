// backends/gpu_emu/emu_library.cpp — the emulated target's routes of the GPU executor (declared in
// backends/gpu/gpu_executable.h). The executor plans every node as on CUDA (cuda_decisions's
// routes, descriptors, GEMM calls, arena layout); where CUDA would call cuDNN or cuBLAS, this
// checks what that call would be given — a convolution's descriptors against cuDNN's output-size
// rule, each GEMM's dimensions and leading dimensions against its operands' sizes, the optimizer's
// hyperparameters read from the device copy compile made — and then runs the node's native kernel
// (the simt build, warp 32) as a launch queued on the emulated stream. Every launch declares the
// device bytes it reads and writes (the node's inputs, outputs and workspace), so the emulation
// checks the kernels' ordering, not only the copies'.
#include <cstring>
#include <memory>
#include <vector>

#include "backends/gpu/gpu_executable.h"
#include "backends/gpu/native_routes.h"
#include "backends/simt/simt_kernels.h"

namespace parity {
namespace gpu {

const native::NativeOps& native_ops() { return native::simt_w32::native_ops(); }

}  // namespace gpu
}  // namespace parity

namespace {

// How a queued launch reaches the values: the addresses taken when it was queued (a launch's
// arguments are fixed when it is queued, and a captured graph replays them), no host copies (the
// run-time data were checked on the host before anything was queued).
struct QueuedMemory {
  std::vector<void*> pointers;  // per value, or nullptr when the node does not use it
  void* workspace_bytes = nullptr;
  float* f32(int32_t value) { return static_cast<float*>(pointers[static_cast<size_t>(value)]); }
  int32_t* i32(int32_t value) { return static_cast<int32_t*>(pointers[static_cast<size_t>(value)]); }
  const int32_t* host_i32(int32_t) { return nullptr; }
  float* workspace() { return static_cast<float*>(workspace_bytes); }
  [[noreturn]] void fail(parity_status status, const std::string& message) { parity::gpu::fail(status, message); }
};

// Queues `node` on the compute stream as one launch running its native kernels. `hyperparameters`:
// the device copy of an optimizer's parameters, read into the node when the launch runs, as
// CUDA's optimizer kernels read them on the device.
void queue_native(parity_executable_object& exe, const parity_node_desc& node, const void* hyperparameters = nullptr) {
  std::vector<parity::emu::DeviceRange> reads, writes;
  auto memory = std::make_shared<QueuedMemory>();
  memory->pointers.assign(exe.values.size(), nullptr);
  // The operands' addresses in the slot being launched, as the executor's own dispatcher memory
  // (what CUDA and HIP launch with) resolves them now.
  auto operand = [&](bool output, int32_t i, std::vector<parity::emu::DeviceRange>& ranges) {
    const int32_t value = output ? node.outputs[i] : node.inputs[i];
    void* at = exe.operand(node, output, i);
    memory->pointers[static_cast<size_t>(value)] = at;
    ranges.push_back({at, static_cast<size_t>(exe.values[static_cast<size_t>(value)].bytes)});
  };
  for (int32_t i = 0; i < node.num_inputs; ++i) operand(false, i, reads);
  for (int32_t i = 0; i < node.num_outputs; ++i) operand(true, i, writes);
  const int64_t workspace_bytes = exe.layout.cublas_workspace_offset - exe.layout.native_workspace_offset;
  if (workspace_bytes > 0) {  // the native workspace: [its offset, the cuBLAS workspace's)
    memory->workspace_bytes = exe.memory.workspace();
    writes.push_back({memory->workspace_bytes, static_cast<size_t>(workspace_bytes)});
  }
  if (hyperparameters) reads.push_back({hyperparameters, sizeof(parity_op_params)});
  const std::vector<parity_value_desc>* values = &exe.values;
  parity::gpu::rt::device().launch(
      exe.instance->stream, node.name, std::move(reads), std::move(writes), [memory, node, values, hyperparameters] {
        parity_node_desc run = node;
        if (hyperparameters) std::memcpy(&run.params, hyperparameters, sizeof run.params);
        parity::native::NodeDispatcher<QueuedMemory> dispatcher(parity::gpu::kName, parity::native::op_name,
                                                               parity::gpu::native_ops(), *values, *memory);
        dispatcher.run(run);
      });
}

// The floats of a column-major matrix with `rows`, `cols` and leading dimension `ld`.
int64_t matrix_floats(int rows, int cols, int ld) { return static_cast<int64_t>(ld) * (cols - 1) + rows; }

}  // namespace

void parity_executable_object::enqueue_convolution(const Step& step, const parity_node_desc& node) {
  if (!step.conv) fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "' has no descriptors"));
  queue_native(*this, node);
}

void parity_executable_object::enqueue_pooling(const Step& step, const parity_node_desc& node) {
  if (!step.pool) fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "' has no descriptors"));
  queue_native(*this, node);
}

void parity_executable_object::enqueue_activation(const Step& step, const parity_node_desc& node) {
  const int64_t n = numel_of(values[static_cast<size_t>(node.inputs[0])]);
  if (!step.flat || step.flat->count != n)
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': the activation descriptor's count ",
                                     step.flat ? step.flat->count : 0, " is not the input's ", n));
  queue_native(*this, node);
}

// The descriptors' geometry must be the node's, as cuDNN would read it; then the native kernels.
void parity_executable_object::enqueue_batchnorm(const Step& step, const parity_node_desc& node) {
  const plan::Nchw d = step.batchnorm ? step.batchnorm->shape.x : plan::Nchw{0, 0, 0, 0};
  if (int64_t{d.n} * d.c * d.h * d.w != numel_of(values[static_cast<size_t>(node.inputs[0])]))
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name,
                                     "': the batch normalization descriptor does not match its input"));
  queue_native(*this, node);
}

// The descriptors cuDNN would be given must describe the node's operand; then its native kernels.
void parity_executable_object::enqueue_softmax(const Step& step, const parity_node_desc& node) {
  const int64_t n = numel_of(values[static_cast<size_t>(node.inputs[0])]);
  const int64_t described = step.softmax ? int64_t{step.softmax->shape.x.n} * step.softmax->shape.x.c *
                                               step.softmax->shape.x.h * step.softmax->shape.x.w
                                         : 0;
  if (described != n)
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': the softmax descriptor holds ",
                                     described, " elements, the input ", n));
  queue_native(*this, node);
}

// Each cuBLAS call of the step, checked against its operands' sizes as cuBLAS would read them;
// then the node's native kernel.
void parity_executable_object::enqueue_gemm(const Step& step, const parity_node_desc& node) {
  auto floats_of = [&](plan::Operand o) -> int64_t {
    auto in = [&](int32_t i) { return numel_of(values[static_cast<size_t>(node.inputs[i])]); };
    auto out = [&](int32_t i) { return numel_of(values[static_cast<size_t>(node.outputs[i])]); };
    switch (o) {
      case plan::Operand::ones: return layout.ones_offset < layout.hyperparameter_offset
                                           ? (layout.hyperparameter_offset - layout.ones_offset) / 4
                                           : 0;
      case plan::Operand::x: return in(0);
      case plan::Operand::w: return in(1);
      case plan::Operand::bias: return in(2);
      case plan::Operand::dy: return node.op == PARITY_OP_LINEAR_BWD_DATA ? in(0) : in(1);
      case plan::Operand::y: case plan::Operand::dx: case plan::Operand::dw: return out(0);
      case plan::Operand::db: return out(1);
    }
    return 0;
  };
  auto check = [&](plan::Operand o, int rows, int cols, int ld, const char* role) {
    if (rows < 1 || cols < 1 || ld < rows || matrix_floats(rows, cols, ld) > floats_of(o))
      fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': cuBLAS operand ", role, " (",
                                       rows, "x", cols, ", leading dimension ", ld, ") reaches beyond its ",
                                       floats_of(o), " floats"));
  };
  for (const plan::GemmCall& g : step.linear.gemms) {
    check(g.a, g.transpose_a ? g.k : g.m, g.transpose_a ? g.m : g.k, g.lda, "A");
    check(g.b, g.transpose_b ? g.n : g.k, g.transpose_b ? g.k : g.n, g.ldb, "B");
    check(g.c, g.m, g.n, g.ldc, "C");
  }
  for (const plan::GemvCall& g : step.linear.gemvs) {
    check(g.a, g.m, g.n, g.lda, "A");
    check(g.x, g.transpose_a ? g.m : g.n, 1, g.transpose_a ? g.m : g.n, "x");
    check(g.y, g.transpose_a ? g.n : g.m, 1, g.transpose_a ? g.n : g.m, "y");
  }
  queue_native(*this, node);
}

void parity_executable_object::enqueue_optimizer(const Step& step, const parity_node_desc& node) {
  queue_native(*this, node, region(step.hyperparameter_offset));
}

void parity_executable_object::enqueue_native(const parity_node_desc& node) { queue_native(*this, node); }

void parity_executable_object::enqueue_fill(void* words, int64_t count, uint32_t bits) {
  parity::gpu::rt::device().launch(instance->stream, "fill_words", {},
                                   {{words, static_cast<size_t>(count) * sizeof(uint32_t)}}, [words, count, bits] {
                                     auto* w = static_cast<uint32_t*>(words);
                                     for (int64_t i = 0; i < count; ++i) w[i] = bits;
                                   });
}

void parity_executable_object::bind_library() {}
