// backends/gpu_emu/emu_runtime.h — an emulated device runtime on the host: device and pinned
// memory, streams, events, asynchronous copies, memsets and kernel launches, graph capture and
// replay, with the guarantees of the CUDA runtime and no more, and checks of what a real GPU only
// punishes by chance (a missing event, a missing synchronization, a freed buffer still in use).
// The GPU executors' host code runs against it in CI, where there is no GPU.
//
// What it models:
// - Device memory is host memory that only the device's operations may touch (copies, memsets,
//   launches); fresh device memory holds 0xff bytes, so a read of unwritten memory gives NaN.
//   Pinned host memory (host_alloc) is what copies may transfer asynchronously. A freed block is
//   kept and reused first by the next allocation of its kind and rounded size, as a caching
//   allocator does: freeing and allocating again gives the same address (the case where a stale
//   pointer silently points into new data), and a freed address never becomes pageable memory.
// - Work is queued per stream and runs LAZILY: nothing runs when it is queued. Queued work runs
//   at the synchronization points (stream_synchronize, event_synchronize, synchronize), and then
//   only what that point must wait for: stream_synchronize(s) runs s's queue and, through its
//   event waits, the parts of other streams it waits for; nothing else. The order is
//   deterministic. So a missing wait really yields stale data, as a GPU does by chance.
// - Copies between device memory and PAGEABLE host memory (any host memory not from host_alloc)
//   are synchronous with respect to the host, as CUDA's are: host_to_device reads the source
//   when called (a staging copy; the transfer itself is queued, and the host is not ordered
//   after it); device_to_host runs the stream up to and including the copy before it returns,
//   and the host is then ordered after that work (as after a stream_synchronize). Neither may be
//   captured.
// - Events: event_record captures the stream's position (re-recording replaces it);
//   stream_wait_event makes the stream's later work wait for that position (a wait on a
//   never-recorded event does nothing, as cudaStreamWaitEvent); event_synchronize waits on the
//   host for it (returns at once for a never-recorded event).
// - Graph capture of one stream (begin_capture ... end_capture): the stream's copies, memsets,
//   launches and graph launches are recorded, not queued; instantiate and graph_launch queue
//   them again with the captured arguments (the same pointers, the same bodies). What CUDA
//   forbids in a capture (synchronizing the capturing stream or the device, a pageable copy)
//   and what this single-stream emulation does not support (event_record on the capturing
//   stream, waiting in it on an event recorded outside) throw CaptureError and invalidate the
//   capture, and end_capture then throws CaptureError too, as cudaStreamEndCapture fails: the
//   executor catches it and launches node by node. To test that path, fail_next_capture(reason)
//   makes the next capture fail at end_capture, and so does every capture while the environment
//   variable PARITY_EMU_FAIL_CAPTURE is set to anything but "" or "0".
// - No default stream, one host thread, one device. Not thread-safe.
//
// The checks, each a Check thrown as HazardError before the operation has any effect. Ordering
// is happens-before by vector clocks: one component per stream and one for the host. Queued work
// is ordered after everything the host did before queueing it (program order); event_record
// snapshots the stream's clock, stream_wait_event merges it into the waiting stream, and
// stream/event/device synchronization merge into the host's clock. For every byte range of every
// allocation (device and pinned) the last write and the reads since are kept, and each access is
// checked against them WHEN IT IS QUEUED (so the verdict does not depend on the scheduler; a
// captured operation's pointers are checked at capture, its ordering at each replay):
//   unordered_read            a copy source or launch read of bytes last written on another
//                             stream with no happens-before edge (a missing event)
//   unordered_write           a write of bytes another stream wrote or read since, unordered
//                             (write-after-write, write-after-read across streams)
//   host_read_unsynchronized  host_read of pinned bytes whose last write (a device_to_host
//                             copy) the host has not synchronized with
//   host_write_while_queued   host_write of pinned bytes that unsynchronized work reads or writes
//   free_while_queued         device_free / host_free of an allocation that work the host has not
//                             synchronized with uses (queued, or run but not synchronized)
//   stale_graph_pointer       graph_launch of a graph whose captured pointers no longer belong to
//                             the allocations they belonged to at capture (freed, or freed and
//                             allocated again at the same address: each allocation has its own id)
//   host_pointer_as_device, device_pointer_as_host, out_of_bounds, unknown_pointer,
//   use_after_free            a pointer argument that is not what its role needs
//   capture_misuse            begin_capture twice, end_capture without a capture, destroying a
//                             capturing stream
//   invalid_handle            a destroyed or never-created stream, event, graph or graph exec
//   reentrant_call            a runtime call from inside a launch body
// The messages name the check, the operation, the stream(s), the labels and the byte range within
// its allocation, e.g. "unordered_read: launch 'conv1.fwd' on stream 2 reads device allocation #3
// [256, 1280) last written by copy host_to_device on stream 1 with no event between them".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace parity {
namespace emu {

enum class Check : uint8_t {
  unordered_read,
  unordered_write,
  host_read_unsynchronized,
  host_write_while_queued,
  free_while_queued,
  stale_graph_pointer,
  host_pointer_as_device,
  device_pointer_as_host,
  out_of_bounds,
  unknown_pointer,
  use_after_free,
  capture_misuse,
  invalid_handle,
  reentrant_call,
};

// "unordered_read", ... as in the messages.
const char* check_name(Check check);

// A check that failed; what() starts with check_name(check) and a colon.
struct HazardError : std::runtime_error {
  Check check;
  HazardError(Check failed, const std::string& message);
};

// A capture that failed or was invalidated, as cudaStreamEndCapture (or the forbidden call
// inside a capture) reports it: the caller falls back to launching without a graph.
struct CaptureError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class CopyKind : uint8_t { host_to_device, device_to_host, device_to_device };

// "host_to_device", ...
const char* copy_kind_name(CopyKind kind);

// Handles, as CUDA's: cheap to copy, invalid once destroyed. Id 0 is never a valid handle;
// stream ids start at 1 and are the "stream N" of the messages.
struct Stream {
  uint32_t id = 0;
  explicit operator bool() const { return id != 0; }
};
struct Event {
  uint32_t id = 0;
  explicit operator bool() const { return id != 0; }
};
struct Graph {
  uint32_t id = 0;
  explicit operator bool() const { return id != 0; }
};
struct GraphExec {
  uint32_t id = 0;
  explicit operator bool() const { return id != 0; }
};

// Device bytes a launch declares it reads or writes.
struct DeviceRange {
  const void* ptr = nullptr;
  size_t bytes = 0;
};

struct DeviceOptions {
  // The ordering checks unordered_read, unordered_write, host_read_unsynchronized and
  // host_write_while_queued. Off only to show what a missing wait does to the data. The pointer
  // checks, free_while_queued and stale_graph_pointer always run: they keep the emulator's own
  // memory accesses safe.
  bool check_ordering = true;
};

class Device {
 public:
  explicit Device(DeviceOptions options = {});
  ~Device();  // drops queued work unrun and frees every allocation
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // --- memory (as cudaMalloc / cudaFree / cudaHostAlloc / cudaFreeHost) ---------------------
  // 256-byte aligned, filled with 0xff bytes; nullptr for 0 bytes. Freeing nullptr does nothing.
  void* device_malloc(size_t bytes);
  void device_free(void* ptr);
  void* host_alloc(size_t bytes);  // pinned
  void host_free(void* ptr);

  // --- streams ---------------------------------------------------------------------------------
  Stream stream_create();
  // Queued work still runs at later synchronization points (synchronize, or events it recorded).
  void stream_destroy(Stream stream);

  // --- queued work; `label` (optional) names the operation in messages ------------------------
  // As cudaMemcpyAsync. Zero bytes: nothing is queued.
  void memcpy_async(void* dst, const void* src, size_t bytes, CopyKind kind, Stream stream,
                    const std::string& label = "");
  // As cudaMemsetAsync: sets `bytes` bytes of device memory to (unsigned char)value.
  void memset_async(void* dst, int value, size_t bytes, Stream stream, const std::string& label = "");
  // A kernel launch: `body` runs when the launch runs; `reads` and `writes` are the device bytes
  // it may read and write (a node's inputs and outputs), which the checks go by.
  void launch(Stream stream, const std::string& name, std::vector<DeviceRange> reads,
              std::vector<DeviceRange> writes, std::function<void()> body);

  // --- events ----------------------------------------------------------------------------------
  Event event_create();
  void event_destroy(Event event);
  void event_record(Event event, Stream stream);
  void stream_wait_event(Stream stream, Event event);
  void event_synchronize(Event event);

  // --- synchronization ---------------------------------------------------------------------------
  void stream_synchronize(Stream stream);
  void synchronize();  // every stream, as cudaDeviceSynchronize

  // --- graphs ------------------------------------------------------------------------------------
  void begin_capture(Stream stream);
  Graph end_capture(Stream stream);  // throws CaptureError for a failed or invalidated capture
  GraphExec instantiate(Graph graph);  // independent of `graph` from then on
  // Queues the captured operations (on a capturing stream: adds them to its capture). Every
  // captured pointer is checked first, so a stale one queues nothing; an ordering check failing
  // on the k-th operation leaves the ones before it queued.
  void graph_launch(GraphExec exec, Stream stream);
  void graph_destroy(Graph graph);
  void graph_exec_destroy(GraphExec exec);
  // The next begin_capture's capture fails at end_capture with `reason`.
  void fail_next_capture(const std::string& reason);

  // --- host accesses to pinned memory, declared by the caller before it makes them --------------
  // Pageable memory is not tracked (its copies are synchronous): these accept it and do nothing.
  void host_read(const void* ptr, size_t bytes);
  void host_write(void* ptr, size_t bytes);

  // --- introspection, for tests ------------------------------------------------------------------
  size_t queued_operations(Stream stream) const;  // queued on `stream`, not yet run
  bool capturing(Stream stream) const;

 private:
  struct State;  // emu_device_state.h
  std::unique_ptr<State> state_;
};

// A process-wide device for callers that need one; tests make their own.
Device& default_device();

// A stream as the gpu_emu plugin hands it to callers outside the plugin (a node hook's `stream`,
// plugin.h), where the CUDA plugin hands a cudaStream_t: the device it belongs to and the stream.
// A caller with this runtime linked in queues work on it or waits for it through `device`
// (tests/test_gpu_hooks.cpp).
struct StreamOnDevice {
  Device* device = nullptr;
  Stream stream;
};

}  // namespace emu
}  // namespace parity
