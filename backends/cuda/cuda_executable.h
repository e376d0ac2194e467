// backends/cuda/cuda_executable.h — the object behind a CUDA executable handle: its values,
// device arena and input slots, the compiled steps (Step, with their cuDNN descriptors) and
// the dispatchers that check and launch the native kernels. cuda_compile.cpp makes one,
// cuda_conv_search.cpp chooses its convolution algorithms, cuda_launch.cpp queues its steps,
// cuda_executable.cpp holds the other executable entry points.
#pragma once

#include <climits>
#include <cstdio>
#include <cstring>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/kit/poison.h"

using parity::cuda_backend::DeviceMemory;
using parity::cuda_backend::fail;
using parity::cuda_backend::Persistent;
using parity::cuda_backend::PersistentStore;
using parity::cuda_backend::PinnedMemory;
using parity::native::msg;
using parity::native::numel_of;
using parity::native::shape_str;
using parity::native::value_name;
namespace plan = parity::cuda_decisions;

namespace parity {
namespace cuda_backend {

using parity::native::is_persistent;
// The cuDNN descriptors of one convolution node, destroyed with it.
struct ConvDescriptorSet {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit ConvDescriptorSet(const plan::ConvDescriptors& d) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDA_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDA_CHECK(cudnnCreateTensorDescriptor(&bias));
    CUDA_CHECK(cudnnCreateFilterDescriptor(&w));
    CUDA_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.x.n, d.x.c, d.x.h, d.x.w));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.y.n, d.y.c, d.y.h, d.y.w));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.bias.n, d.bias.c, d.bias.h,
                                          d.bias.w));
    CUDA_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d.w.n, d.w.c, d.w.h, d.w.w));
    // Cross-correlation, as PyTorch's Conv2d and every other parity backend compute it.
    CUDA_CHECK(cudnnSetConvolution2dDescriptor(conv, d.pad_h, d.pad_w, d.stride_h, d.stride_w, d.dilation_h,
                                               d.dilation_w, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    int n = 0, c = 0, h = 0, wd = 0;  // cuDNN's own output size must be the plan's
    CUDA_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd));
    if (n != d.y.n || c != d.y.c || h != d.y.h || wd != d.y.w)
      fail(PARITY_STATUS_SHAPE, msg("cuda: cuDNN computes a convolution output of ", n, "x", c, "x", h, "x", wd,
                                    ", the plan has ", d.y.n, "x", d.y.c, "x", d.y.h, "x", d.y.w));
  }
  ConvDescriptorSet(const ConvDescriptorSet&) = delete;
  ConvDescriptorSet& operator=(const ConvDescriptorSet&) = delete;
  ~ConvDescriptorSet() {
    if (conv) (void)cudnnDestroyConvolutionDescriptor(conv);
    if (w) (void)cudnnDestroyFilterDescriptor(w);
    if (bias) (void)cudnnDestroyTensorDescriptor(bias);
    if (y) (void)cudnnDestroyTensorDescriptor(y);
    if (x) (void)cudnnDestroyTensorDescriptor(x);
  }
};

// One flat float tensor descriptor ([1,1,1,count]) and the cuDNN activation of an element-wise
// op on an activation route (route_of in cuda_decisions.cpp).
struct FlatDescriptor {
  cudnnTensorDescriptor_t desc = nullptr;
  cudnnActivationDescriptor_t activation = nullptr;
  FlatDescriptor(int count, cudnnActivationMode_t mode) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&desc));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1, count));
    CUDA_CHECK(cudnnCreateActivationDescriptor(&activation));
    CUDA_CHECK(cudnnSetActivationDescriptor(activation, mode, CUDNN_PROPAGATE_NAN, 0.0));
  }
  FlatDescriptor(const FlatDescriptor&) = delete;
  FlatDescriptor& operator=(const FlatDescriptor&) = delete;
  ~FlatDescriptor() {
    if (activation) (void)cudnnDestroyActivationDescriptor(activation);
    if (desc) (void)cudnnDestroyTensorDescriptor(desc);
  }
};

// One compiled node.
struct Step {
  int32_t node = 0;
  plan::RouteKind kind = plan::RouteKind::native;  // how it is built and launched (route_of)
  plan::ConvDescriptors conv_shape{};
  std::unique_ptr<ConvDescriptorSet> conv;
  plan::AlgoChoice algo{};
  std::unique_ptr<FlatDescriptor> flat;
  plan::LinearCalls linear;
  int64_t hyperparameter_offset = -1;  // ADAM_STEP, SGD_STEP: where their parameters live in the arena
};

// Where a convolution's operands are during the search: addresses with the alignment the
// executable's own will have, since which algorithms run depends on it.
struct ConvOperands {
  void *x, *w, *y;
  int alignment;
};

// Chooses the algorithm of one convolution (cuda_conv_search.cpp).
plan::AlgoChoice choose_conv_algorithm(parity_backend_t b, plan::ConvDirection direction,
                                       const plan::ConvDescriptors& d, ConvDescriptorSet& set,
                                       const ConvOperands& at, void* workspace, const std::string& node_name);

}  // namespace cuda_backend
}  // namespace parity

using parity::cuda_backend::ConvDescriptorSet;
using parity::cuda_backend::FlatDescriptor;
using parity::cuda_backend::is_persistent;
using parity::cuda_backend::Step;

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
  Memory memory{this};
  parity::native::NodeDispatcher<Memory> dispatcher{"cuda", parity::native::op_name,
                                                    parity::native::cuda::native_ops(), values, memory};
  CheckMemory check_memory{this};
  // The native ops in their check pass, launching nothing: at compile it checks every node's
  // arity, dtypes and shapes as simt and HIP do; at each execute, the run-time data (labels,
  // Adam's step) from the host copies of the INPUT values, before anything is queued.
  parity::native::NodeDispatcher<CheckMemory> checker{"cuda", parity::native::op_name,
                                                      parity::native::cuda::native_ops(), values, check_memory,
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

  void enqueue_steps(int slot);
  void enqueue(const Step& step);  // by the step's route kind (cuda_decisions.h)
  void enqueue_convolution(const Step& step, const parity_node_desc& node);
  void enqueue_gemm(const Step& step, const parity_node_desc& node);
  void enqueue_optimizer(const Step& step, const parity_node_desc& node);
  void* operand(const parity_node_desc& node, bool output, int32_t slot);
  void capture_slot(int slot);

  ~parity_executable_object() {
    for (int s = 0; s < 2; ++s) {
      parity::gpu::rt::graph_exec_destroy(graphs[s]);
      parity::gpu::rt::event_destroy(inputs_ready[s]);
      parity::gpu::rt::event_destroy(step_done[s]);
    }
  }
};
