// backends/gpu_emu/emu_runtime.cpp — the emulated device's memory, its queued work (copies,
// memsets, launches: checked, then queued or captured) and the host's declared accesses to
// pinned memory. Streams, events and synchronization are in emu_streams.cpp, capture and graphs
// in emu_graphs.cpp. See emu_runtime.h.
#include "backends/gpu_emu/emu_runtime.h"

#include <cstring>
#include <memory>
#include <utility>

#include "backends/gpu_emu/emu_device_state.h"

namespace parity {
namespace emu {

const char* check_name(Check check) {
  switch (check) {
    case Check::unordered_read: return "unordered_read";
    case Check::unordered_write: return "unordered_write";
    case Check::host_read_unsynchronized: return "host_read_unsynchronized";
    case Check::host_write_while_queued: return "host_write_while_queued";
    case Check::free_while_queued: return "free_while_queued";
    case Check::stale_graph_pointer: return "stale_graph_pointer";
    case Check::host_pointer_as_device: return "host_pointer_as_device";
    case Check::device_pointer_as_host: return "device_pointer_as_host";
    case Check::out_of_bounds: return "out_of_bounds";
    case Check::unknown_pointer: return "unknown_pointer";
    case Check::use_after_free: return "use_after_free";
    case Check::capture_misuse: return "capture_misuse";
    case Check::invalid_handle: return "invalid_handle";
    case Check::reentrant_call: return "reentrant_call";
  }
  return "unknown_check";
}

HazardError::HazardError(Check failed, const std::string& message)
    : std::runtime_error(std::string(check_name(failed)) + ": " + message), check(failed) {}

const char* copy_kind_name(CopyKind kind) {
  switch (kind) {
    case CopyKind::host_to_device: return "host_to_device";
    case CopyKind::device_to_host: return "device_to_host";
    case CopyKind::device_to_device: return "device_to_device";
  }
  return "unknown_copy_kind";
}

namespace {

std::string range_text(size_t begin, size_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

std::string with_label(std::string what, const std::string& label) {
  return label.empty() ? what : what + " '" + label + "'";
}

// What orders two accesses that are not ordered: an event between streams, a synchronization
// with the host.
std::string missing_edge(Agent earlier, Agent later) {
  return earlier == kHostAgent || later == kHostAgent ? "with no synchronization between them"
                                                      : "with no event between them";
}

}  // namespace

// --- memory ----------------------------------------------------------------------------------

Device::Device(DeviceOptions options) : state_(std::make_unique<State>(options)) {}
Device::~Device() = default;

void* Device::device_malloc(size_t bytes) {
  state_->enter("device_malloc");
  return bytes == 0 ? nullptr : state_->memory.allocate(MemoryKind::device, bytes).base;
}

void* Device::host_alloc(size_t bytes) {
  state_->enter("host_alloc");
  return bytes == 0 ? nullptr : state_->memory.allocate(MemoryKind::pinned, bytes).base;
}

void Device::device_free(void* ptr) {
  state_->enter("device_free");
  state_->free_allocation(ptr, MemoryKind::device, "device_free");
}

void Device::host_free(void* ptr) {
  state_->enter("host_free");
  state_->free_allocation(ptr, MemoryKind::pinned, "host_free");
}

void Device::State::free_allocation(void* ptr, MemoryKind kind, const char* call) {
  if (!ptr) return;
  const std::string where = std::string(call) + " of " + address_text(ptr);
  // The pointer checks of device_span/host_span, and it must be where the allocation starts.
  if (kind == MemoryKind::device)
    memory.device_span(ptr, 0, call, "pointer");
  else if (!memory.host_span(ptr, 0, call, "pointer"))
    throw HazardError(Check::unknown_pointer, where + ": no pinned allocation holds it");
  Allocation& allocation = *memory.live_at(ptr);
  if (allocation.base != ptr)
    throw HazardError(Check::unknown_pointer,
                      where + ": it is " + std::to_string(static_cast<char*>(ptr) - allocation.base) + " bytes into " +
                          allocation_name(allocation.kind, allocation.id) + ", not where it starts");
  // Always checked, even without the ordering checks: queued work must not touch freed memory.
  if (std::optional<Conflict> conflict = allocation.history.unordered_anywhere(kHostAgent, host_clock))
    throw HazardError(Check::free_while_queued,
                      std::string(call) + " of " + allocation_name(allocation.kind, allocation.id) + " while " +
                          *conflict->earlier.operation + " may still use " +
                          range_text(conflict->begin, conflict->end) +
                          " of it: the host has not synchronized with it");
  memory.release(allocation);
}

// --- queued work -----------------------------------------------------------------------------

void Device::memcpy_async(void* dst, const void* src, size_t bytes, CopyKind kind, Stream stream,
                          const std::string& label) {
  State& s = *state_;
  s.enter("memcpy_async");
  StreamState& queue = s.stream(stream, "memcpy_async");
  if (bytes == 0) return;
  Operation operation;
  operation.what = with_label(std::string("copy ") + copy_kind_name(kind), label);
  const std::string who = operation.what + " on " + agent_name(stream.id);
  switch (kind) {
    case CopyKind::device_to_device:
      operation.reads.push_back(s.memory.device_span(src, bytes, who, "source"));
      operation.writes.push_back(s.memory.device_span(dst, bytes, who, "destination"));
      operation.run = [dst, src, bytes] { std::memmove(dst, src, bytes); };
      s.submit(stream, queue, std::move(operation));
      return;
    case CopyKind::host_to_device: {
      std::optional<Span> pinned = s.memory.host_span(src, bytes, who, "source");
      operation.writes.push_back(s.memory.device_span(dst, bytes, who, "destination"));
      if (pinned) {
        operation.reads.push_back(*pinned);
        operation.run = [dst, src, bytes] { std::memcpy(dst, src, bytes); };
        s.submit(stream, queue, std::move(operation));
        return;
      }
      // Pageable: the source is read now, into a staging copy; the transfer is queued.
      if (queue.capture) s.invalidate_capture(stream.id, queue, who + " from pageable memory cannot be captured");
      auto staging = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                         static_cast<const char*>(src) + bytes);
      operation.run = [dst, staging] { std::memcpy(dst, staging->data(), staging->size()); };
      s.submit(stream, queue, std::move(operation));
      return;
    }
    case CopyKind::device_to_host: {
      std::optional<Span> pinned = s.memory.host_span(dst, bytes, who, "destination");
      operation.reads.push_back(s.memory.device_span(src, bytes, who, "source"));
      operation.run = [dst, src, bytes] { std::memcpy(dst, src, bytes); };
      if (pinned) {
        operation.writes.push_back(*pinned);
        s.submit(stream, queue, std::move(operation));
        return;
      }
      // Pageable: returns once the copy (and so the stream's work before it) has run.
      if (queue.capture) s.invalidate_capture(stream.id, queue, who + " to pageable memory cannot be captured");
      s.submit(stream, queue, std::move(operation));
      s.run_until(stream.id, queue.queued_total);
      s.host_clock.join(queue.clock);
      return;
    }
  }
}

void Device::memset_async(void* dst, int value, size_t bytes, Stream stream, const std::string& label) {
  State& s = *state_;
  s.enter("memset_async");
  StreamState& queue = s.stream(stream, "memset_async");
  if (bytes == 0) return;
  Operation operation;
  operation.what = with_label("memset", label);
  operation.writes.push_back(s.memory.device_span(dst, bytes, operation.what + " on " + agent_name(stream.id),
                                                  "destination"));
  operation.run = [dst, value, bytes] { std::memset(dst, value, bytes); };
  s.submit(stream, queue, std::move(operation));
}

void Device::launch(Stream stream, const std::string& name, std::vector<DeviceRange> reads,
                    std::vector<DeviceRange> writes, std::function<void()> body) {
  State& s = *state_;
  s.enter("launch");
  StreamState& queue = s.stream(stream, "launch");
  Operation operation;
  operation.what = "launch '" + name + "'";
  const std::string who = operation.what + " on " + agent_name(stream.id);
  for (size_t i = 0; i < reads.size(); ++i)
    if (reads[i].bytes > 0)
      operation.reads.push_back(s.memory.device_span(reads[i].ptr, reads[i].bytes, who, "read #" + std::to_string(i)));
  for (size_t i = 0; i < writes.size(); ++i)
    if (writes[i].bytes > 0)
      operation.writes.push_back(
          s.memory.device_span(writes[i].ptr, writes[i].bytes, who, "write #" + std::to_string(i)));
  operation.run = std::move(body);
  s.submit(stream, queue, std::move(operation));
}

void Device::State::submit(Stream handle, StreamState& queue, Operation operation) {
  if (queue.capture) {
    require_valid_capture(handle.id, queue);
    queue.capture->operations.push_back(std::move(operation));
    return;
  }
  enqueue(handle.id, queue, operation);
}

void Device::State::enqueue(Agent id, StreamState& queue, const Operation& operation) {
  queue.clock.join(host_clock);  // after everything the host did before queueing it
  const std::string who = operation.what + " on " + agent_name(id);
  std::vector<Allocation*> read_from, written_to;
  for (const Span& span : operation.reads) read_from.push_back(&current_allocation(span, who));
  for (const Span& span : operation.writes) written_to.push_back(&current_allocation(span, who));
  if (options.check_ordering) {
    for (size_t i = 0; i < read_from.size(); ++i) {
      const Span& span = operation.reads[i];
      const Allocation& allocation = *read_from[i];
      if (std::optional<Conflict> c = allocation.history.unordered_for_read(span.offset, span.offset + span.bytes, id,
                                                                            queue.clock))
        throw HazardError(Check::unordered_read, who + " reads " + allocation_name(allocation.kind, allocation.id) +
                                                     " " + range_text(c->begin, c->end) + " last written by " +
                                                     *c->earlier.operation + " " + missing_edge(c->earlier.agent, id));
    }
    for (size_t i = 0; i < written_to.size(); ++i) {
      const Span& span = operation.writes[i];
      const Allocation& allocation = *written_to[i];
      if (std::optional<Conflict> c = allocation.history.unordered_for_write(span.offset, span.offset + span.bytes,
                                                                             id, queue.clock))
        throw HazardError(Check::unordered_write,
                          who + " writes " + allocation_name(allocation.kind, allocation.id) + " " +
                              range_text(c->begin, c->end) +
                              (c->earlier_wrote ? " last written by " + *c->earlier.operation
                                                : " that " + *c->earlier.operation + " reads,") +
                              " " + missing_edge(c->earlier.agent, id));
    }
  }
  const Access access{id, queue.clock.tick(id), std::make_shared<const std::string>(who)};
  for (size_t i = 0; i < read_from.size(); ++i) {
    const Span& span = operation.reads[i];
    read_from[i]->history.record_read(span.offset, span.offset + span.bytes, access);
  }
  for (size_t i = 0; i < written_to.size(); ++i) {
    const Span& span = operation.writes[i];
    written_to[i]->history.record_write(span.offset, span.offset + span.bytes, access);
  }
  queue.queue.push_back(QueuedWork{operation.run, kHostAgent, 0});
  ++queue.queued_total;
}

Allocation& Device::State::current_allocation(const Span& span, const std::string& who) {
  Allocation* now = memory.live_at(span.ptr);
  if (now && now->id == span.allocation_id) return *now;
  // Only a graph's captured spans get here: a direct operation's spans were checked just before.
  throw HazardError(Check::stale_graph_pointer,
                    who + " was captured with " + address_text(span.ptr) + ", " +
                        range_text(span.offset, span.offset + span.bytes) + " of " +
                        allocation_name(span.kind, span.allocation_id) + ", which was freed" +
                        (now ? "; the address now belongs to " + allocation_name(now->kind, now->id)
                             : std::string("")));
}

// --- host accesses -----------------------------------------------------------------------------

void Device::host_read(const void* ptr, size_t bytes) {
  State& s = *state_;
  s.enter("host_read");
  if (bytes == 0) return;
  std::optional<Span> span = s.memory.host_span(ptr, bytes, "host_read", "buffer");
  if (!span) return;  // pageable: not tracked
  Allocation& allocation = *s.memory.live_at(ptr);
  const size_t end = span->offset + bytes;
  if (s.options.check_ordering)
    if (std::optional<Conflict> c = allocation.history.unordered_for_read(span->offset, end, kHostAgent, s.host_clock))
      throw HazardError(Check::host_read_unsynchronized,
                        "host_read of " + allocation_name(allocation.kind, allocation.id) + " " +
                            range_text(c->begin, c->end) + " last written by " + *c->earlier.operation +
                            ", which the host has not synchronized with");
  allocation.history.record_read(span->offset, end,
                                 Access{kHostAgent, s.host_clock.tick(kHostAgent),
                                        std::make_shared<const std::string>("host_read by the host")});
}

void Device::host_write(void* ptr, size_t bytes) {
  State& s = *state_;
  s.enter("host_write");
  if (bytes == 0) return;
  std::optional<Span> span = s.memory.host_span(ptr, bytes, "host_write", "buffer");
  if (!span) return;
  Allocation& allocation = *s.memory.live_at(ptr);
  const size_t end = span->offset + bytes;
  if (s.options.check_ordering)
    if (std::optional<Conflict> c = allocation.history.unordered_for_write(span->offset, end, kHostAgent, s.host_clock))
      throw HazardError(Check::host_write_while_queued,
                        "host_write of " + allocation_name(allocation.kind, allocation.id) + " " +
                            range_text(c->begin, c->end) + " while " + *c->earlier.operation + " may still " +
                            (c->earlier_wrote ? "write" : "read") + " it: the host has not synchronized with it");
  allocation.history.record_write(span->offset, end,
                                  Access{kHostAgent, s.host_clock.tick(kHostAgent),
                                         std::make_shared<const std::string>("host_write by the host")});
}

Device& default_device() {
  static Device device;
  return device;
}

}  // namespace emu
}  // namespace parity
