// backends/hip/hip_library.cpp — the HIP target's routes of the GPU executor (declared in
// backends/gpu/gpu_executable.h). HIP has no vendor library here: the executor plans every node
// as on CUDA (cuda_decisions's routes, descriptors, GEMM calls, arena layout), and every route
// runs the node's native kernels (hip_kernels.cpp, through the dispatcher simt also uses) on the
// instance's compute stream; the poison and the bias GEMMs' ones are hipMemsetD32Async fills.
// Compiled by hipcc and linked in CI, never executed (no AMD GPU here).
#include <hip/hip_runtime.h>

#include "backends/gpu/gpu_executable.h"
#include "backends/gpu/native_routes.h"
#include "backends/hip/hip_check.h"
#include "backends/native/pk.h"

namespace parity {
namespace native {
namespace hip {
const NativeOps& native_ops();  // hip_kernels.cpp
}
}  // namespace native

namespace gpu {

const native::NativeOps& native_ops() { return native::hip::native_ops(); }

}  // namespace gpu
}  // namespace parity

namespace {

// The node's native kernels on the instance's compute stream (pk.h's launches go to
// pk::stream(), per thread), queued or captured.
void launch_native(parity_executable_object& exe, const parity_node_desc& node) {
  ::pk::stream() = exe.instance->stream;
  exe.dispatcher.run(node);
}

}  // namespace

void parity_executable_object::enqueue_convolution(const Step&, const parity_node_desc& node) {
  launch_native(*this, node);
}

void parity_executable_object::enqueue_activation(const Step&, const parity_node_desc& node) {
  launch_native(*this, node);
}

void parity_executable_object::enqueue_pooling(const Step&, const parity_node_desc& node) {
  launch_native(*this, node);
}

void parity_executable_object::enqueue_softmax(const Step&, const parity_node_desc& node) {
  launch_native(*this, node);
}

void parity_executable_object::enqueue_gemm(const Step&, const parity_node_desc& node) { launch_native(*this, node); }

// The native Adam and SGD kernels take their hyperparameters as kernel arguments (node.params),
// captured by value in a graph, unlike CUDA's optimizer kernels, which read the device copy
// compile made. They never change after compile, so a replay is still right.
void parity_executable_object::enqueue_optimizer(const Step&, const parity_node_desc& node) {
  launch_native(*this, node);
}

void parity_executable_object::enqueue_batchnorm(const Step&, const parity_node_desc& node) {
  launch_native(*this, node);
}

void parity_executable_object::enqueue_native(const parity_node_desc& node) { launch_native(*this, node); }

// A hipMemsetD32Async on the compute stream (ROCm captures it as a memset node).
void parity_executable_object::enqueue_fill(void* words, int64_t count, uint32_t bits) {
  HIP_CHECK(hipMemsetD32Async(words, static_cast<int>(bits), static_cast<size_t>(count), instance->stream));
}

// No library state; no earlier error is left for a native launch's hipGetLastError to report as
// its own.
void parity_executable_object::bind_library() { parity::gpu::rt::clear_last_error(); }
