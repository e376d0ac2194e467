// backends/gpu/gpu_executable.h — the object behind a GPU executable handle, for every target:
// its values, device arena and input slots, the compiled steps (Step, with what the target's
// library keeps per step) and the dispatchers that check and launch the native kernels.
// gpu_compile.cpp makes one, gpu_launch.cpp queues its steps, gpu_execute.cpp holds the other
// executable entry points. What differs per target is declared here as the executable's route
// functions (enqueue_convolution, ...) and defined by the target's library source:
// backends/cuda/cuda_library.cpp (cuDNN, cuBLAS), backends/hip/hip_library.cpp and
// backends/gpu_emu/emu_library.cpp (every route on the native kernels).
#pragma once

#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>

#include "backends/gpu/gpu_backend.h"
#include "backends/kit/node_hooks.h"
#include "backends/kit/poison.h"

using parity::gpu::DeviceMemory;
using parity::gpu::fail;
using parity::gpu::Persistent;
using parity::gpu::PersistentStore;
using parity::gpu::PinnedMemory;
using parity::native::msg;
using parity::native::numel_of;
using parity::native::shape_str;
using parity::native::value_name;
namespace plan = parity::cuda_decisions;

namespace parity {
namespace gpu {

using parity::native::is_persistent;

// What a route's vendor library keeps per step (cuDNN descriptors on CUDA; on the native
// targets, the checked shapes), defined by the target's library source and destroyed with the step.
struct ConvKernel;
struct ActivationKernel;
struct BatchnormKernel;
struct PoolingKernel;
void destroy_kernel(ConvKernel* kernel) noexcept;
void destroy_kernel(ActivationKernel* kernel) noexcept;
void destroy_kernel(BatchnormKernel* kernel) noexcept;
void destroy_kernel(PoolingKernel* kernel) noexcept;
struct SoftmaxKernel;
void destroy_kernel(ConvKernel* kernel) noexcept;
void destroy_kernel(ActivationKernel* kernel) noexcept;
void destroy_kernel(SoftmaxKernel* kernel) noexcept;
template <class Kernel>
struct KernelDeleter {
  void operator()(Kernel* kernel) const noexcept { destroy_kernel(kernel); }
};
template <class Kernel>
using KernelPtr = std::unique_ptr<Kernel, KernelDeleter<Kernel>>;

// One compiled node.
struct Step {
  int32_t node = 0;
  plan::RouteKind kind = plan::RouteKind::native;  // how it is built and launched (route_of)
  plan::ConvDescriptors conv_shape{};
  KernelPtr<ConvKernel> conv;  // convolution route: made when compiled with a device
  plan::AlgoChoice algo{};
  KernelPtr<ActivationKernel> flat;  // activation route
  plan::BatchnormDescriptors batchnorm_shape{};
  KernelPtr<BatchnormKernel> batchnorm;  // batchnorm route: made when compiled with a device
  KernelPtr<PoolingKernel> pool;     // pooling route, where cuDNN takes the node (plan::pooling_plan)
  KernelPtr<SoftmaxKernel> softmax;  // softmax route: made when compiled with a device
  plan::LinearCalls linear;
  int64_t hyperparameter_offset = -1;  // ADAM_STEP, SGD_STEP: where their parameters live in the arena
};

// Where a convolution's operands are during the search: addresses with the alignment the
// executable's own will have, since which algorithms run depends on it.
struct ConvOperands {
  void *x, *w, *y;
  int alignment;
};

// The target's library, per step (the target's library source):
// How the target runs a node: CUDA by plan::route_of (cuDNN, cuBLAS, its optimizer kernels,
// native kernels for the rest); the native targets take the same routes, so that the same
// planning runs, and run every route on the native kernels (all of them need the native
// workspace, `kNativeWorkspaceForEveryNode`).
extern const bool kNativeWorkspaceForEveryNode;
// Whether the target's library routes take half values as CUDA's (cuda_decisions::executor_route):
// CUDA (cuDNN PSEUDO_HALF/PSEUDO_BFLOAT16 descriptors, cublasGemmEx, the f32 epilogues of
// cuda_half_kernels.h) and the emulated device, which checks and emulates those calls; not HIP,
// whose every route runs the native kernels, so a half node is planned native there.
extern const bool kHalfOnLibraryRoutes;
// Whether the target stores bf16 and f16 values (ABI 9): every target does now. The native
// kernels take them (backends/native/cast.cuh) and CUDA's library routes are given half
// descriptors where cuda_decisions::route_of(node, values) keeps a half node on them.
inline bool stores_half_values() { return true; }
// The library's own workspace in the arena (cuBLAS's on CUDA; 0 elsewhere).
extern const int64_t kLibraryWorkspaceBytes;
// Whether choose_conv_algorithm runs algorithms on the device (cuDNN's timed search, on scratch
// operands and a workspace of the limit's size), so that a convolution's workspace is known only
// then (without a device it is counted at the limit). Elsewhere there is one algorithm, with no
// workspace of its own.
extern const bool kConvAlgorithmSearch;
// A convolution's descriptors, checked against the plan's shapes (cuDNN's output size must be
// the plan's); an element-wise activation on `count` floats.
KernelPtr<ConvKernel> make_conv_kernel(const plan::ConvDescriptors& shape);
KernelPtr<ActivationKernel> make_activation_kernel(int count, plan::Activation activation);
// A batch normalization's descriptors (x, and the [1,C,1,1] ones derived from it).
KernelPtr<BatchnormKernel> make_batchnorm_kernel(const plan::BatchnormDescriptors& shape);
// A pooling forward's descriptors (a node plan::pooling_plan puts on the library).
KernelPtr<PoolingKernel> make_pooling_kernel(const plan::PoolingDescriptors& d);
// A softmax-family node's descriptors (plan::softmax_descriptors).
KernelPtr<SoftmaxKernel> make_softmax_kernel(const plan::SoftmaxDescriptors& shape);
// Chooses the algorithm of one convolution (CUDA: cuDNN's search, cuda_conv_search.cpp; the native
// targets: the one native algorithm, which needs no workspace of its own).
plan::AlgoChoice choose_conv_algorithm(parity_backend_t b, plan::ConvDirection direction,
                                       const plan::ConvDescriptors& d, ConvKernel& kernel, const ConvOperands& at,
                                       void* workspace, const std::string& node_name);

}  // namespace gpu
}  // namespace parity

using parity::gpu::BatchnormKernel;
using parity::gpu::ConvKernel;
using parity::gpu::is_persistent;
using parity::gpu::Step;

struct parity_executable_object {
  // What the checking dispatcher sees: no device memory, the host copies of INPUT i32 values.
  struct CheckMemory {
    parity_executable_object* exe;
    float* f32(int32_t) { return nullptr; }
    int32_t* i32(int32_t) { return nullptr; }
    const int32_t* host_i32(int32_t value) {
      const std::vector<int32_t>& shadow = exe->host_inputs[static_cast<size_t>(value)];
      return shadow.empty() ? nullptr : shadow.data();
    }
    float* workspace() { return nullptr; }
    [[noreturn]] void fail(parity_status status, const std::string& message) { ::fail(status, message); }
  };
  // How the native dispatcher reaches this executable's values: device pointers of the slot
  // being launched; INPUT i32 values (labels, Adam's step) are also kept on the host as
  // written, so their data checks need no device synchronisation.
  struct Memory {
    parity_executable_object* exe;
    float* f32(int32_t value) { return static_cast<float*>(exe->pointer(value, exe->launch_slot)); }
    int32_t* i32(int32_t value) { return static_cast<int32_t*>(exe->pointer(value, exe->launch_slot)); }
    const int32_t* host_i32(int32_t value) {
      const std::vector<int32_t>& shadow = exe->host_inputs[static_cast<size_t>(value)];
      return shadow.empty() ? nullptr : shadow.data();
    }
    float* workspace() { return static_cast<float*>(exe->region(exe->layout.native_workspace_offset)); }
    [[noreturn]] void fail(parity_status status, const std::string& message) { ::fail(status, message); }
  };

  parity_backend_instance* instance = nullptr;
  std::vector<parity_value_desc> values;
  std::vector<parity_node_desc> nodes;
  std::shared_ptr<PersistentStore> persistent;
  std::vector<std::shared_ptr<Persistent>> held;  // the persistent values this plan uses
  plan::ArenaLayout layout;
  DeviceMemory arena;                             // the executable's one device allocation
  PinnedMemory pinned[2];                         // per input slot: what write_value stages
  std::vector<int32_t> input_index;               // per value: its index among the INPUT values, or -1
  std::vector<int> latest_slot;                   // per INPUT value: the slot holding its latest bytes, -1 none
  std::vector<std::vector<int32_t>> host_inputs;  // per value: host copy of an i32 INPUT, once written
  std::vector<Step> steps;
  bool poison = false;
  plan::CaptureDecision capture{false, ""};
  parity::gpu::GraphExec graphs[2] = {};    // per input slot, once captured
  parity::gpu::Event inputs_ready[2] = {};  // copy stream: the slot's inputs are in place
  parity::gpu::Event step_done[2] = {};     // compute stream: the step that read the slot ended
  int fill_slot = 0;            // the slot write_value fills and the next execute runs
  bool slot_open[2] = {false, false};  // the copy stream already waits for the slot's last step
  int runs[2] = {0, 0};                 // executes per slot: the first runs eagerly, the second captures
  int launch_slot = 0;          // the slot the steps being launched read
  // set_node_hooks' points (ABI 8), called as the steps are queued; while any are set, execute
  // neither captures nor replays a graph, so that every execute calls them.
  parity::kit::NodeHookSchedule node_hooks;
  Memory memory{this};
  parity::native::NodeDispatcher<Memory> dispatcher{parity::gpu::kName, parity::native::op_name,
                                                    parity::gpu::native_ops(), values, memory};
  CheckMemory check_memory{this};
  // The native ops in their check pass, launching nothing: at compile it checks every node's
  // arity, dtypes and shapes as simt and HIP do; at each execute, the run-time data (labels,
  // Adam's step) from the host copies of the INPUT values, before anything is queued.
  parity::native::NodeDispatcher<CheckMemory> checker{parity::gpu::kName, parity::native::op_name,
                                                      parity::gpu::native_ops(), values, check_memory,
                                                      parity::native::NodePass::check};

  void* region(int64_t offset) const { return static_cast<char*>(arena.ptr) + offset; }
  // Where a value lives in the arena (INPUT values: in the slot), or -1 for a persistent value.
  int64_t arena_offset(int32_t value, int slot) const {
    const parity_value_desc& v = values[static_cast<size_t>(value)];
    if (is_persistent(v)) return -1;
    const int32_t input = input_index[static_cast<size_t>(value)];
    if (input >= 0) return layout.slot_offset[slot] + layout.input_offsets[static_cast<size_t>(input)];
    return layout.plan_offset + v.offset;
  }
  // The value's address in an arena at `base` (the executable's own, or the search's scratch).
  void* address(int32_t value, int slot, void* base) const {
    const int64_t offset = arena_offset(value, slot);
    return offset < 0 ? held_pointer[static_cast<size_t>(value)] : static_cast<char*>(base) + offset;
  }
  void* pointer(int32_t value, int slot) const { return address(value, slot, arena.ptr); }
  std::vector<void*> held_pointer;  // per value: a persistent value's storage

  // The first write into a slot after a step used it: the copy stream waits for that step, and
  // the host for the slot's previous transfers out of its pinned memory.
  void open_slot(int slot) {
    if (slot_open[slot]) return;
    parity::gpu::rt::event_sync(inputs_ready[slot]);
    parity::gpu::rt::stream_wait(instance->copy_stream, step_done[slot]);
    slot_open[slot] = true;
  }

  // `hooks`: called at their points around each step, with the compute stream; nullptr while
  // capturing (a replayed graph calls nothing).
  void enqueue_steps(int slot, const parity::kit::NodeHookSchedule* hooks);
  void enqueue(const Step& step);  // by the step's route kind (cuda_decisions.h)
  void* operand(const parity_node_desc& node, bool output, int32_t slot);
  void capture_slot(int slot);

  // The routes, per target (its library source), queued on the instance's compute stream.
  void enqueue_convolution(const Step& step, const parity_node_desc& node);
  void enqueue_activation(const Step& step, const parity_node_desc& node);
  void enqueue_pooling(const Step& step, const parity_node_desc& node);
  void enqueue_softmax(const Step& step, const parity_node_desc& node);
  void enqueue_gemm(const Step& step, const parity_node_desc& node);
  void enqueue_optimizer(const Step& step, const parity_node_desc& node);
  void enqueue_batchnorm(const Step& step, const parity_node_desc& node);
  void enqueue_native(const parity_node_desc& node);  // the native kernels, with the dispatcher's checks
  void enqueue_fill(void* words, int64_t count, uint32_t bits);  // the poison of a temporary
  // Before a step is queued, outside any capture: the library's per-executable state (cuBLAS's
  // workspace on CUDA).
  void bind_library();

  ~parity_executable_object() {
    for (int s = 0; s < 2; ++s) {
      parity::gpu::rt::graph_exec_destroy(graphs[s]);
      parity::gpu::rt::event_destroy(inputs_ready[s]);
      parity::gpu::rt::event_destroy(step_done[s]);
    }
  }
};
