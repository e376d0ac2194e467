// backends/gpu/runtime_hip.h — gpu_runtime.h's interface on HIP (ROCm 5.2; the HIP plugin).
// Compiled by hipcc, linked and loaded in CI, never executed: no machine of this project has an
// AMD GPU. Each function is one runtime call through HIP_CHECK, which names the call and HIP's
// error; the calls are CUDA's (runtime_cuda.h) under their HIP names.
#pragma once

#include <hip/hip_runtime.h>

#include <cstdint>

#include "backends/hip/hip_check.h"

namespace parity {
namespace gpu {

using Stream = hipStream_t;
using Event = hipEvent_t;
using Graph = hipGraph_t;
using GraphExec = hipGraphExec_t;

namespace rt {

inline hipMemcpyKind kind_of(Copy copy) {
  switch (copy) {
    case Copy::host_to_device: return hipMemcpyHostToDevice;
    case Copy::device_to_host: return hipMemcpyDeviceToHost;
    case Copy::device_to_device: break;
  }
  return hipMemcpyDeviceToDevice;
}

inline void set_device(int device) { HIP_CHECK(hipSetDevice(device)); }

inline void* device_alloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes > 0) HIP_CHECK(hipMalloc(&p, static_cast<size_t>(bytes)));
  return p;
}
inline void device_free(void* p) noexcept {
  if (p) (void)hipFree(p);
}
inline void* pinned_alloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes > 0) HIP_CHECK(hipHostMalloc(&p, static_cast<size_t>(bytes), hipHostMallocDefault));
  return p;
}
inline void pinned_free(void* p) noexcept {
  if (p) (void)hipHostFree(p);
}

inline void copy_async(void* dst, const void* src, int64_t bytes, Copy copy, Stream s, const char* /*label*/) {
  HIP_CHECK(hipMemcpyAsync(dst, src, static_cast<size_t>(bytes), kind_of(copy), s));
}
inline void zero_async(void* dst, int64_t bytes, Stream s) {
  HIP_CHECK(hipMemsetAsync(dst, 0, static_cast<size_t>(bytes), s));
}
// hipMemset runs on the null stream, which does not order with the instance's non-blocking
// streams: the device is synchronized before it returns (compile time, not a step).
inline void zero_now(void* dst, int64_t bytes) {
  HIP_CHECK(hipMemset(dst, 0, static_cast<size_t>(bytes)));
  HIP_CHECK(hipDeviceSynchronize());
}

inline Stream stream_create() {
  Stream s = nullptr;
  HIP_CHECK(hipStreamCreateWithFlags(&s, hipStreamNonBlocking));
  return s;
}
inline void stream_destroy(Stream s) noexcept {
  if (s) (void)hipStreamDestroy(s);
}
inline void stream_sync(Stream s) { HIP_CHECK(hipStreamSynchronize(s)); }

inline Event event_create() {
  Event e = nullptr;
  HIP_CHECK(hipEventCreateWithFlags(&e, hipEventDisableTiming));
  return e;
}
inline void event_destroy(Event e) noexcept {
  if (e) (void)hipEventDestroy(e);
}
inline void event_record(Event e, Stream s) { HIP_CHECK(hipEventRecord(e, s)); }
inline void stream_wait(Stream s, Event e) { HIP_CHECK(hipStreamWaitEvent(s, e, 0)); }
inline void event_sync(Event e) { HIP_CHECK(hipEventSynchronize(e)); }
inline void device_sync() { HIP_CHECK(hipDeviceSynchronize()); }

// Thread-local capture: other threads' HIP calls (another instance) do not break it.
inline void capture_begin(Stream s) { HIP_CHECK(hipStreamBeginCapture(s, hipStreamCaptureModeThreadLocal)); }
inline Graph capture_end(Stream s) {
  Graph g = nullptr;
  const hipError_t status = hipStreamEndCapture(s, &g);
  if (status != hipSuccess) {
    if (g) (void)hipGraphDestroy(g);
    (void)hipGetLastError();
    throw CaptureFailed(native::msg("hipStreamEndCapture: ", hipGetErrorName(status), " (",
                                    hipGetErrorString(status), ")"));
  }
  return g;
}
// ROCm 5.2's hipGraphInstantiate is CUDA 10's: no flags, an error node and a log buffer (unused).
inline GraphExec graph_instantiate(Graph g) {
  GraphExec x = nullptr;
  HIP_CHECK(hipGraphInstantiate(&x, g, nullptr, nullptr, 0));
  return x;
}
inline void graph_destroy(Graph g) noexcept {
  if (g) (void)hipGraphDestroy(g);
}
inline void graph_exec_destroy(GraphExec x) noexcept {
  if (x) (void)hipGraphExecDestroy(x);
}
inline void graph_launch(GraphExec x, Stream s) { HIP_CHECK(hipGraphLaunch(x, s)); }

inline void host_read(const void*, int64_t) {}
inline void host_write(void*, int64_t) {}
inline void clear_last_error() { (void)hipGetLastError(); }
// The stream as callers outside the plugin take it (a node hook's `stream`): the hipStream_t.
inline void* caller_stream(Stream s) { return s; }

}  // namespace rt
}  // namespace gpu
}  // namespace parity
