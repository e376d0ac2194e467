// backends/cuda/cuda_library.h — what the CUDA target's library keeps behind the executor's opaque
// types: the instance's handles (one cuDNN and one cuBLAS handle on the compute stream), a
// convolution's cuDNN descriptors (ConvKernel; f32, bf16 or f16 operands), an activation's (ActivationKernel), a batch
// normalization's (BatchnormKernel), a pooling forward's (PoolingKernel) and a softmax's
// (SoftmaxKernel).
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decisions.h"
#include "backends/native/plugin_support.h"

namespace parity {
namespace gpu {

struct LibraryHandles {
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  LibraryHandles() = default;
  LibraryHandles(const LibraryHandles&) = delete;
  LibraryHandles& operator=(const LibraryHandles&) = delete;
  ~LibraryHandles();
};

// The cuDNN descriptors of one convolution node, destroyed with it.
struct ConvKernel {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit ConvKernel(const cuda_decisions::ConvDescriptors& d) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDA_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDA_CHECK(cudnnCreateTensorDescriptor(&bias));
    CUDA_CHECK(cudnnCreateFilterDescriptor(&w));
    CUDA_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    // x, w, y in the node's element type (f32: FLOAT_CONFIG; bf16, f16: PSEUDO_BFLOAT16_CONFIG,
    // PSEUDO_HALF_CONFIG); the bias and db f32 (used by cuDNN for f32 only: cuda_decisions.h).
    const cudnnDataType_t element = static_cast<cudnnDataType_t>(cuda_decisions::cudnn_data_type(d.element));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, element, d.x.n, d.x.c, d.x.h, d.x.w));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, element, d.y.n, d.y.c, d.y.h, d.y.w));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.bias.n, d.bias.c, d.bias.h,
                                          d.bias.w));
    CUDA_CHECK(cudnnSetFilter4dDescriptor(w, element, CUDNN_TENSOR_NCHW, d.w.n, d.w.c, d.w.h, d.w.w));
    // Cross-correlation, as PyTorch's Conv2d and every other parity backend compute it; f32
    // accumulation whatever the element type (never TRUE_HALF_CONFIG).
    CUDA_CHECK(cudnnSetConvolution2dDescriptor(conv, d.pad_h, d.pad_w, d.stride_h, d.stride_w, d.dilation_h,
                                               d.dilation_w, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // Groups (depthwise: groups = C): the filter descriptor is [K, C/groups, R, S] already.
    CUDA_CHECK(cudnnSetConvolutionGroupCount(conv, d.groups));
    int n = 0, c = 0, h = 0, wd = 0;  // cuDNN's own output size must be the plan's
    CUDA_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd));
    if (n != d.y.n || c != d.y.c || h != d.y.h || wd != d.y.w)
      native::plugin_fail(PARITY_STATUS_SHAPE, native::msg("cuda: cuDNN computes a convolution output of ", n, "x", c, "x", h, "x", wd,
                                    ", the plan has ", d.y.n, "x", d.y.c, "x", d.y.h, "x", d.y.w));
  }
  ConvKernel(const ConvKernel&) = delete;
  ConvKernel& operator=(const ConvKernel&) = delete;
  ~ConvKernel() {
    if (conv) (void)cudnnDestroyConvolutionDescriptor(conv);
    if (w) (void)cudnnDestroyFilterDescriptor(w);
    if (bias) (void)cudnnDestroyTensorDescriptor(bias);
    if (y) (void)cudnnDestroyTensorDescriptor(y);
    if (x) (void)cudnnDestroyTensorDescriptor(x);
  }
};

// One flat float tensor descriptor ([1,1,1,count]) and the cuDNN activation of an element-wise
// op on an activation route (route_of in cuda_decisions.cpp).
struct ActivationKernel {
  cudnnTensorDescriptor_t desc = nullptr;
  cudnnActivationDescriptor_t activation = nullptr;
  ActivationKernel(int count, cudnnActivationMode_t mode) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&desc));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1, count));
    CUDA_CHECK(cudnnCreateActivationDescriptor(&activation));
    CUDA_CHECK(cudnnSetActivationDescriptor(activation, mode, CUDNN_PROPAGATE_NAN, 0.0));
  }
  ActivationKernel(const ActivationKernel&) = delete;
  ActivationKernel& operator=(const ActivationKernel&) = delete;
  ~ActivationKernel() {
    if (activation) (void)cudnnDestroyActivationDescriptor(activation);
    if (desc) (void)cudnnDestroyTensorDescriptor(desc);
  }
};

// The cuDNN descriptors of one batch normalization node: x (and y, dy, dx: the same) [N,C,H,W]
// and the [1,C,1,1] scale, bias, mean and variance derived from it for CUDNN_BATCHNORM_SPATIAL.
struct BatchnormKernel {
  cudnnTensorDescriptor_t x = nullptr, channel = nullptr;
  cuda_decisions::BatchnormDescriptors shape;
  explicit BatchnormKernel(const cuda_decisions::BatchnormDescriptors& d) : shape(d) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDA_CHECK(cudnnCreateTensorDescriptor(&channel));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.x.n, d.x.c, d.x.h, d.x.w));
    CUDA_CHECK(cudnnDeriveBNTensorDescriptor(channel, x, CUDNN_BATCHNORM_SPATIAL));
  }
  BatchnormKernel(const BatchnormKernel&) = delete;
  BatchnormKernel& operator=(const BatchnormKernel&) = delete;
  ~BatchnormKernel() {
    if (channel) (void)cudnnDestroyTensorDescriptor(channel);
    if (x) (void)cudnnDestroyTensorDescriptor(x);
  }
};

// The cuDNN descriptors of one pooling forward (plan::pooling_plan), destroyed with it.
struct PoolingKernel {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnPoolingDescriptor_t pool = nullptr;
  explicit PoolingKernel(const cuda_decisions::PoolingDescriptors& d) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDA_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDA_CHECK(cudnnCreatePoolingDescriptor(&pool));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.x.n, d.x.c, d.x.h, d.x.w));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.y.n, d.y.c, d.y.h, d.y.w));
    CUDA_CHECK(cudnnSetPooling2dDescriptor(pool, static_cast<cudnnPoolingMode_t>(d.mode), CUDNN_PROPAGATE_NAN,
                                           d.window_h, d.window_w, d.pad_h, d.pad_w, d.stride_h, d.stride_w));
    int n = 0, c = 0, h = 0, w = 0;  // cuDNN's own output size must be the plan's
    CUDA_CHECK(cudnnGetPooling2dForwardOutputDim(pool, x, &n, &c, &h, &w));
    if (n != d.y.n || c != d.y.c || h != d.y.h || w != d.y.w)
      native::plugin_fail(PARITY_STATUS_SHAPE, native::msg("cuda: cuDNN computes a pooling output of ", n, "x", c, "x", h,
                                                           "x", w, ", the plan has ", d.y.n, "x", d.y.c, "x", d.y.h, "x",
                                                           d.y.w));
  }
  PoolingKernel(const PoolingKernel&) = delete;
  PoolingKernel& operator=(const PoolingKernel&) = delete;
  ~PoolingKernel() {
    if (pool) (void)cudnnDestroyPoolingDescriptor(pool);
    if (y) (void)cudnnDestroyTensorDescriptor(y);
    if (x) (void)cudnnDestroyTensorDescriptor(x);
  }
};

// The packed NCHW descriptor of a softmax-family node's operands (all of one shape) and the
// algorithm and mode of its route (cuda_decisions.h, softmax_descriptors).
struct SoftmaxKernel {
  cudnnTensorDescriptor_t desc = nullptr;
  cudnnSoftmaxAlgorithm_t algorithm;
  cudnnSoftmaxMode_t mode;
  bool backward;
  explicit SoftmaxKernel(const cuda_decisions::SoftmaxDescriptors& d)
      : algorithm(static_cast<cudnnSoftmaxAlgorithm_t>(d.algorithm)),
        mode(static_cast<cudnnSoftmaxMode_t>(d.mode)),
        backward(d.backward) {
    CUDA_CHECK(cudnnCreateTensorDescriptor(&desc));
    CUDA_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.x.n, d.x.c, d.x.h, d.x.w));
  }
  SoftmaxKernel(const SoftmaxKernel&) = delete;
  SoftmaxKernel& operator=(const SoftmaxKernel&) = delete;
  ~SoftmaxKernel() {
    if (desc) (void)cudnnDestroyTensorDescriptor(desc);
  }
};

}  // namespace gpu
}  // namespace parity
