// backends/gpu_emu/emu_graphs.cpp — graph capture of one stream, instantiation and replay, and the
// ways a capture fails (invalidated by a forbidden call, forced by fail_next_capture or
// PARITY_EMU_FAIL_CAPTURE). See emu_runtime.h.
#include <cstdlib>
#include <string>
#include <utility>

#include "backends/gpu_emu/emu_device_state.h"
#include "backends/gpu_emu/emu_runtime.h"

namespace parity {
namespace emu {

namespace {

// PARITY_EMU_FAIL_CAPTURE set to anything but "" or "0": every capture fails.
bool captures_fail_by_environment() {
  const char* value = std::getenv("PARITY_EMU_FAIL_CAPTURE");
  return value && *value && std::string(value) != "0";
}

std::string stream_text(Agent id) { return "stream " + std::to_string(id); }

}  // namespace

void Device::State::invalidate_capture(Agent id, StreamState& queue, const std::string& reason) {
  if (queue.capture->invalidated_by.empty()) queue.capture->invalidated_by = reason;
  throw CaptureError(reason + ": the capture of " + stream_text(id) + " is invalidated");
}

void Device::State::require_valid_capture(Agent id, const StreamState& queue) const {
  if (queue.capture && !queue.capture->invalidated_by.empty())
    throw CaptureError("the capture of " + stream_text(id) + " was invalidated (" + queue.capture->invalidated_by +
                       "); end it with end_capture");
}

void Device::begin_capture(Stream stream) {
  State& s = *state_;
  s.enter("begin_capture");
  StreamState& queue = s.stream(stream, "begin_capture");
  if (queue.capture)
    throw HazardError(Check::capture_misuse, "begin_capture of " + stream_text(stream.id) + ", which captures already");
  queue.capture.emplace();
  if (!s.next_capture_failure.empty())
    queue.capture->forced_failure = std::exchange(s.next_capture_failure, std::string());
  else if (captures_fail_by_environment())
    queue.capture->forced_failure = "PARITY_EMU_FAIL_CAPTURE is set";
}

Graph Device::end_capture(Stream stream) {
  State& s = *state_;
  s.enter("end_capture");
  StreamState& queue = s.stream(stream, "end_capture");
  if (!queue.capture)
    throw HazardError(Check::capture_misuse, "end_capture of " + stream_text(stream.id) + ", which is not capturing");
  Capture capture = std::move(*queue.capture);
  queue.capture.reset();  // the stream is usable again, whatever the outcome
  if (!capture.invalidated_by.empty())
    throw CaptureError("end_capture of " + stream_text(stream.id) + ": the capture was invalidated by " +
                       capture.invalidated_by);
  if (!capture.forced_failure.empty())
    throw CaptureError("end_capture of " + stream_text(stream.id) + ": capture failed: " + capture.forced_failure);
  const uint32_t id = s.next_graph++;
  s.graphs.emplace(id, GraphState{std::move(capture.operations)});
  return Graph{id};
}

GraphExec Device::instantiate(Graph graph) {
  State& s = *state_;
  s.enter("instantiate");
  GraphState copy = s.graph(graph, "instantiate");  // independent of the graph from now on
  const uint32_t id = s.next_exec++;
  s.execs.emplace(id, std::move(copy));
  return GraphExec{id};
}

void Device::graph_launch(GraphExec exec, Stream stream) {
  State& s = *state_;
  s.enter("graph_launch");
  const GraphState& graph = s.exec(exec, "graph_launch");
  StreamState& queue = s.stream(stream, "graph_launch");
  if (queue.capture) {  // a graph launched into a capture: its operations join the capture
    s.require_valid_capture(stream.id, queue);
    for (const Operation& operation : graph.operations) queue.capture->operations.push_back(operation);
    return;
  }
  const std::string replay = " (graph exec " + std::to_string(exec.id) + " replay)";
  // Every captured pointer first, so that a stale one queues nothing.
  for (const Operation& operation : graph.operations) {
    const std::string who = operation.what + replay + " on " + stream_text(stream.id);
    for (const Span& span : operation.reads) s.current_allocation(span, who);
    for (const Span& span : operation.writes) s.current_allocation(span, who);
  }
  for (const Operation& operation : graph.operations) {
    Operation replayed = operation;
    replayed.what += replay;
    s.enqueue(stream.id, queue, replayed);
  }
}

void Device::graph_destroy(Graph graph) {
  state_->enter("graph_destroy");
  state_->graph(graph, "graph_destroy");
  state_->graphs.erase(graph.id);
}

void Device::graph_exec_destroy(GraphExec exec) {
  state_->enter("graph_exec_destroy");
  state_->exec(exec, "graph_exec_destroy");
  state_->execs.erase(exec.id);  // replays already queued keep their operations
}

void Device::fail_next_capture(const std::string& reason) {
  state_->enter("fail_next_capture");
  state_->next_capture_failure = reason.empty() ? std::string("fail_next_capture") : reason;
}

}  // namespace emu
}  // namespace parity
