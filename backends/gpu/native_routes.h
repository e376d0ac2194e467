// backends/gpu/native_routes.h — the per-step types of a target whose every route runs the native
// kernels (HIP, the emulated device): no library handles, and what a vendor library would be
// given kept so the executor's steps look as on CUDA — a convolution's descriptors, checked
// against cuDNN's output-size rule, an activation's element count and a softmax's lanes; one
// algorithm per convolution, with no workspace of its own; a pooling forward's descriptors.
// Definitions, not declarations: included by exactly
// one source of each such target (its <target>_library.cpp).
#pragma once

#include <string>

#include "backends/gpu/gpu_executable.h"

namespace parity {
namespace gpu {

extern const bool kNativeWorkspaceForEveryNode = true;  // im2col columns, the loss's row terms
extern const int64_t kLibraryWorkspaceBytes = 0;        // no cuBLAS
extern const bool kConvAlgorithmSearch = false;

struct LibraryHandles {};
void destroy_library(LibraryHandles* library) noexcept { delete library; }

struct ConvKernel {
  plan::ConvDescriptors shape;
};
struct ActivationKernel {
  int count;
  plan::Activation activation;
};
struct BatchnormKernel {
  plan::BatchnormDescriptors shape;
};
void destroy_kernel(ConvKernel* kernel) noexcept { delete kernel; }
void destroy_kernel(ActivationKernel* kernel) noexcept { delete kernel; }
void destroy_kernel(BatchnormKernel* kernel) noexcept { delete kernel; }
struct PoolingKernel {
  plan::PoolingDescriptors shape;
};
void destroy_kernel(PoolingKernel* kernel) noexcept { delete kernel; }
struct SoftmaxKernel {
  plan::SoftmaxDescriptors shape;
};
void destroy_kernel(SoftmaxKernel* kernel) noexcept { delete kernel; }

// As cudnnGetConvolution2dForwardOutputDim computes the output, which must be the plan's.
KernelPtr<ConvKernel> make_conv_kernel(const plan::ConvDescriptors& d) {
  auto out = [](int in, int pad, int dilation, int filter, int stride) {
    return (in + 2 * pad - dilation * (filter - 1) - 1) / stride + 1;
  };
  const int h = out(d.x.h, d.pad_h, d.dilation_h, d.w.h, d.stride_h);
  const int w = out(d.x.w, d.pad_w, d.dilation_w, d.w.w, d.stride_w);
  // As cuDNN with a group count: the filter holds C / groups channels.
  if (d.y.n != d.x.n || d.y.c != d.w.n || d.y.h != h || d.y.w != w || d.groups < 1 || d.x.c != d.w.c * d.groups)
    fail(PARITY_STATUS_SHAPE, msg(kName, ": the convolution descriptors give an output of ", d.x.n, "x", d.w.n, "x", h,
                                  "x", w, " from an input with ", d.x.c, " channels and a filter with ", d.w.c,
                                  " in ", d.groups, " groups; the plan has ", d.y.n, "x", d.y.c, "x", d.y.h, "x",
                                  d.y.w));
  if (d.bias.n != 1 || d.bias.c != d.w.n || d.bias.h != 1 || d.bias.w != 1)
    fail(PARITY_STATUS_SHAPE, msg(kName, ": the bias descriptor is ", d.bias.n, "x", d.bias.c, "x", d.bias.h, "x",
                                  d.bias.w, ", not 1x", d.w.n, "x1x1"));
  return KernelPtr<ConvKernel>(new ConvKernel{d});
}

KernelPtr<ActivationKernel> make_activation_kernel(int count, plan::Activation activation) {
  if (count < 1) fail(PARITY_STATUS_SHAPE, msg(kName, ": an activation over ", count, " elements"));
  return KernelPtr<ActivationKernel>(new ActivationKernel{count, activation});
}

KernelPtr<BatchnormKernel> make_batchnorm_kernel(const plan::BatchnormDescriptors& d) {
  if (d.x.n < 1 || d.x.c < 1 || d.x.h < 1 || d.x.w < 1)
    fail(PARITY_STATUS_SHAPE, msg(kName, ": a batch normalization of ", d.x.n, "x", d.x.c, "x", d.x.h, "x", d.x.w));
  return KernelPtr<BatchnormKernel>(new BatchnormKernel{d});
}

KernelPtr<PoolingKernel> make_pooling_kernel(const plan::PoolingDescriptors& d) {
  return KernelPtr<PoolingKernel>(new PoolingKernel{d});
}

// As cudnnSetTensor4dDescriptor accepts it: every size positive, w 1 (the lanes' layout).
KernelPtr<SoftmaxKernel> make_softmax_kernel(const plan::SoftmaxDescriptors& d) {
  if (d.x.n < 1 || d.x.c < 1 || d.x.h < 1 || d.x.w != 1)
    fail(PARITY_STATUS_SHAPE, msg(kName, ": a softmax descriptor of ", d.x.n, "x", d.x.c, "x", d.x.h, "x", d.x.w));
  return KernelPtr<SoftmaxKernel>(new SoftmaxKernel{d});
}

plan::AlgoChoice choose_conv_algorithm(parity_backend_t, plan::ConvDirection, const plan::ConvDescriptors&,
                                       ConvKernel&, const ConvOperands&, void*, const std::string&) {
  return plan::AlgoChoice{0, 0, false, 0};
}

}  // namespace gpu
}  // namespace parity
