// backends/gpu_emu/emu_streams.cpp — the emulated device's streams and events, the handle
// lookups, and the scheduler: queued work runs only at a synchronization point, and only what
// that point waits for, in stream order, a wait first running the other stream up to the
// recorded position. Deterministic: no threads, no timing. See emu_runtime.h.
#include <string>
#include <utility>

#include "backends/gpu_emu/emu_device_state.h"
#include "backends/gpu_emu/emu_runtime.h"

namespace parity {
namespace emu {

namespace {

// Sets a flag for its lifetime (running_work: launch bodies must not call the runtime).
class FlagWhileAlive {
 public:
  explicit FlagWhileAlive(bool& flag) : flag_(flag) { flag_ = true; }
  ~FlagWhileAlive() { flag_ = false; }
  FlagWhileAlive(const FlagWhileAlive&) = delete;
  FlagWhileAlive& operator=(const FlagWhileAlive&) = delete;

 private:
  bool& flag_;
};

template <class Map>
auto& live_handle(Map& map, uint32_t id, const char* kind, const char* call) {
  auto it = map.find(id);
  if (it == map.end())
    throw HazardError(Check::invalid_handle,
                      std::string(call) + ": " + kind + " " + std::to_string(id) + " was destroyed or never created");
  return it->second;
}

}  // namespace

// --- state helpers -------------------------------------------------------------------------------

void Device::State::enter(const char* call) const {
  if (running_work)
    throw HazardError(Check::reentrant_call,
                      std::string(call) + " called from inside queued work (a launch body): it runs on the device");
}

StreamState& Device::State::stream(Stream handle, const char* call) {
  StreamState& found = live_handle(streams, handle.id, "stream", call);
  if (found.destroyed)
    throw HazardError(Check::invalid_handle, std::string(call) + ": stream " + std::to_string(handle.id) +
                                                 " was destroyed");
  return found;
}

EventState& Device::State::event(Event handle, const char* call) {
  return live_handle(events, handle.id, "event", call);
}
GraphState& Device::State::graph(Graph handle, const char* call) {
  return live_handle(graphs, handle.id, "graph", call);
}
GraphState& Device::State::exec(GraphExec handle, const char* call) {
  return live_handle(execs, handle.id, "graph exec", call);
}

void Device::State::run_until(Agent id, uint64_t position) {
  StreamState& queue = streams.at(id);
  while (queue.run_total < position) {
    if (queue.queue.front().wait_for != kHostAgent) {
      const QueuedWork& wait = queue.queue.front();
      run_until(wait.wait_for, wait.wait_position);  // positions queued before the wait: no cycle
      queue.queue.pop_front();
      ++queue.run_total;
      continue;
    }
    // Taken off the queue first: if it throws, it has run, and the error is the caller's.
    std::function<void()> run = std::move(queue.queue.front().run);
    queue.queue.pop_front();
    ++queue.run_total;
    if (run) {
      FlagWhileAlive running(running_work);
      run();
    }
  }
}

void Device::State::run_everything() {
  for (auto& entry : streams) {
    run_until(entry.first, entry.second.queued_total);
    host_clock.join(entry.second.clock);
  }
}

// --- streams -------------------------------------------------------------------------------------

Stream Device::stream_create() {
  state_->enter("stream_create");
  const uint32_t id = state_->next_stream++;
  state_->streams.emplace(id, StreamState{});
  return Stream{id};
}

void Device::stream_destroy(Stream stream) {
  state_->enter("stream_destroy");
  StreamState& queue = state_->stream(stream, "stream_destroy");
  if (queue.capture)
    throw HazardError(Check::capture_misuse,
                      "stream_destroy of stream " + std::to_string(stream.id) + ", which is capturing");
  queue.destroyed = true;  // as cudaStreamDestroy: its queued work still completes
}

size_t Device::queued_operations(Stream stream) const {
  auto it = state_->streams.find(stream.id);
  return it == state_->streams.end() ? 0 : it->second.queue.size();
}

bool Device::capturing(Stream stream) const {
  auto it = state_->streams.find(stream.id);
  return it != state_->streams.end() && it->second.capture.has_value();
}

// --- events --------------------------------------------------------------------------------------

Event Device::event_create() {
  state_->enter("event_create");
  const uint32_t id = state_->next_event++;
  state_->events.emplace(id, EventState{});
  return Event{id};
}

void Device::event_destroy(Event event) {
  state_->enter("event_destroy");
  state_->event(event, "event_destroy");
  state_->events.erase(event.id);  // a wait already queued keeps its position
}

void Device::event_record(Event event, Stream stream) {
  State& s = *state_;
  s.enter("event_record");
  EventState& recorded = s.event(event, "event_record");
  StreamState& queue = s.stream(stream, "event_record");
  if (queue.capture)
    s.invalidate_capture(stream.id, queue,
                         "event_record of event " + std::to_string(event.id) +
                             " on the capturing stream (the emulator captures single streams only)");
  queue.clock.join(s.host_clock);
  recorded = EventState{true, stream.id, queue.queued_total, queue.clock};
}

void Device::stream_wait_event(Stream stream, Event event) {
  State& s = *state_;
  s.enter("stream_wait_event");
  const EventState& recorded = s.event(event, "stream_wait_event");
  StreamState& queue = s.stream(stream, "stream_wait_event");
  if (!recorded.recorded) return;  // as cudaStreamWaitEvent: nothing to wait for
  if (queue.capture)
    s.invalidate_capture(stream.id, queue,
                         "stream_wait_event on event " + std::to_string(event.id) +
                             ", recorded outside the capture (the emulator captures single streams only)");
  queue.clock.join(s.host_clock);
  queue.clock.join(recorded.clock);
  if (recorded.stream == stream.id) return;  // stream order already waits for it
  queue.queue.push_back(QueuedWork{nullptr, recorded.stream, recorded.position});
  ++queue.queued_total;
}

void Device::event_synchronize(Event event) {
  State& s = *state_;
  s.enter("event_synchronize");
  const EventState recorded = s.event(event, "event_synchronize");
  if (!recorded.recorded) return;
  s.run_until(recorded.stream, recorded.position);
  s.host_clock.join(recorded.clock);
}

// --- synchronization -----------------------------------------------------------------------------

void Device::stream_synchronize(Stream stream) {
  State& s = *state_;
  s.enter("stream_synchronize");
  StreamState& queue = s.stream(stream, "stream_synchronize");
  if (queue.capture) s.invalidate_capture(stream.id, queue, "stream_synchronize of the capturing stream");
  s.run_until(stream.id, queue.queued_total);
  s.host_clock.join(queue.clock);
}

void Device::synchronize() {
  State& s = *state_;
  s.enter("synchronize");
  // As cudaDeviceSynchronize: not allowed while a stream captures; every capture is invalidated.
  std::string capturing;
  for (auto& entry : s.streams)
    if (entry.second.capture) {
      if (entry.second.capture->invalidated_by.empty())
        entry.second.capture->invalidated_by = "synchronize (the whole device) during the capture";
      capturing += (capturing.empty() ? "" : ", ") + std::to_string(entry.first);
    }
  if (!capturing.empty())
    throw CaptureError("synchronize while stream(s) " + capturing + " capture: their captures are invalidated");
  s.run_everything();
}

}  // namespace emu
}  // namespace parity
