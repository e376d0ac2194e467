// backends/gpu/runtime_emu.h — gpu_runtime.h's interface on the emulated device
// (backends/gpu_emu/emu_runtime.h): the gpu_emu plugin, executed in CI. One process-wide device
// (emu::default_device()); its checks (a missing event, a missing synchronization, a buffer freed
// while in use, a replayed graph with stale pointers) throw emu::HazardError, which the entry
// points report as a device error naming the check. A capture the emulation refuses or was told
// to fail (PARITY_EMU_FAIL_CAPTURE) is a CaptureFailed, as a failed cudaStreamEndCapture is.
//
// For the tests that show the checks firing on the executor's own sequence, PARITY_EMU_OMIT drops
// calls the executor makes, as if it had forgotten them: a comma-separated list of stream_wait,
// event_sync and stream_sync (tests/test_gpu_emu.cpp). Never set it otherwise.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <exception>
#include <map>

#include "backends/gpu_emu/emu_runtime.h"

namespace parity {
namespace gpu {

using Stream = emu::Stream;
using Event = emu::Event;
using Graph = emu::Graph;
using GraphExec = emu::GraphExec;

namespace rt {

inline emu::Device& device() { return emu::default_device(); }

// Runs a free or destroy, which cannot report to a caller (it runs in destructors): a check it
// fails is printed, never hidden.
template <class Call>
void printed_if_refused(Call&& call) noexcept {
  try {
    call();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parity: gpu_emu: %s\n", e.what());
  }
}

// Whether PARITY_EMU_OMIT names `call` (read at each call: the tests change it between runs).
inline bool omitted(const char* call) {
  const char* list = std::getenv("PARITY_EMU_OMIT");
  if (!list) return false;
  const size_t n = std::strlen(call);
  for (const char* at = std::strstr(list, call); at; at = std::strstr(at + 1, call))
    if ((at == list || at[-1] == ',') && (at[n] == '\0' || at[n] == ',')) return true;
  return false;
}

inline emu::CopyKind kind_of(Copy copy) {
  switch (copy) {
    case Copy::host_to_device: return emu::CopyKind::host_to_device;
    case Copy::device_to_host: return emu::CopyKind::device_to_host;
    case Copy::device_to_device: break;
  }
  return emu::CopyKind::device_to_device;
}

inline void set_device(int) {}  // one device

inline void* device_alloc(int64_t bytes) { return device().device_malloc(static_cast<size_t>(bytes)); }
inline void device_free(void* p) noexcept {
  printed_if_refused([&] { device().device_free(p); });
}
inline void* pinned_alloc(int64_t bytes) { return device().host_alloc(static_cast<size_t>(bytes)); }
inline void pinned_free(void* p) noexcept {
  printed_if_refused([&] { device().host_free(p); });
}

inline void copy_async(void* dst, const void* src, int64_t bytes, Copy copy, Stream s, const char* label) {
  device().memcpy_async(dst, src, static_cast<size_t>(bytes), kind_of(copy), s, label);
}
inline void zero_async(void* dst, int64_t bytes, Stream s) {
  device().memset_async(dst, 0, static_cast<size_t>(bytes), s, "zero");
}
// On a stream of its own, synchronized before it returns (the emulation has no default stream).
inline void zero_now(void* dst, int64_t bytes) {
  emu::Device& d = device();
  const Stream s = d.stream_create();
  d.memset_async(dst, 0, static_cast<size_t>(bytes), s, "zero (persistent value)");
  d.stream_synchronize(s);
  d.stream_destroy(s);
}

inline Stream stream_create() { return device().stream_create(); }
inline void stream_destroy(Stream s) noexcept {
  if (!s) return;
  printed_if_refused([&] { device().stream_destroy(s); });
}
inline void stream_sync(Stream s) {
  if (!omitted("stream_sync")) device().stream_synchronize(s);
}

inline Event event_create() { return device().event_create(); }
inline void event_destroy(Event e) noexcept {
  if (!e) return;
  printed_if_refused([&] { device().event_destroy(e); });
}
inline void event_record(Event e, Stream s) { device().event_record(e, s); }
inline void stream_wait(Stream s, Event e) {
  if (!omitted("stream_wait")) device().stream_wait_event(s, e);
}
inline void event_sync(Event e) {
  if (!omitted("event_sync")) device().event_synchronize(e);
}
inline void device_sync() { device().synchronize(); }

inline void capture_begin(Stream s) { device().begin_capture(s); }
inline Graph capture_end(Stream s) {
  try {
    return device().end_capture(s);
  } catch (const emu::CaptureError& e) {
    throw CaptureFailed(e.what());
  }
}
inline GraphExec graph_instantiate(Graph g) { return device().instantiate(g); }
inline void graph_destroy(Graph g) noexcept {
  if (!g) return;
  printed_if_refused([&] { device().graph_destroy(g); });
}
inline void graph_exec_destroy(GraphExec x) noexcept {
  if (!x) return;
  printed_if_refused([&] { device().graph_exec_destroy(x); });
}
inline void graph_launch(GraphExec x, Stream s) { device().graph_launch(x, s); }

inline void host_read(const void* p, int64_t bytes) { device().host_read(p, static_cast<size_t>(bytes)); }
inline void host_write(void* p, int64_t bytes) { device().host_write(p, static_cast<size_t>(bytes)); }
inline void clear_last_error() {}
// The stream as callers outside the plugin take it (a node hook's `stream`), where CUDA hands the
// cudaStream_t: a pointer to the device and the stream (emu::StreamOnDevice), stable for the
// process (stream ids are never reused), so that the caller can queue work on it or wait for it.
inline void* caller_stream(Stream s) {
  static std::map<uint32_t, emu::StreamOnDevice> handles;  // the emulation has one host thread
  emu::StreamOnDevice& handle = handles[s.id];
  handle = emu::StreamOnDevice{&device(), s};
  return &handle;
}

}  // namespace rt
}  // namespace gpu
}  // namespace parity
