// backends/cuda/cuda_launch.cpp — running a compiled CUDA step: each Step's cuDNN, cuBLAS or
// native launch on the compute stream, the poison of temporaries, and the capture of a slot's
// whole step as a CUDA graph.
#include "backends/cuda/cuda_executable.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/kit/poison.h"

namespace {
const float kOne = 1.0f, kZero = 0.0f;

cublasOperation_t op_of(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }
}  // namespace

void parity_executable_object::enqueue(const Step& step) {
  const parity_node_desc& node = nodes[static_cast<size_t>(step.node)];
  switch (step.kind) {
    case plan::RouteKind::convolution: enqueue_convolution(step, node); return;
    case plan::RouteKind::activation:
      CUDA_CHECK(cudnnActivationForward(instance->cudnn, step.flat->activation, &kOne, step.flat->desc,
                                        operand(node, false, 0), &kZero, step.flat->desc, operand(node, true, 0)));
      return;
    case plan::RouteKind::gemm: enqueue_gemm(step, node); return;
    case plan::RouteKind::optimizer: enqueue_optimizer(step, node); return;
    case plan::RouteKind::native: dispatcher.run(node); return;  // the native kernels, with the dispatcher's checks
  }
}

// Input (output = false) or output `slot` of `node` in the slot being launched.
void* parity_executable_object::operand(const parity_node_desc& node, bool output, int32_t slot) {
  return pointer(output ? node.outputs[slot] : node.inputs[slot], launch_slot);
}

void parity_executable_object::enqueue_convolution(const Step& step, const parity_node_desc& node) {
  cudnnHandle_t cudnn = instance->cudnn;
  void* conv_workspace = region(layout.conv_workspace_offset);
  const size_t conv_workspace_bytes = static_cast<size_t>(step.algo.workspace_bytes);
  auto at = [&](bool output, int32_t slot) { return operand(node, output, slot); };
  const ConvDescriptorSet& d = *step.conv;
  switch (node.op) {
    case PARITY_OP_CONV2D:
      CUDA_CHECK(cudnnConvolutionForward(cudnn, &kOne, d.x, at(false, 0), d.w, at(false, 1), d.conv,
                                         static_cast<cudnnConvolutionFwdAlgo_t>(step.algo.algo), conv_workspace,
                                         conv_workspace_bytes, &kZero, d.y, at(true, 0)));
      CUDA_CHECK(cudnnAddTensor(cudnn, &kOne, d.bias, at(false, 2), &kOne, d.y, at(true, 0)));
      return;
    case PARITY_OP_CONV2D_BWD_DATA:
      CUDA_CHECK(cudnnConvolutionBackwardData(cudnn, &kOne, d.w, at(false, 1), d.y, at(false, 0), d.conv,
                                              static_cast<cudnnConvolutionBwdDataAlgo_t>(step.algo.algo),
                                              conv_workspace, conv_workspace_bytes, &kZero, d.x, at(true, 0)));
      return;
    case PARITY_OP_CONV2D_BWD_WEIGHT:
      CUDA_CHECK(cudnnConvolutionBackwardFilter(cudnn, &kOne, d.x, at(false, 0), d.y, at(false, 1), d.conv,
                                                static_cast<cudnnConvolutionBwdFilterAlgo_t>(step.algo.algo),
                                                conv_workspace, conv_workspace_bytes, &kZero, d.w, at(true, 0)));
      CUDA_CHECK(cudnnConvolutionBackwardBias(cudnn, &kOne, d.y, at(false, 1), &kZero, d.bias, at(true, 1)));
      return;
    default:
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' (", parity_op_name(node.op),
                                       ") is on the convolution route but is no convolution"));
  }
}

void parity_executable_object::enqueue_gemm(const Step& step, const parity_node_desc& node) {
  auto at = [&](bool output, int32_t slot) { return operand(node, output, slot); };
  auto operand_of = [&](plan::Operand o) -> float* {
    void* p = nullptr;
    switch (o) {
      case plan::Operand::ones: p = region(layout.ones_offset); break;
      case plan::Operand::x: p = at(false, 0); break;     // LINEAR, BWD_WEIGHT
      case plan::Operand::w: p = at(false, 1); break;     // LINEAR, BWD_DATA
      case plan::Operand::bias: p = at(false, 2); break;  // LINEAR
      case plan::Operand::dy: p = node.op == PARITY_OP_LINEAR_BWD_DATA ? at(false, 0) : at(false, 1); break;
      case plan::Operand::y: case plan::Operand::dx: case plan::Operand::dw: p = at(true, 0); break;
      case plan::Operand::db: p = at(true, 1); break;
    }
    return static_cast<float*>(p);
  };
  for (const plan::GemmCall& g : step.linear.gemms)
    CUDA_CHECK(cublasSgemm(instance->cublas, op_of(g.transpose_a), op_of(g.transpose_b), g.m, g.n, g.k, &kOne,
                           operand_of(g.a), g.lda, operand_of(g.b), g.ldb, &g.beta, operand_of(g.c), g.ldc));
  for (const plan::GemvCall& g : step.linear.gemvs)
    CUDA_CHECK(cublasSgemv(instance->cublas, op_of(g.transpose_a), g.m, g.n, &kOne, operand_of(g.a), g.lda,
                           operand_of(g.x), 1, &g.beta, operand_of(g.y), 1));
}

void parity_executable_object::enqueue_optimizer(const Step& step, const parity_node_desc& node) {
  auto at = [&](int32_t slot) { return operand(node, false, slot); };
  const int64_t count = numel_of(values[static_cast<size_t>(node.inputs[0])]);
  switch (node.op) {
    case PARITY_OP_ADAM_STEP:
      parity::native::cuda::adam_step_device(
          static_cast<float*>(at(0)), static_cast<const float*>(at(1)), static_cast<float*>(at(2)),
          static_cast<float*>(at(3)), static_cast<const int32_t*>(at(4)), count,
          static_cast<const parity_adam_params*>(region(step.hyperparameter_offset)));
      return;
    case PARITY_OP_SGD_STEP:
      parity::native::cuda::sgd_step_device(static_cast<float*>(at(0)), static_cast<const float*>(at(1)),
                                            static_cast<float*>(at(2)), count,
                                            static_cast<const parity_sgd_params*>(region(step.hyperparameter_offset)));
      return;
    default:
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' (", parity_op_name(node.op),
                                       ") is on the optimizer route but has no device optimizer"));
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
  const parity::gpu::Stream stream = instance->stream;
  parity::gpu::Graph graph{};
  bool capturing = false;
  std::string failure;
  try {
    parity::gpu::rt::capture_begin(stream);
    capturing = true;
    enqueue_steps(slot);
    capturing = false;
    graph = parity::gpu::rt::capture_end(stream);
    graphs[slot] = parity::gpu::rt::graph_instantiate(graph);
  } catch (const std::exception& e) {
    failure = e.what();
    if (capturing) {  // ends the capture, which leaves the stream usable
      try {
        graph = parity::gpu::rt::capture_end(stream);
      } catch (const parity::gpu::CaptureFailed&) {
      }
    }
    graphs[slot] = {};
  }
  parity::gpu::rt::graph_destroy(graph);  // the instantiated graph does not need it
  if (failure.empty()) return;
  parity::gpu::rt::clear_last_error();
  capture = {false, msg("capturing the step as a CUDA graph failed (", failure, "); launching node by node")};
  std::fprintf(stderr, "parity: %s\n", capture.why.c_str());
}
