// backends/cuda/cuda_executable.cpp — the CUDA plugin's executables: compile turns a plan into
// steps (cuDNN convolutions with descriptors and algorithms chosen once per shape, cuBLAS
// products, native kernels for the rest: cuda_decisions::route_of says which and why) over one device
// arena (cuda_decisions::layout_arena); write_value feeds INPUT values from pinned memory on the copy
// stream into one of two input slots while the step reading the other slot runs; execute checks
// the run-time data on the host, then launches the steps one by one (the first use of a slot,
// or with capture off) or the slot's CUDA graph (captured at its second use, then replayed).
//
// Never executed in this project's CI (no NVIDIA GPU); the decisions it acts on are unit-tested
// on the CPU (tests/test_cuda_decisions.cpp).
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

namespace {

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

// One flat float tensor descriptor ([1,1,1,count]) for the element-wise cuDNN ops.
struct FlatDescriptor {
  cudnnTensorDescriptor_t desc = nullptr;
  cudnnActivationDescriptor_t relu = nullptr;
  explicit FlatDescriptor(int count) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&desc));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1, count));
    CUDA_CHECK(cudnnCreateActivationDescriptor(&relu));
    CUDA_CHECK(cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
  }
  FlatDescriptor(const FlatDescriptor&) = delete;
  FlatDescriptor& operator=(const FlatDescriptor&) = delete;
  ~FlatDescriptor() {
    if (relu) (void)cudnnDestroyActivationDescriptor(relu);
    if (desc) (void)cudnnDestroyTensorDescriptor(desc);
  }
};

// One compiled node.
struct Step {
  int32_t node = 0;
  plan::ConvDescriptors conv_shape{};
  std::unique_ptr<ConvDescriptorSet> conv;
  plan::AlgoChoice algo{};
  std::unique_ptr<FlatDescriptor> flat;
  plan::LinearCalls linear;
  int64_t hyperparameter_offset = -1;  // ADAM_STEP, SGD_STEP: where their parameters live in the arena
};

template <class Perf>
std::vector<plan::AlgoCandidate> candidates_of(const Perf* perf, int count) {
  std::vector<plan::AlgoCandidate> out;
  for (int i = 0; i < count; ++i)
    out.push_back({static_cast<int>(perf[i].algo), perf[i].status == CUDNN_STATUS_SUCCESS, perf[i].time,
                   static_cast<int64_t>(perf[i].memory), perf[i].determinism == CUDNN_DETERMINISTIC,
                   perf[i].mathType != CUDNN_FMA_MATH, perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
                   static_cast<int>(perf[i].mathType)});
  return out;
}

template <class Perf>
std::vector<int> order_of(const Perf* perf, int count) {
  std::vector<int> out;
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) out.push_back(static_cast<int>(perf[i].algo));
  return out;
}

// Where a convolution's operands are during the search: addresses with the alignment the
// executable's own will have, since which algorithms run depends on it.
struct ConvOperands {
  void *x, *w, *y;
  int alignment;
};

// Chooses the algorithm of one convolution unless the instance has chosen for this shape and
// alignment already: cudnnFind*AlgorithmEx runs and times every algorithm on the operands with
// a workspace of the limit's size; cudnnGet*Algorithm_v7 gives cuDNN's heuristic ranking;
// cuda_decisions::choose_algorithm picks by the rules.
plan::AlgoChoice choose_conv_algorithm(parity_backend_t b, plan::ConvDirection direction,
                                       const plan::ConvDescriptors& d, ConvDescriptorSet& set,
                                       const ConvOperands& at, void* workspace, const std::string& node_name) {
  const std::string key = plan::conv_cache_key(direction, d, b->options, at.alignment);
  if (auto it = b->algorithms.find(key); it != b->algorithms.end()) return it->second;
  // FMA math unless TF32 is allowed: the search then only returns what the math type permits.
  CUDA_CHECK(cudnnSetConvolutionMathType(set.conv, b->options.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  const size_t ws = static_cast<size_t>(b->options.conv_workspace_limit);
  std::vector<plan::AlgoCandidate> candidates;
  std::vector<int> heuristic;
  int returned = 0;
  if (direction == plan::ConvDirection::forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(b->cudnn, set.x, set.w, set.conv, set.y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    heuristic = order_of(perf, returned);
    CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(b->cudnn, set.x, at.x, set.w, at.w, set.conv, set.y, at.y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, workspace, ws));
    candidates = candidates_of(perf, returned);
  } else if (direction == plan::ConvDirection::backward_data) {  // dy at at.y, dx at at.x
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(b->cudnn, set.w, set.y, set.conv, set.x,
                                                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
    heuristic = order_of(perf, returned);
    CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(b->cudnn, set.w, at.w, set.y, at.y, set.conv, set.x, at.x,
                                                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf,
                                                           workspace, ws));
    candidates = candidates_of(perf, returned);
  } else {  // dy at at.y, dw at at.w
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(b->cudnn, set.x, set.y, set.conv, set.w,
                                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
    heuristic = order_of(perf, returned);
    CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(b->cudnn, set.x, at.x, set.y, at.y, set.conv, set.w, at.w,
                                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf,
                                                             workspace, ws));
    candidates = candidates_of(perf, returned);
  }
  const plan::AlgoChoice choice =
      plan::choose_algorithm(candidates, heuristic, b->options, msg("node '", node_name, "' (", key, ")"));
  b->algorithms.emplace(key, choice);
  return choice;
}

}  // namespace

// The native dispatcher run without launching anything: at compile it checks every node's
// arity, dtypes and shapes as simt and HIP do; at each execute, the run-time data (labels,
// Adam's step) from the host copies of the INPUT values, before anything is queued.
const parity::native::NativeOps& no_launches() {
  using parity::native::ConvShape;
  using parity::native::PoolShape;
  static const parity::native::NativeOps ops{
      "cuda (checks only)",
      32,
      [](const float*, const float*, const float*, float*, const ConvShape&, float*) {},
      [](const float*, const float*, float*, const ConvShape&, float*) {},
      [](const float*, const float*, float*, float*, const ConvShape&, float*) {},
      [](const float*, const float*, const float*, float*, int64_t, int64_t, int64_t) {},
      [](const float*, const float*, float*, int64_t, int64_t, int64_t) {},
      [](const float*, const float*, float*, float*, int64_t, int64_t, int64_t) {},
      [](const float*, float*, int64_t) {},
      [](const float*, const float*, float*, int64_t) {},
      [](const float*, float*, int32_t*, const PoolShape&) {},
      [](const float*, const int32_t*, float*, const PoolShape&) {},
      [](const float*, float*, int64_t) {},
      [](const float*, const float*, float*, int64_t) {},
      [](float*, int64_t, float) {},
      [](const float*, const int32_t*, float*, int64_t, int64_t, float*) {},
      [](const float*, const int32_t*, const float*, float*, int64_t, int64_t) {},
      [](const float*, int32_t*, int64_t, int64_t) {},
      [](const float*, const int32_t*, float*, int64_t, int64_t) {},
      [](float*, const float*, float*, float*, const int32_t*, int64_t, parity_adam_params) {},
      [](float*, const float*, float*, int64_t, parity_sgd_params) {}};
  return ops;
}

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
  cudaGraphExec_t graphs[2] = {nullptr, nullptr};  // per input slot, once captured
  cudaEvent_t inputs_ready[2] = {nullptr, nullptr};  // copy stream: the slot's inputs are in place
  cudaEvent_t step_done[2] = {nullptr, nullptr};     // compute stream: the step that read the slot ended
  int fill_slot = 0;            // the slot write_value fills and the next execute runs
  bool slot_open[2] = {false, false};  // the copy stream already waits for the slot's last step
  int runs[2] = {0, 0};                 // executes per slot: the first runs eagerly, the second captures
  int launch_slot = 0;          // the slot the steps being launched read
  Memory memory{this};
  parity::native::NodeDispatcher<Memory> dispatcher{"cuda", parity::native::op_name,
                                                    parity::native::cuda::native_ops(), values, memory};
  CheckMemory check_memory{this};
  parity::native::NodeDispatcher<CheckMemory> checker{"cuda", parity::native::op_name, no_launches(), values,
                                                      check_memory};

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

  const parity_value_desc& desc(int32_t value, const char* what) const {
    if (value < 0 || value >= static_cast<int32_t>(values.size()))
      fail(PARITY_STATUS_INVALID_ARGUMENT,
           msg("cuda: ", what, " of value ", value, ": no such value, the plan has ", values.size()));
    return values[static_cast<size_t>(value)];
  }
  void check_bytes(const char* what, const parity_value_desc& v, int64_t bytes) const {
    const int64_t expected = numel_of(v) * 4;
    if (bytes != expected)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: ", what, " value '", v.name, "' ", shape_str(v.rank, v.dims),
                                               " needs ", expected, " bytes, got ", bytes));
  }

  // The first write into a slot after a step used it: the copy stream waits for that step, and
  // the host for the slot's previous transfers out of its pinned memory.
  void open_slot(int slot) {
    if (slot_open[slot]) return;
    CUDA_CHECK(cudaEventSynchronize(inputs_ready[slot]));
    CUDA_CHECK(cudaStreamWaitEvent(instance->copy_stream, step_done[slot], 0));
    slot_open[slot] = true;
  }

  void enqueue_steps(int slot);
  void enqueue(const Step& step);
  void capture_slot(int slot);

  ~parity_executable_object() {
    for (int s = 0; s < 2; ++s) {
      if (graphs[s]) (void)cudaGraphExecDestroy(graphs[s]);
      if (inputs_ready[s]) (void)cudaEventDestroy(inputs_ready[s]);
      if (step_done[s]) (void)cudaEventDestroy(step_done[s]);
    }
  }
};

namespace {
const float kOne = 1.0f, kZero = 0.0f;

cublasOperation_t op_of(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }
}  // namespace

void parity_executable_object::enqueue(const Step& step) {
  const parity_node_desc& node = nodes[static_cast<size_t>(step.node)];
  cudnnHandle_t cudnn = instance->cudnn;
  void* conv_workspace = region(layout.conv_workspace_offset);
  const size_t conv_workspace_bytes = static_cast<size_t>(step.algo.workspace_bytes);
  auto at = [&](bool output, int32_t slot) {
    return pointer(output ? node.outputs[slot] : node.inputs[slot], launch_slot);
  };
  switch (node.op) {
    case PARITY_OP_CONV2D: {
      const ConvDescriptorSet& d = *step.conv;
      CUDA_CHECK(cudnnConvolutionForward(cudnn, &kOne, d.x, at(false, 0), d.w, at(false, 1), d.conv,
                                         static_cast<cudnnConvolutionFwdAlgo_t>(step.algo.algo), conv_workspace,
                                         conv_workspace_bytes, &kZero, d.y, at(true, 0)));
      CUDA_CHECK(cudnnAddTensor(cudnn, &kOne, d.bias, at(false, 2), &kOne, d.y, at(true, 0)));
      return;
    }
    case PARITY_OP_CONV2D_BWD_DATA: {
      const ConvDescriptorSet& d = *step.conv;
      CUDA_CHECK(cudnnConvolutionBackwardData(cudnn, &kOne, d.w, at(false, 1), d.y, at(false, 0), d.conv,
                                              static_cast<cudnnConvolutionBwdDataAlgo_t>(step.algo.algo),
                                              conv_workspace, conv_workspace_bytes, &kZero, d.x, at(true, 0)));
      return;
    }
    case PARITY_OP_CONV2D_BWD_WEIGHT: {
      const ConvDescriptorSet& d = *step.conv;
      CUDA_CHECK(cudnnConvolutionBackwardFilter(cudnn, &kOne, d.x, at(false, 0), d.y, at(false, 1), d.conv,
                                                static_cast<cudnnConvolutionBwdFilterAlgo_t>(step.algo.algo),
                                                conv_workspace, conv_workspace_bytes, &kZero, d.w, at(true, 0)));
      CUDA_CHECK(cudnnConvolutionBackwardBias(cudnn, &kOne, d.y, at(false, 1), &kZero, d.bias, at(true, 1)));
      return;
    }
    case PARITY_OP_RELU:
      CUDA_CHECK(cudnnActivationForward(cudnn, step.flat->relu, &kOne, step.flat->desc, at(false, 0), &kZero,
                                        step.flat->desc, at(true, 0)));
      return;
    case PARITY_OP_LINEAR:
    case PARITY_OP_LINEAR_BWD_DATA:
    case PARITY_OP_LINEAR_BWD_WEIGHT: {
      auto operand = [&](plan::Operand o) -> float* {
        void* p = nullptr;
        switch (o) {
          case plan::Operand::ones: p = region(layout.ones_offset); break;
          case plan::Operand::x: p = at(false, 0); break;                                  // LINEAR, BWD_WEIGHT
          case plan::Operand::w: p = at(false, 1); break;                                  // LINEAR, BWD_DATA
          case plan::Operand::bias: p = at(false, 2); break;                               // LINEAR
          case plan::Operand::dy: p = node.op == PARITY_OP_LINEAR_BWD_DATA ? at(false, 0) : at(false, 1); break;
          case plan::Operand::y: case plan::Operand::dx: case plan::Operand::dw: p = at(true, 0); break;
          case plan::Operand::db: p = at(true, 1); break;
        }
        return static_cast<float*>(p);
      };
      for (const plan::GemmCall& g : step.linear.gemms)
        CUDA_CHECK(cublasSgemm(instance->cublas, op_of(g.transpose_a), op_of(g.transpose_b), g.m, g.n, g.k, &kOne,
                               operand(g.a), g.lda, operand(g.b), g.ldb, &g.beta, operand(g.c), g.ldc));
      for (const plan::GemvCall& g : step.linear.gemvs)
        CUDA_CHECK(cublasSgemv(instance->cublas, op_of(g.transpose_a), g.m, g.n, &kOne, operand(g.a), g.lda,
                               operand(g.x), 1, &g.beta, operand(g.y), 1));
      return;
    }
    case PARITY_OP_ADAM_STEP:
      parity::native::cuda::adam_step_device(
          static_cast<float*>(at(false, 0)), static_cast<const float*>(at(false, 1)), static_cast<float*>(at(false, 2)),
          static_cast<float*>(at(false, 3)), static_cast<const int32_t*>(at(false, 4)),
          numel_of(values[static_cast<size_t>(node.inputs[0])]),
          static_cast<const parity_adam_params*>(region(step.hyperparameter_offset)));
      return;
    case PARITY_OP_SGD_STEP:
      parity::native::cuda::sgd_step_device(
          static_cast<float*>(at(false, 0)), static_cast<const float*>(at(false, 1)), static_cast<float*>(at(false, 2)),
          numel_of(values[static_cast<size_t>(node.inputs[0])]),
          static_cast<const parity_sgd_params*>(region(step.hyperparameter_offset)));
      return;
    default:
      dispatcher.run(node);  // the native kernels, with the dispatcher's shape checks
      return;
  }
}

// Queues the whole step reading input slot `slot` on the compute stream (captured or not).
void parity_executable_object::enqueue_steps(int slot) {
  launch_slot = slot;
  if (poison)
    parity::kit::poison_temps(values, [&](size_t i, int64_t count, uint32_t bits) {
      parity::native::cuda::fill_words(pointer(static_cast<int32_t>(i), slot), count, bits);
    });
  for (const Step& step : steps) enqueue(step);
}

// Captures the step reading `slot` as a CUDA graph. Capture queues nothing, so a failure costs
// nothing but the graph: the step is then launched node by node from now on, and the reason is
// printed once (the results are the same; only the launch overhead differs).
void parity_executable_object::capture_slot(int slot) {
  cudaStream_t stream = instance->stream;
  cudaGraph_t graph = nullptr;
  bool capturing = false;
  std::string failure;
  try {
    CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    capturing = true;
    enqueue_steps(slot);
    capturing = false;
    CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    CUDA_CHECK(cudaGraphInstantiate(&graphs[slot], graph, 0));
  } catch (const std::exception& e) {
    failure = e.what();
    if (capturing) (void)cudaStreamEndCapture(stream, &graph);  // leaves the stream usable
    graphs[slot] = nullptr;
  }
  if (graph) (void)cudaGraphDestroy(graph);  // the instantiated graph does not need it
  if (failure.empty()) return;
  (void)cudaGetLastError();
  capture = {false, msg("capturing the step as a CUDA graph failed (", failure, "); launching node by node")};
  std::fprintf(stderr, "parity: %s\n", capture.why.c_str());
}

namespace parity {
namespace cuda_backend {
namespace {

// cuBLAS's workspace: 32 MiB, what NVIDIA recommends for Hopper (4 MiB suffices before it); set
// by the plugin so that cuBLAS allocates nothing while a step is captured.
constexpr int64_t kCublasWorkspaceBytes = int64_t{32} << 20;

int64_t linear_rows(const parity_node_desc& node, const std::vector<parity_value_desc>& values, int64_t* in,
                    int64_t* out) {
  // The weight (LINEAR, BWD_DATA: input 1; BWD_WEIGHT: output 0) is [out, in]; x or dx gives the rows.
  const parity_value_desc& w = values[static_cast<size_t>(node.op == PARITY_OP_LINEAR_BWD_WEIGHT ? node.outputs[0]
                                                                                                  : node.inputs[1])];
  if (w.rank != 2)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': weight '", value_name(w), "' ",
                                  shape_str(w.rank, w.dims), " must have rank 2 [out, in]"));
  *out = w.dims[0];
  *in = w.dims[1];
  const parity_value_desc& x = values[static_cast<size_t>(node.op == PARITY_OP_LINEAR_BWD_DATA ? node.outputs[0]
                                                                                              : node.inputs[0])];
  if (numel_of(x) % *in != 0)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': '", value_name(x), "' ", shape_str(x.rank, x.dims),
                                  " is not a whole number of rows of ", *in));
  return numel_of(x) / *in;
}

}  // namespace

parity_status compile(parity_backend_t b, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err) {
  if (!b || !plan || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "cuda: compile: NULL argument");
  *out = nullptr;
  return guarded(err, [&] {
    parity::native::validate_plan("cuda", plan, /*inputs_in_arena=*/false);  // inputs live in the slots
    if (share_with && share_with->instance != b)
      fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: share_with must be an executable of this same backend instance");
    b->make_current();
    auto exe = std::make_unique<parity_executable_object>();
    exe->instance = b;
    exe->values.assign(plan->values, plan->values + plan->num_values);
    exe->nodes.assign(plan->nodes, plan->nodes + plan->num_nodes);
    exe->persistent = share_with ? share_with->persistent : std::make_shared<PersistentStore>();
    exe->poison = (flags & PARITY_COMPILE_POISON_OUTPUTS) != 0;
    exe->capture = plan::decide_capture(b->options, b->external_legacy_stream, plan->num_nodes);

    // Values: persistent ones in the shared store, INPUT ones in the slots, TEMP ones in the arena.
    plan::ArenaRequest request{plan->arena_bytes, {}, 0, 0, kCublasWorkspaceBytes, 0, 0};
    const size_t count = exe->values.size();
    exe->input_index.assign(count, -1);
    exe->held_pointer.assign(count, nullptr);
    exe->host_inputs.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const parity_value_desc& v = exe->values[i];
      if (is_persistent(v)) {
        exe->held.push_back(parity::native::shared_persistent("cuda", *exe->persistent, v));
        exe->held_pointer[i] = exe->held.back()->memory.ptr;
      } else if (v.kind == PARITY_VALUE_INPUT) {
        exe->input_index[i] = static_cast<int32_t>(request.input_bytes.size());
        request.input_bytes.push_back(v.bytes);
      }
    }
    exe->latest_slot.assign(request.input_bytes.size(), -1);

    // Every node as simt and HIP check it (value indices, arity, dtypes, shapes), before any
    // descriptor is built from it.
    (void)exe->checker.workspace_floats(exe->nodes);
    for (const parity_node_desc& node : exe->nodes) exe->checker.run(node);

    // Steps: descriptors and algorithms (searched once per shape on this instance), GEMM calls,
    // optimizer parameters; what the native nodes need is the dispatcher's.
    std::vector<parity_node_desc> native_nodes;
    for (int32_t i = 0; i < plan->num_nodes; ++i) {
      const parity_node_desc& node = exe->nodes[static_cast<size_t>(i)];
      Step step;
      step.node = i;
      switch (node.op) {
        case PARITY_OP_CONV2D:
        case PARITY_OP_CONV2D_BWD_DATA:
        case PARITY_OP_CONV2D_BWD_WEIGHT: {
          // The algorithm is chosen below, once the layout gives the operands' alignment.
          step.conv_shape = plan::conv_descriptors(node, exe->values);
          step.conv = std::make_unique<ConvDescriptorSet>(step.conv_shape);
          break;
        }
        case PARITY_OP_RELU: {
          const int64_t n = numel_of(exe->values[static_cast<size_t>(node.inputs[0])]);
          if (n != numel_of(exe->values[static_cast<size_t>(node.outputs[0])]) || n > INT32_MAX)
            fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': relu input and output must have the same ",
                                          "element count, at most 2^31 - 1"));
          step.flat = std::make_unique<FlatDescriptor>(static_cast<int>(n));
          break;
        }
        case PARITY_OP_LINEAR:
        case PARITY_OP_LINEAR_BWD_DATA:
        case PARITY_OP_LINEAR_BWD_WEIGHT: {
          int64_t in = 0, outs = 0;
          const int64_t rows = linear_rows(node, exe->values, &in, &outs);
          step.linear = node.op == PARITY_OP_LINEAR            ? plan::linear_forward_calls(rows, in, outs)
                        : node.op == PARITY_OP_LINEAR_BWD_DATA ? plan::linear_backward_data_calls(rows, in, outs)
                                                               : plan::linear_backward_weight_calls(rows, in, outs);
          request.ones_count = std::max(request.ones_count, rows);
          break;
        }
        case PARITY_OP_ADAM_STEP:
        case PARITY_OP_SGD_STEP:
          step.hyperparameter_offset = request.hyperparameter_bytes;  // relative until the layout is known
          request.hyperparameter_bytes += sizeof(parity_op_params);
          native_nodes.push_back(node);  // the dispatcher checks its shapes
          break;
        default:
          native_nodes.push_back(node);
          break;
      }
      exe->steps.push_back(std::move(step));
    }
    request.native_workspace_bytes = exe->dispatcher.workspace_floats(native_nodes) * 4;
    exe->layout = plan::layout_arena(request);  // the convolution workspace (last) still 0

    // Convolution algorithms: searched on a scratch copy of the arena's layout (same offsets
    // from a 256-aligned base, so the same alignments) plus a workspace of the limit's size,
    // freed before the arena is allocated with the largest chosen workspace at its end.
    bool any_conv = false;
    for (const Step& step : exe->steps) any_conv = any_conv || step.conv;
    if (any_conv) {
      const int64_t scratch_arena = exe->layout.total_bytes;
      DeviceMemory scratch;
      scratch.allocate(scratch_arena + b->options.conv_workspace_limit);
      void* search_workspace = static_cast<char*>(scratch.ptr) + scratch_arena;
      for (Step& step : exe->steps) {
        if (!step.conv) continue;
        const parity_node_desc& node = exe->nodes[static_cast<size_t>(step.node)];
        const bool bwd_data = node.op == PARITY_OP_CONV2D_BWD_DATA, bwd_weight = node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
        const int32_t x = bwd_data ? node.outputs[0] : node.inputs[0];
        const int32_t w = bwd_weight ? node.outputs[0] : node.inputs[1];
        const int32_t y = node.op == PARITY_OP_CONV2D ? node.outputs[0] : node.inputs[bwd_data ? 0 : 1];
        int alignment = 256;
        for (int32_t v : {x, w, y})
          alignment = std::min(alignment, plan::address_alignment(std::max<int64_t>(exe->arena_offset(v, 0), 0)));
        const ConvOperands at{exe->address(x, 0, scratch.ptr), exe->address(w, 0, scratch.ptr),
                              exe->address(y, 0, scratch.ptr), alignment};
        const plan::ConvDirection direction = node.op == PARITY_OP_CONV2D ? plan::ConvDirection::forward
                                              : bwd_data                  ? plan::ConvDirection::backward_data
                                                                          : plan::ConvDirection::backward_filter;
        step.algo = choose_conv_algorithm(b, direction, step.conv_shape, *step.conv, at, search_workspace, node.name);
        CUDA_CHECK(cudnnSetConvolutionMathType(step.conv->conv, static_cast<cudnnMathType_t>(step.algo.math_type)));
        request.conv_workspace_bytes = std::max(request.conv_workspace_bytes, step.algo.workspace_bytes);
      }
      CUDA_CHECK(cudaDeviceSynchronize());  // the searches ran on the scratch memory about to be freed
      exe->layout = plan::layout_arena(request);
    }

    // The one device allocation; inputs start as zeros in both slots.
    exe->arena.allocate(exe->layout.total_bytes);
    if (exe->layout.slot_bytes)
      CUDA_CHECK(cudaMemsetAsync(exe->region(exe->layout.slot_offset[0]), 0,
                                 static_cast<size_t>(2 * exe->layout.slot_bytes), b->stream));
    for (int s = 0; s < 2; ++s) {
      exe->pinned[s].allocate(exe->layout.slot_bytes);
      CUDA_CHECK(cudaEventCreateWithFlags(&exe->inputs_ready[s], cudaEventDisableTiming));
      CUDA_CHECK(cudaEventCreateWithFlags(&exe->step_done[s], cudaEventDisableTiming));
    }
    for (Step& step : exe->steps) {
      if (step.hyperparameter_offset < 0) continue;
      step.hyperparameter_offset += exe->layout.hyperparameter_offset;
      const parity_node_desc& node = exe->nodes[static_cast<size_t>(step.node)];
      CUDA_CHECK(cudaMemcpyAsync(exe->region(step.hyperparameter_offset), &node.params, sizeof node.params,
                                 cudaMemcpyHostToDevice, b->stream));  // node.params lives as long as exe
    }
    if (request.ones_count) {
      parity::native::cuda::set_launch_stream(b->stream);
      parity::native::cuda::native_ops().fill(static_cast<float*>(exe->region(exe->layout.ones_offset)), request.ones_count,
                                        1.0f);
    }
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
    *out = exe.release();
  });
}

void executable_destroy(parity_executable_t exe) {
  if (!exe) return;
  (void)cudaSetDevice(exe->instance->device);
  (void)cudaStreamSynchronize(exe->instance->stream);  // queued work may still use its memory
  (void)cudaStreamSynchronize(exe->instance->copy_stream);
  delete exe;
}

parity_status write_value(parity_executable_t exe, int32_t value, const void* host, int64_t bytes,
                          parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !host) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: write_value: NULL argument");
    const parity_value_desc& v = exe->desc(value, "write");
    if (v.kind == PARITY_VALUE_TEMP)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: write to value '", v.name,
                                               "' refused: only INPUT, PARAM and STATE values can be written"));
    exe->check_bytes("write to", v, bytes);
    parity_backend_t b = exe->instance;
    b->make_current();
    const int32_t input = exe->input_index[static_cast<size_t>(value)];
    if (input >= 0) {
      // The next batch: staged in the slot's pinned memory, copied on the copy stream while the
      // step reading the other slot may still run.
      const int slot = exe->fill_slot;
      exe->open_slot(slot);
      const int64_t offset = exe->layout.input_offsets[static_cast<size_t>(input)];
      std::memcpy(static_cast<char*>(exe->pinned[slot].ptr) + offset, host, static_cast<size_t>(bytes));
      CUDA_CHECK(cudaMemcpyAsync(exe->region(exe->layout.slot_offset[slot] + offset),
                                 static_cast<char*>(exe->pinned[slot].ptr) + offset, static_cast<size_t>(bytes),
                                 cudaMemcpyHostToDevice, b->copy_stream));
      exe->latest_slot[static_cast<size_t>(input)] = slot;
      if (v.dtype == PARITY_I32) {
        const auto* p = static_cast<const int32_t*>(host);
        exe->host_inputs[static_cast<size_t>(value)].assign(p, p + numel_of(v));
      }
      return;
    }
    // Weights and optimizer state: ordered with the steps on the compute stream.
    CUDA_CHECK(cudaMemcpyAsync(exe->pointer(value, 0), host, static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                               b->stream));
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
  });
}

parity_status read_value(parity_executable_t exe, int32_t value, void* host, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !host) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: read_value: NULL argument");
    const parity_value_desc& v = exe->desc(value, "read");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      fail(PARITY_STATUS_INVALID_ARGUMENT,
           msg("cuda: read of value '", v.name, "' refused: it is a TEMP value the plan did not mark keep"));
    exe->check_bytes("read of", v, bytes);
    parity_backend_t b = exe->instance;
    b->make_current();
    CUDA_CHECK(cudaStreamSynchronize(b->copy_stream));
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
    const int32_t input = exe->input_index[static_cast<size_t>(value)];
    // An INPUT value reads from the slot holding its latest bytes; a TEMP one from the arena.
    const int slot = input >= 0 && exe->latest_slot[static_cast<size_t>(input)] >= 0
                         ? exe->latest_slot[static_cast<size_t>(input)]
                         : 0;
    CUDA_CHECK(cudaMemcpyAsync(host, exe->pointer(value, slot), static_cast<size_t>(bytes), cudaMemcpyDeviceToHost,
                               b->stream));
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
  });
}

// Queues the whole step and returns (PARITY_FEATURE_ASYNC_EXECUTE).
parity_status execute(parity_executable_t exe, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: execute: executable is NULL");
    parity_backend_t b = exe->instance;
    b->make_current();
    const int slot = exe->fill_slot;
    // Run-time data the kernels cannot check (labels, Adam's step), from the host copies, before
    // anything is queued: a bad batch fails this call and leaves the device untouched.
    for (const parity_node_desc& node : exe->nodes) exe->checker.run(node);
    // INPUT values not written since the last step: their latest bytes move into this slot.
    for (size_t v = 0; v < exe->values.size(); ++v) {
      const int32_t input = exe->input_index[v];
      if (input < 0) continue;
      int& latest = exe->latest_slot[static_cast<size_t>(input)];
      if (latest < 0 || latest == slot) continue;
      exe->open_slot(slot);
      const int64_t offset = exe->layout.input_offsets[static_cast<size_t>(input)];
      CUDA_CHECK(cudaMemcpyAsync(exe->region(exe->layout.slot_offset[slot] + offset),
                                 exe->region(exe->layout.slot_offset[latest] + offset),
                                 static_cast<size_t>(exe->values[v].bytes), cudaMemcpyDeviceToDevice, b->copy_stream));
      latest = slot;
    }
    CUDA_CHECK(cudaEventRecord(exe->inputs_ready[slot], b->copy_stream));
    CUDA_CHECK(cudaStreamWaitEvent(b->stream, exe->inputs_ready[slot], 0));
    parity::native::cuda::set_launch_stream(b->stream);
    // Outside any capture: the handle's workspace is this executable's (cublasSetStream, which
    // another executable may have called, resets it), and no earlier error is left for a native
    // launch's cudaGetLastError to report as its own.
    CUDA_CHECK(cublasSetWorkspace(b->cublas, exe->region(exe->layout.cublas_workspace_offset),
                                  static_cast<size_t>(exe->layout.cublas_workspace_bytes)));
    (void)cudaGetLastError();
    // The first execute of a slot runs eagerly: cuDNN and cuBLAS load their kernels and
    // sub-libraries on first use, which must not happen inside a capture. The second captures.
    if (exe->capture.capture && exe->runs[slot] >= 1 && !exe->graphs[slot]) exe->capture_slot(slot);
    if (exe->graphs[slot])
      CUDA_CHECK(cudaGraphLaunch(exe->graphs[slot], b->stream));
    else
      exe->enqueue_steps(slot);
    ++exe->runs[slot];
    CUDA_CHECK(cudaEventRecord(exe->step_done[slot], b->stream));
    exe->fill_slot = slot ^ 1;
    exe->slot_open[exe->fill_slot] = false;
  });
}

parity_status synchronize(parity_executable_t exe, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: synchronize: executable is NULL");
    exe->instance->make_current();
    CUDA_CHECK(cudaStreamSynchronize(exe->instance->copy_stream));
    CUDA_CHECK(cudaStreamSynchronize(exe->instance->stream));
  });
}

parity_status memory_bytes(parity_executable_t exe, int64_t* out, parity_error* err) {
  if (!exe || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "cuda: memory_bytes: NULL argument");
  int64_t total = exe->arena.bytes;
  for (const auto& p : exe->held) total += p->memory.bytes;
  *out = total;
  return PARITY_OK;
}

}  // namespace cuda_backend
}  // namespace parity
