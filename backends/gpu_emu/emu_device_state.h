// backends/gpu_emu/emu_device_state.h — what an emulated Device holds: its allocations, streams
// (clock, queue, capture), events, graphs and the host's clock, and the steps its entry points
// share: handle lookup, submitting an operation (queued with its checks, or captured), running
// queued work, invalidating a capture. Internal to backends/gpu_emu.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "backends/gpu_emu/emu_hazards.h"
#include "backends/gpu_emu/emu_memory.h"
#include "backends/gpu_emu/emu_runtime.h"

namespace parity {
namespace emu {

// A copy, memset or launch, checked and ready to be queued or captured.
struct Operation {
  std::string what;  // "copy host_to_device 'x'", "launch 'conv1.fwd'": the stream is added when queued
  std::vector<Span> reads, writes;
  std::function<void()> run;
};

// One entry of a stream's queue: work to run, or a wait for another stream's position.
struct QueuedWork {
  std::function<void()> run;
  Agent wait_for = kHostAgent;  // a stream id for a wait (stream_wait_event), else kHostAgent
  uint64_t wait_position = 0;   // run that stream until it has run this many entries
};

struct Capture {
  std::vector<Operation> operations;
  std::string invalidated_by;   // why the capture is invalid ("" while valid)
  std::string forced_failure;   // fail_next_capture's or PARITY_EMU_FAIL_CAPTURE's reason
};

struct StreamState {
  VectorClock clock;
  std::deque<QueuedWork> queue;
  uint64_t queued_total = 0;  // entries ever queued: an event's position
  uint64_t run_total = 0;     // entries ever run
  bool destroyed = false;     // its handle is gone; its queued work still runs
  std::optional<Capture> capture;
};

struct EventState {
  bool recorded = false;
  Agent stream = kHostAgent;
  uint64_t position = 0;  // the stream's queued_total at the record
  VectorClock clock;      // the stream's clock at the record
};

struct GraphState {
  std::vector<Operation> operations;
};

struct Device::State {
  explicit State(DeviceOptions options_) : options(options_) {}

  DeviceOptions options;
  AllocationTable memory;
  VectorClock host_clock;
  std::map<uint32_t, StreamState> streams;  // destroyed ones stay, for their queued work
  std::map<uint32_t, EventState> events;
  std::map<uint32_t, GraphState> graphs;
  std::map<uint32_t, GraphState> execs;
  uint32_t next_stream = 1, next_event = 1, next_graph = 1, next_exec = 1;
  std::string next_capture_failure;  // fail_next_capture
  bool running_work = false;          // inside run_until: a launch body must not call back

  // Every entry point's first step: throws reentrant_call from inside a launch body.
  void enter(const char* call) const;
  StreamState& stream(Stream handle, const char* call);
  EventState& event(Event handle, const char* call);
  GraphState& graph(Graph handle, const char* call);
  GraphState& exec(GraphExec handle, const char* call);

  // Captures `operation` when the stream captures, else queues it with the ordering checks.
  void submit(Stream handle, StreamState& stream, Operation operation);
  // Queues `operation` on stream `id`: orders it after the host's past, checks its reads and
  // writes against the access histories, records them, and appends it to the queue.
  void enqueue(Agent id, StreamState& stream, const Operation& operation);
  // The allocation `span` still lies in (only a graph's captured span can have lost it: then it
  // throws stale_graph_pointer, naming the operation `who`).
  Allocation& current_allocation(const Span& span, const std::string& who);

  // Runs stream `id`'s queue until it has run `position` entries (and, first, what they wait for).
  void run_until(Agent id, uint64_t position);
  // Every stream to its end; the host is then ordered after all of them.
  void run_everything();

  // Marks the capture invalid (if it is not yet) and throws CaptureError with `reason`.
  [[noreturn]] void invalidate_capture(Agent id, StreamState& stream, const std::string& reason);
  // Throws CaptureError when the stream's capture was invalidated already.
  void require_valid_capture(Agent id, const StreamState& stream) const;

  // device_free / host_free: the checks, then the release.
  void free_allocation(void* ptr, MemoryKind kind, const char* call);
};

}  // namespace emu
}  // namespace parity
