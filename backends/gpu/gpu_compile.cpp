// backends/gpu/gpu_compile.cpp — the GPU executor's compile entry point, for every target: turns
// a plan into steps by cuda_decisions::executor_route (convolutions with their descriptors and
// algorithms chosen once per shape, products, batch normalizations, optimizer steps, native kernels for the rest; the
// target's library builds what a route keeps) over one device arena
// (cuda_decisions::layout_arena); and memory_need_without_device, the same planning with no
// device (ABI 4).
#include <algorithm>
#include <cstdlib>

#include "backends/gpu/gpu_executable.h"

namespace parity {
namespace gpu {

namespace {

constexpr uint32_t kOneBits = 0x3f800000u;  // 1.0f, the words of the bias GEMMs' vector of ones

// Everything compile decides before it needs a device, shared with the device-free planner:
// the nodes checked as simt and HIP check them (value indices, arity, dtypes, shapes), the
// values placed (persistent ones in the shared store when `with_device`, INPUT ones in the
// slots), one step per node by its route (cuDNN descriptors only `with_device`; the shapes are
// checked either way), and the arena request with the convolution workspace still 0.
plan::ArenaRequest plan_steps(parity_executable_object& exe, const parity_plan* plan, bool with_device) {
  plan::ArenaRequest request{plan->arena_bytes, {}, 0, 0, kLibraryWorkspaceBytes, 0, 0};
  const size_t count = exe.values.size();
  exe.input_index.assign(count, -1);
  exe.held_pointer.assign(count, nullptr);
  exe.host_inputs.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const parity_value_desc& v = exe.values[i];
    if (is_persistent(v)) {
      if (!with_device) continue;
      exe.held.push_back(parity::native::shared_persistent(kName, *exe.persistent, v));
      exe.held_pointer[i] = exe.held.back()->memory.ptr;
    } else if (v.kind == PARITY_VALUE_INPUT) {
      exe.input_index[i] = static_cast<int32_t>(request.input_bytes.size());
      request.input_bytes.push_back(v.bytes);
    }
  }
  exe.latest_slot.assign(request.input_bytes.size(), -1);

  // Every node as simt and HIP check it, before any descriptor is built from it.
  (void)exe.checker.workspace_floats(exe.nodes);
  for (const parity_node_desc& node : exe.nodes) exe.checker.run(node);

  // Steps: descriptors, GEMM calls, optimizer parameters; what the native nodes need is the
  // dispatcher's.
  std::vector<parity_node_desc> native_nodes;
  for (int32_t i = 0; i < plan->num_nodes; ++i) {
    const parity_node_desc& node = exe.nodes[static_cast<size_t>(i)];
    Step step;
    step.node = i;
    // Half values (bf16, f16): CUDA's routes where route_of(node, values) keeps the node on the
    // library (half cuDNN descriptors, GemmEx with f32 epilogues); on HIP every half node native.
    const plan::Route route = plan::executor_route(node, exe.values, kHalfOnLibraryRoutes);
    step.kind = route.kind;
    switch (route.kind) {
      case plan::RouteKind::convolution: {
        // The algorithm is chosen later, once the layout gives the operands' alignment.
        step.conv_shape = plan::conv_descriptors(node, exe.values);
        if (kNativeWorkspaceForEveryNode) native_nodes.push_back(node);
        if (with_device) step.conv = make_conv_kernel(step.conv_shape);
        break;
      }
      case plan::RouteKind::activation: {
        const int64_t n = numel_of(exe.values[static_cast<size_t>(node.inputs[0])]);
        if (n != numel_of(exe.values[static_cast<size_t>(node.outputs[0])]) || n > INT32_MAX)
          fail(PARITY_STATUS_SHAPE, msg(kName, ": node '", node.name, "': ", parity_op_name(node.op),
                                        " input and output must have the same element count, at most 2^31 - 1"));
        if (with_device) step.flat = make_activation_kernel(static_cast<int>(n), route.activation);
        if (kNativeWorkspaceForEveryNode) native_nodes.push_back(node);
        break;
      }
      case plan::RouteKind::softmax: {
        const plan::SoftmaxDescriptors d = plan::softmax_descriptors(node, exe.values);
        if (with_device) step.softmax = make_softmax_kernel(d);
        if (kNativeWorkspaceForEveryNode) native_nodes.push_back(node);
        break;
      }
      case plan::RouteKind::gemm: {
        step.linear = plan::linear_calls(node, exe.values);
        request.ones_count = std::max(request.ones_count, step.linear.ones_count);
        request.gemm_staging_bytes = std::max(request.gemm_staging_bytes, step.linear.staging_bytes);
        if (kNativeWorkspaceForEveryNode) native_nodes.push_back(node);
        break;
      }
      case plan::RouteKind::batchnorm:
        step.batchnorm_shape = plan::batchnorm_descriptors(node, exe.values);
        if (with_device) step.batchnorm = make_batchnorm_kernel(step.batchnorm_shape);
        if (kNativeWorkspaceForEveryNode) native_nodes.push_back(node);
        break;
      case plan::RouteKind::optimizer:
        step.hyperparameter_offset = request.hyperparameter_bytes;  // relative until the layout is known
        request.hyperparameter_bytes += sizeof(parity_op_params);
        native_nodes.push_back(node);  // the dispatcher checks its shapes
        break;
      case plan::RouteKind::pooling: {
        const plan::PoolingPlan pooling = plan::pooling_plan(node, exe.values);
        if (!pooling.on_cudnn) {  // windows cuDNN does not compute as the ABI does: the native kernels
          step.kind = plan::RouteKind::native;
          native_nodes.push_back(node);
          break;
        }
        if (kNativeWorkspaceForEveryNode) native_nodes.push_back(node);
        if (with_device) step.pool = make_pooling_kernel(pooling.d);
        break;
      }
      case plan::RouteKind::native:
        native_nodes.push_back(node);
        break;
    }
    exe.steps.push_back(std::move(step));
  }
  request.native_workspace_bytes = exe.dispatcher.workspace_floats(native_nodes) * 4;
  return request;
}

bool has_convolution(const std::vector<Step>& steps) {
  return std::any_of(steps.begin(), steps.end(),
                     [](const Step& step) { return step.kind == plan::RouteKind::convolution; });
}

}  // namespace

parity_status compile(parity_backend_t b, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err) {
  if (!b || !plan || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": compile: NULL argument"));
  *out = nullptr;
  return guarded(err, [&] {
    parity::native::check_compile(kName, plan, /*inputs_in_arena=*/false, stores_half_values(),  // inputs: the slots
                                  share_with != nullptr, share_with && share_with->instance == b);
    b->make_current();
    auto exe = std::make_unique<parity_executable_object>();
    parity::native::start_executable(*exe, b, plan, share_with, flags);
    exe->capture = plan::decide_capture(b->options, b->external_legacy_stream, plan->num_nodes);
    plan::ArenaRequest request = plan_steps(*exe, plan, /*with_device=*/true);
    exe->layout = plan::layout_arena(request);  // the convolution workspace (last) still 0

    // Convolution algorithms: searched on a scratch copy of the arena's layout (same offsets
    // from a 256-aligned base, so the same alignments) plus a workspace of the limit's size,
    // freed before the arena is allocated with the largest chosen workspace at its end.
    if (has_convolution(exe->steps)) {
      const int64_t scratch_arena = exe->layout.total_bytes;
      DeviceMemory scratch;  // only where algorithms are searched on the device
      if (kConvAlgorithmSearch) scratch.allocate(scratch_arena + b->options.conv_workspace_limit);
      void* search_workspace = scratch.ptr ? static_cast<char*>(scratch.ptr) + scratch_arena : nullptr;
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
        const ConvOperands at = scratch.ptr ? ConvOperands{exe->address(x, 0, scratch.ptr), exe->address(w, 0, scratch.ptr),
                                                           exe->address(y, 0, scratch.ptr), alignment}
                                            : ConvOperands{nullptr, nullptr, nullptr, alignment};
        const plan::ConvDirection direction = node.op == PARITY_OP_CONV2D ? plan::ConvDirection::forward
                                              : bwd_data                  ? plan::ConvDirection::backward_data
                                                                          : plan::ConvDirection::backward_filter;
        step.algo = choose_conv_algorithm(b, direction, step.conv_shape, *step.conv, at, search_workspace, node.name);
        request.conv_workspace_bytes = std::max(request.conv_workspace_bytes, step.algo.workspace_bytes);
      }
      if (scratch.ptr) gpu::rt::device_sync();  // the searches ran on the scratch memory about to be freed
      exe->layout = plan::layout_arena(request);
    }

    // The one device allocation; inputs start as zeros in both slots.
    exe->arena.allocate(exe->layout.total_bytes);
    if (exe->layout.slot_bytes)
      gpu::rt::zero_async(exe->region(exe->layout.slot_offset[0]), 2 * exe->layout.slot_bytes, b->stream);
    for (int s = 0; s < 2; ++s) {
      exe->pinned[s].allocate(exe->layout.slot_bytes);
      exe->inputs_ready[s] = gpu::rt::event_create();
      exe->step_done[s] = gpu::rt::event_create();
    }
    for (Step& step : exe->steps) {
      if (step.hyperparameter_offset < 0) continue;
      step.hyperparameter_offset += exe->layout.hyperparameter_offset;
      const parity_node_desc& node = exe->nodes[static_cast<size_t>(step.node)];
      gpu::rt::copy_async(exe->region(step.hyperparameter_offset), &node.params, sizeof node.params,
                          gpu::Copy::host_to_device, b->stream, "compile (optimizer hyperparameters)");
    }
    if (request.ones_count) exe->enqueue_fill(exe->region(exe->layout.ones_offset), request.ones_count, kOneBits);
    gpu::rt::stream_sync(b->stream);
    *out = exe.release();
  });
}

// ABI 4: what compile would allocate on a default instance, with no device and no instance:
// the same steps and arena layout; where the library searches convolution algorithms on the
// device, the convolution workspace at the limit PARITY_CUDA_WORKSPACE_MB sets, so an upper bound. Device: the
// arena and every persistent value. Host: the pinned memory of the two input slots and the host
// copies of the i32 inputs.
parity_status memory_need_without_device(const parity_plan* plan, uint32_t flags, parity_memory_need* out,
                                         parity_error* err) {
  if (!plan || !out)
    return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": memory_need_without_device: NULL argument"));
  return guarded(err, [&] {
    parity::native::check_compile(kName, plan, /*inputs_in_arena=*/false, stores_half_values(), false, false);
    const plan::Options options = plan::options_from_env([](const char* name) { return std::getenv(name); });
    parity_executable_object exe;
    parity::native::start_executable(exe, static_cast<parity_backend_instance*>(nullptr), plan,
                                     static_cast<const parity_executable_object*>(nullptr), flags);
    plan::ArenaRequest request = plan_steps(exe, plan, /*with_device=*/false);
    if (has_convolution(exe.steps) && kConvAlgorithmSearch) request.conv_workspace_bytes = options.conv_workspace_limit;
    const plan::ArenaLayout layout = plan::layout_arena(request);
    int64_t persistent = 0, i32_inputs = 0;
    for (const parity_value_desc& v : exe.values) {
      if (is_persistent(v)) persistent += v.bytes;
      if (v.kind == PARITY_VALUE_INPUT && v.dtype == PARITY_I32) i32_inputs += v.bytes;
    }
    out->device_bytes = layout.total_bytes + persistent;
    out->host_bytes = 2 * layout.slot_bytes + i32_inputs;
  });
}

}  // namespace gpu
}  // namespace parity
