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

// Every HIP route runs the native kernels: a node with half values is planned native outright
// (cuda_decisions::executor_route), so no step here carries half descriptors or LinearCalls.
extern const bool kHalfOnLibraryRoutes = false;

}  // namespace gpu
}  // namespace parity

namespace {

// The node's native kernels on the instance's compute stream (pk.h's launches go to
// pk::stream(), per thread), queued or captured.
void launch_native(parity_executable_object& exe, const parity_node_desc& node) {
  ::pk::stream() = exe.instance->stream;
  exe.dispatcher.run(node);
}

// What the executor planned for CUDA's library must be f32 here (kHalfOnLibraryRoutes is false):
// a half descriptor or half GEMM call reaching this target is the executor's error, said so.
void refuse_half_plan(const parity_node_desc& node, bool half, const char* what) {
  if (half)
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': ", what,
                                     " planned for half values on a target whose half nodes must take the native "
                                     "route (kHalfOnLibraryRoutes)"));
}

}  // namespace

void parity_executable_object::enqueue_convolution(const Step& step, const parity_node_desc& node) {
  refuse_half_plan(node, step.conv_shape.element != plan::ElementType::f32 || step.conv_shape.db_by_channel_sum,
                   "cuDNN convolution descriptors");
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

void parity_executable_object::enqueue_gemm(const Step& step, const parity_node_desc& node) {
  const plan::LinearCalls& calls = step.linear;
  refuse_half_plan(node, calls.element != plan::ElementType::f32 || !calls.rounds.empty() || !calls.sums.empty() ||
                             calls.staging_bytes != 0,
                   "cuBLAS GemmEx calls");
  launch_native(*this, node);
}

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
