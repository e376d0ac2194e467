// backends/cuda/cuda_library.cpp — the CUDA target's routes of the GPU executor (declared in
// backends/gpu/gpu_executable.h): cuDNN convolutions, activations, batch normalization, average pooling and softmaxes with their descriptors,
// cuBLAS products (SGEMM, and GemmEx on bf16/f16 operands with the f32 bias epilogue and bias
// gradient of cuda_half_kernels.cu), the optimizer steps and poison fill of cuda_kernels.cu, the native kernels on
// the compute stream, and the instance's cuDNN and cuBLAS handles. The only vendor-library calls
// of the executor; compiled and linked in CI, never executed (no NVIDIA GPU here).
#include <cublas_v2.h>
#include <cudnn.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_half_kernels.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_library.h"
#include "backends/gpu/gpu_executable.h"

namespace parity {
namespace gpu {

// plan::Activation holds cudnnActivationMode_t's values (cuda_decisions.h needs no cuDNN).
static_assert(static_cast<int>(plan::Activation::sigmoid) == CUDNN_ACTIVATION_SIGMOID, "cuDNN mode");
static_assert(static_cast<int>(plan::Activation::relu) == CUDNN_ACTIVATION_RELU, "cuDNN mode");
static_assert(static_cast<int>(plan::Activation::tanh) == CUDNN_ACTIVATION_TANH, "cuDNN mode");
static_assert(static_cast<int>(plan::Activation::clipped_relu) == CUDNN_ACTIVATION_CLIPPED_RELU, "cuDNN mode");
static_assert(static_cast<int>(plan::Activation::elu) == CUDNN_ACTIVATION_ELU, "cuDNN mode");
static_assert(static_cast<int>(plan::Activation::identity) == CUDNN_ACTIVATION_IDENTITY, "cuDNN mode");
static_assert(static_cast<int>(plan::Activation::swish) == CUDNN_ACTIVATION_SWISH, "cuDNN mode");
static_assert(static_cast<int>(plan::PoolingMode::max) == CUDNN_POOLING_MAX, "cuDNN mode");
static_assert(static_cast<int>(plan::PoolingMode::average_count_include_padding) ==
                  CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, "cuDNN mode");
static_assert(static_cast<int>(plan::PoolingMode::average_count_exclude_padding) ==
                  CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING, "cuDNN mode");
// plan::SoftmaxAlgorithm and plan::SoftmaxMode hold cudnnSoftmaxAlgorithm_t's and cudnnSoftmaxMode_t's.
static_assert(static_cast<int>(plan::SoftmaxAlgorithm::fast) == CUDNN_SOFTMAX_FAST, "cuDNN softmax algorithm");
static_assert(static_cast<int>(plan::SoftmaxAlgorithm::accurate) == CUDNN_SOFTMAX_ACCURATE, "cuDNN softmax algorithm");
static_assert(static_cast<int>(plan::SoftmaxAlgorithm::log) == CUDNN_SOFTMAX_LOG, "cuDNN softmax algorithm");
static_assert(static_cast<int>(plan::SoftmaxMode::instance) == CUDNN_SOFTMAX_MODE_INSTANCE, "cuDNN softmax mode");
static_assert(static_cast<int>(plan::SoftmaxMode::channel) == CUDNN_SOFTMAX_MODE_CHANNEL, "cuDNN softmax mode");
// The element types' and half math's vendor values, which cuda_decisions.h writes as numbers.
static_assert(plan::cudnn_data_type(plan::ElementType::f32) == CUDNN_DATA_FLOAT, "cuDNN data type");
static_assert(plan::cudnn_data_type(plan::ElementType::f16) == CUDNN_DATA_HALF, "cuDNN data type");
static_assert(plan::cudnn_data_type(plan::ElementType::bf16) == CUDNN_DATA_BFLOAT16, "cuDNN data type");
static_assert(plan::cuda_data_type(plan::ElementType::f32) == CUDA_R_32F, "CUDA data type");
static_assert(plan::cuda_data_type(plan::ElementType::f16) == CUDA_R_16F, "CUDA data type");
static_assert(plan::cuda_data_type(plan::ElementType::bf16) == CUDA_R_16BF, "CUDA data type");
static_assert(plan::kCublasCompute32F == CUBLAS_COMPUTE_32F, "cuBLAS compute type");
static_assert(plan::kCublasGemmDefault == CUBLAS_GEMM_DEFAULT, "cuBLAS GEMM algorithm");
static_assert(static_cast<int>(plan::ConvMath::default_math) == CUDNN_DEFAULT_MATH, "cuDNN math type");
static_assert(static_cast<int>(plan::ConvMath::tensor_op) == CUDNN_TENSOR_OP_MATH, "cuDNN math type");
static_assert(static_cast<int>(plan::ConvMath::tensor_op_allow_conversion) == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
              "cuDNN math type");
static_assert(static_cast<int>(plan::ConvMath::fma) == CUDNN_FMA_MATH, "cuDNN math type");

const native::NativeOps& native_ops() { return native::cuda::native_ops(); }

// cuDNN, cuBLAS and the native kernels all need the native workspace only for the native route.
extern const bool kNativeWorkspaceForEveryNode = false;

// cuBLAS's workspace: 32 MiB, what NVIDIA recommends for Hopper (4 MiB suffices before it); set
// by the plugin so that cuBLAS allocates nothing while a step is captured.
extern const int64_t kLibraryWorkspaceBytes = int64_t{32} << 20;
extern const bool kConvAlgorithmSearch = true;
// Half nodes take cuDNN and cuBLAS where cuda_decisions::route_of(node, values) says so.
extern const bool kHalfOnLibraryRoutes = true;

void destroy_library(LibraryHandles* library) noexcept { delete library; }

LibraryHandles::~LibraryHandles() {
  if (cublas) (void)cublasDestroy(cublas);
  if (cudnn) (void)cudnnDestroy(cudnn);
}

void destroy_kernel(ConvKernel* kernel) noexcept { delete kernel; }
void destroy_kernel(ActivationKernel* kernel) noexcept { delete kernel; }
void destroy_kernel(BatchnormKernel* kernel) noexcept { delete kernel; }
void destroy_kernel(PoolingKernel* kernel) noexcept { delete kernel; }
void destroy_kernel(SoftmaxKernel* kernel) noexcept { delete kernel; }

KernelPtr<ConvKernel> make_conv_kernel(const plan::ConvDescriptors& shape) {
  return KernelPtr<ConvKernel>(new ConvKernel(shape));
}
KernelPtr<PoolingKernel> make_pooling_kernel(const plan::PoolingDescriptors& d) {
  return KernelPtr<PoolingKernel>(new PoolingKernel(d));
}
KernelPtr<ActivationKernel> make_activation_kernel(int count, plan::Activation activation) {
  return KernelPtr<ActivationKernel>(new ActivationKernel(count, static_cast<cudnnActivationMode_t>(activation)));
}
KernelPtr<BatchnormKernel> make_batchnorm_kernel(const plan::BatchnormDescriptors& shape) {
  return KernelPtr<BatchnormKernel>(new BatchnormKernel(shape));
}

KernelPtr<SoftmaxKernel> make_softmax_kernel(const plan::SoftmaxDescriptors& shape) {
  return KernelPtr<SoftmaxKernel>(new SoftmaxKernel(shape));
}

}  // namespace gpu
}  // namespace parity

namespace {
const float kOne = 1.0f, kZero = 0.0f;

cublasOperation_t op_of(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }
cudaDataType cuda_type(plan::ElementType t) { return static_cast<cudaDataType>(plan::cuda_data_type(t)); }
parity_dtype dtype_of(plan::ElementType t) {
  return t == plan::ElementType::bf16 ? PARITY_BF16 : t == plan::ElementType::f16 ? PARITY_F16 : PARITY_F32;
}
}  // namespace

void parity_executable_object::enqueue_convolution(const Step& step, const parity_node_desc& node) {
  cudnnHandle_t cudnn = instance->library->cudnn;
  void* conv_workspace = region(layout.conv_workspace_offset);
  const size_t conv_workspace_bytes = static_cast<size_t>(step.algo.workspace_bytes);
  auto at = [&](bool output, int32_t slot) { return operand(node, output, slot); };
  const ConvKernel& d = *step.conv;
  switch (node.op) {
    case PARITY_OP_CONV2D:
      // Half operands: alpha and beta stay float (cuDNN's scaling parameters for every non-double type).
      CUDA_CHECK(cudnnConvolutionForward(cudnn, &kOne, d.x, at(false, 0), d.w, at(false, 1), d.conv,
                                         static_cast<cudnnConvolutionFwdAlgo_t>(step.algo.algo), conv_workspace,
                                         conv_workspace_bytes, &kZero, d.y, at(true, 0)));
      if (node.num_inputs == 3) {
        // conv_descriptors refuses a half convolution with a bias (route_of(node, values): native).
        if (step.conv_shape.element != plan::ElementType::f32)
          fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "': a half convolution with a bias on cuDNN"));
        CUDA_CHECK(cudnnAddTensor(cudnn, &kOne, d.bias, at(false, 2), &kOne, d.y, at(true, 0)));
      }
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
      if (node.num_outputs == 2 && step.conv_shape.db_by_channel_sum) {  // half dy, f32 db: summed in f32
        const plan::ConvDescriptors& s = step.conv_shape;
        parity::gpu::half_kernels::channel_sum_f32(at(false, 1), dtype_of(s.element), s.y.n, s.y.c,
                                                   int64_t{s.y.h} * s.y.w, static_cast<float*>(at(true, 1)),
                                                   instance->stream);
      } else if (node.num_outputs == 2) {
        CUDA_CHECK(cudnnConvolutionBackwardBias(cudnn, &kOne, d.y, at(false, 1), &kZero, d.bias, at(true, 1)));
      }
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
      case plan::Operand::staging: p = region(layout.gemm_staging_offset); break;
    }
    return static_cast<float*>(p);
  };
  const plan::LinearCalls& calls = step.linear;
  // The calls' element type must be the values': the executor plans them with
  // plan::linear_calls(node, values) (the f32-only linear_*_calls would read half values as f32).
  const parity_value_desc& x = values[static_cast<size_t>(node.op == PARITY_OP_LINEAR_BWD_DATA ? node.outputs[0]
                                                                                              : node.inputs[0])];
  if (plan::element_type_of(x.dtype, msg("node '", node.name, "'")) != calls.element)
    fail(PARITY_STATUS_UNSUPPORTED,
         msg("cuda: node '", node.name, "': ", plan::element_type_name(plan::element_type_of(x.dtype, "")),
             " values planned as ", plan::element_type_name(calls.element),
             " products (the executor must plan linear nodes with cuda_decisions::linear_calls(node, values))"));
  if (calls.staging_bytes > layout.gemm_staging_bytes)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' needs ", calls.staging_bytes,
                                     " bytes of GEMM staging, the arena has ", layout.gemm_staging_bytes,
                                     " (ArenaRequest::gemm_staging_bytes from LinearCalls::staging_bytes)"));
  cublasHandle_t cublas = instance->library->cublas;
  for (const plan::GemmCall& g : calls.gemms) {
    if (!plan::uses_gemm_ex(g)) {
      CUDA_CHECK(cublasSgemm(cublas, op_of(g.transpose_a), op_of(g.transpose_b), g.m, g.n, g.k, &kOne, operand_of(g.a),
                             g.lda, operand_of(g.b), g.ldb, &g.beta, operand_of(g.c), g.ldc));
      continue;
    }
    // Half A and B, C half or f32, accumulated in f32; alpha and beta are floats (CUBLAS_COMPUTE_32F).
    CUDA_CHECK(cublasGemmEx(cublas, op_of(g.transpose_a), op_of(g.transpose_b), g.m, g.n, g.k, &kOne, operand_of(g.a),
                            cuda_type(g.a_type), g.lda, operand_of(g.b), cuda_type(g.b_type), g.ldb, &g.beta,
                            operand_of(g.c), cuda_type(g.c_type), g.ldc,
                            static_cast<cublasComputeType_t>(plan::kCublasCompute32F),
                            static_cast<cublasGemmAlgo_t>(plan::kCublasGemmDefault)));
  }
  for (const plan::GemvCall& g : calls.gemvs)
    CUDA_CHECK(cublasSgemv(cublas, op_of(g.transpose_a), g.m, g.n, &kOne, operand_of(g.a), g.lda, operand_of(g.x), 1,
                           &g.beta, operand_of(g.y), 1));
  for (const plan::RoundCall& r : calls.rounds)
    parity::gpu::half_kernels::round_to_half(operand_of(r.acc), r.has_bias ? operand_of(r.bias) : nullptr, r.outer,
                                             r.channels, r.inner, operand_of(r.y), dtype_of(calls.element),
                                             instance->stream);
  for (const plan::ChannelSumCall& c : calls.sums)
    parity::gpu::half_kernels::channel_sum_f32(operand_of(c.dy), dtype_of(calls.element), c.outer, c.channels, c.inner,
                                               operand_of(c.db), instance->stream);
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
                                            static_cast<float*>(at(2)), static_cast<const int32_t*>(at(3)), count,
                                            static_cast<const parity_sgd_params*>(region(step.hyperparameter_offset)));
      return;
    default:
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' (", parity_op_name(node.op),
                                       ") is on the optimizer route but has no device optimizer"));
  }
}

// BATCHNORM2D_TRAIN (PyTorch's convention: route_of(node) sends ONNX's to the native kernels),
// _EVAL, and _BWD of training, as cuDNN's spatial batch normalization. cuDNN's running update is
// r = factor * batch + (1 - factor) r with the unbiased variance, PyTorch's with factor = momentum;
// its saved inverse variance is 1 / sqrt(biased var + eps), the ABI's saved_invstd.
void parity_executable_object::enqueue_batchnorm(const Step& step, const parity_node_desc& node) {
  cudnnHandle_t cudnn = instance->library->cudnn;
  auto at = [&](bool output, int32_t slot) { return operand(node, output, slot); };
  const BatchnormKernel& d = *step.batchnorm;
  switch (node.op) {
    case PARITY_OP_BATCHNORM2D_TRAIN:
      CUDA_CHECK(cudnnBatchNormalizationForwardTraining(
          cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, d.x, at(false, 0), d.x, at(true, 0), d.channel, at(false, 1),
          at(false, 2), d.shape.exponential_average_factor, at(false, 3), at(false, 4), d.shape.eps, at(true, 1),
          at(true, 2)));
      return;
    case PARITY_OP_BATCHNORM2D_EVAL:
      CUDA_CHECK(cudnnBatchNormalizationForwardInference(cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, d.x,
                                                         at(false, 0), d.x, at(true, 0), d.channel, at(false, 1),
                                                         at(false, 2), at(false, 3), at(false, 4), d.shape.eps));
      return;
    case PARITY_OP_BATCHNORM2D_BWD:
      CUDA_CHECK(cudnnBatchNormalizationBackward(cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kZero, d.x,
                                                 at(false, 0), d.x, at(false, 1), d.x, at(true, 0), d.channel,
                                                 at(false, 2), at(true, 1), at(true, 2), d.shape.eps, at(false, 3),
                                                 at(false, 4)));
      return;
    default:
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' (", parity_op_name(node.op),
                                       ") is on the batch normalization route but is none"));
  }
}

void parity_executable_object::enqueue_activation(const Step& step, const parity_node_desc& node) {
  // The flat descriptor is f32: half values take the native kernels (plan::route_of(node, values)).
  for (int32_t v : {node.inputs[0], node.outputs[0]})
    if (values[static_cast<size_t>(v)].dtype != PARITY_F32)
      fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: node '", node.name, "': value '", value_name(values[static_cast<size_t>(v)]),
                                          "' is not f32, which cuDNN's activation route here takes (the executor must "
                                          "route by cuda_decisions::route_of(node, values))"));
  CUDA_CHECK(cudnnActivationForward(instance->library->cudnn, step.flat->activation, &kOne, step.flat->desc,
                                    operand(node, false, 0), &kZero, step.flat->desc, operand(node, true, 0)));
}

void parity_executable_object::enqueue_pooling(const Step& step, const parity_node_desc& node) {
  CUDA_CHECK(cudnnPoolingForward(instance->library->cudnn, step.pool->pool, &kOne, step.pool->x, operand(node, false, 0),
                                 &kZero, step.pool->y, operand(node, true, 0)));
}

// Forward: x -> y; backward: y, dy -> dx (cuDNN's backward, like the ABI's, reads the output).
void parity_executable_object::enqueue_softmax(const Step& step, const parity_node_desc& node) {
  const parity::gpu::SoftmaxKernel& k = *step.softmax;
  cudnnHandle_t cudnn = instance->library->cudnn;
  if (k.backward)
    CUDA_CHECK(cudnnSoftmaxBackward(cudnn, k.algorithm, k.mode, &kOne, k.desc, operand(node, false, 0), k.desc,
                                    operand(node, false, 1), &kZero, k.desc, operand(node, true, 0)));
  else
    CUDA_CHECK(cudnnSoftmaxForward(cudnn, k.algorithm, k.mode, &kOne, k.desc, operand(node, false, 0), &kZero, k.desc,
                                   operand(node, true, 0)));
}

void parity_executable_object::enqueue_native(const parity_node_desc& node) {
  parity::native::cuda::set_launch_stream(instance->stream);
  dispatcher.run(node);
}

void parity_executable_object::enqueue_fill(void* words, int64_t count, uint32_t bits) {
  parity::native::cuda::set_launch_stream(instance->stream);
  parity::native::cuda::fill_words(words, count, bits);
}

// The handle's workspace is this executable's (cublasSetStream, which another executable may
// have called, resets it), and no earlier error is left for a native launch's cudaGetLastError
// to report as its own.
void parity_executable_object::bind_library() {
  parity::native::cuda::set_launch_stream(instance->stream);
  CUDA_CHECK(cublasSetWorkspace(instance->library->cublas, region(layout.cublas_workspace_offset),
                                static_cast<size_t>(layout.cublas_workspace_bytes)));
  parity::gpu::rt::clear_last_error();
}
