// backends/gpu/gpu_launch.cpp — running a compiled step, for every target: each Step's route
// on the compute stream (the target's library source implements the routes), the node hooks
// around each step as it is queued, the poison of temporaries, and the capture of a slot's whole step as a graph, with the fallback to launching
// node by node when the capture fails.
#include "backends/gpu/gpu_executable.h"
#include "backends/kit/poison.h"

void parity_executable_object::enqueue(const Step& step) {
  const parity_node_desc& node = nodes[static_cast<size_t>(step.node)];
  switch (step.kind) {
    case plan::RouteKind::convolution: enqueue_convolution(step, node); return;
    case plan::RouteKind::activation: enqueue_activation(step, node); return;
    case plan::RouteKind::pooling: enqueue_pooling(step, node); return;
    case plan::RouteKind::softmax: enqueue_softmax(step, node); return;
    case plan::RouteKind::gemm: enqueue_gemm(step, node); return;
    case plan::RouteKind::optimizer: enqueue_optimizer(step, node); return;
    case plan::RouteKind::batchnorm: enqueue_batchnorm(step, node); return;
    case plan::RouteKind::native: enqueue_native(node); return;
  }
}

// Input (output = false) or output `slot` of `node` in the slot being launched.
void* parity_executable_object::operand(const parity_node_desc& node, bool output, int32_t slot) {
  return pointer(output ? node.outputs[slot] : node.inputs[slot], launch_slot);
}

// Queues the whole step reading input slot `slot` on the compute stream (captured or not). With
// `hooks`, a node's BEFORE points are called before its work is queued (so a hook may make the
// stream wait for work of its own) and its AFTER points once it is queued (so work a hook queues
// on the stream runs after it), on this thread; what a hook throws stops the queueing there.
void parity_executable_object::enqueue_steps(int slot, const parity::kit::NodeHookSchedule* hooks) {
  launch_slot = slot;
  if (poison)
    parity::kit::poison_temps(values, [&](size_t i, int64_t count, uint32_t bits) {
      void* at = pointer(static_cast<int32_t>(i), slot);
      if (values[i].dtype != PARITY_BF16 && values[i].dtype != PARITY_F16) return enqueue_fill(at, count, bits);
      // A half value may start or end mid-word (2-byte offsets): the fill covers the whole words
      // inside it, so at most its first and last element keep their old bits.
      const uintptr_t begin = (reinterpret_cast<uintptr_t>(at) + 3) & ~uintptr_t{3};
      const uintptr_t end = (reinterpret_cast<uintptr_t>(at) + static_cast<uintptr_t>(count) * 2) & ~uintptr_t{3};
      if (end > begin) enqueue_fill(reinterpret_cast<void*>(begin), static_cast<int64_t>((end - begin) / 4), bits);
    });
  if (!hooks || hooks->empty()) {
    for (const Step& step : steps) enqueue(step);
    return;
  }
  void* const stream = parity::gpu::rt::caller_stream(instance->stream);
  for (const Step& step : steps) {  // one per node, in plan order (plan_steps)
    hooks->at(step.node, PARITY_HOOK_BEFORE, stream);
    enqueue(step);
    hooks->at(step.node, PARITY_HOOK_AFTER, stream);
  }
}

// Captures the step reading `slot` as a graph. Capture queues nothing, so a failure costs
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
    enqueue_steps(slot, nullptr);
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
  capture = {false, msg("capturing the step as a graph failed (", failure, "); launching node by node")};
  std::fprintf(stderr, "parity: %s\n", capture.why.c_str());
}
