// backends/gpu/runtime_cuda.h — gpu_runtime.h's interface on the CUDA runtime (the CUDA plugin).
// Compiled and linked in CI, never executed: no machine of this project has an NVIDIA GPU. Each
// function is one runtime call through CUDA_CHECK, which names the call and the runtime's error.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/cuda_check.h"

namespace parity {
namespace gpu {

using Stream = cudaStream_t;
using Event = cudaEvent_t;
using Graph = cudaGraph_t;
using GraphExec = cudaGraphExec_t;

namespace rt {

inline cudaMemcpyKind kind_of(Copy copy) {
  switch (copy) {
    case Copy::host_to_device: return cudaMemcpyHostToDevice;
    case Copy::device_to_host: return cudaMemcpyDeviceToHost;
    case Copy::device_to_device: break;
  }
  return cudaMemcpyDeviceToDevice;
}

inline void set_device(int device) { CUDA_CHECK(cudaSetDevice(device)); }

inline void* device_alloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes > 0) CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes)));
  return p;
}
inline void device_free(void* p) noexcept {
  if (p) (void)cudaFree(p);
}
inline void* pinned_alloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes > 0) CUDA_CHECK(cudaHostAlloc(&p, static_cast<size_t>(bytes), cudaHostAllocDefault));
  return p;
}
inline void pinned_free(void* p) noexcept {
  if (p) (void)cudaFreeHost(p);
}

inline void copy_async(void* dst, const void* src, int64_t bytes, Copy copy, Stream s, const char* /*label*/) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), kind_of(copy), s));
}
inline void zero_async(void* dst, int64_t bytes, Stream s) {
  CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(bytes), s));
}
// cudaMemset runs on the legacy default stream, which does not order with the instance's
// non-blocking streams: the device is synchronized before it returns (compile time, not a step).
inline void zero_now(void* dst, int64_t bytes) {
  CUDA_CHECK(cudaMemset(dst, 0, static_cast<size_t>(bytes)));
  CUDA_CHECK(cudaDeviceSynchronize());
}

inline Stream stream_create() {
  Stream s = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}
inline void stream_destroy(Stream s) noexcept {
  if (s) (void)cudaStreamDestroy(s);
}
inline void stream_sync(Stream s) { CUDA_CHECK(cudaStreamSynchronize(s)); }

inline Event event_create() {
  Event e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
inline void event_destroy(Event e) noexcept {
  if (e) (void)cudaEventDestroy(e);
}
inline void event_record(Event e, Stream s) { CUDA_CHECK(cudaEventRecord(e, s)); }
inline void stream_wait(Stream s, Event e) { CUDA_CHECK(cudaStreamWaitEvent(s, e, 0)); }
inline void event_sync(Event e) { CUDA_CHECK(cudaEventSynchronize(e)); }
inline void device_sync() { CUDA_CHECK(cudaDeviceSynchronize()); }

// Thread-local capture: other threads' CUDA calls (another instance) do not break it.
inline void capture_begin(Stream s) { CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal)); }
inline Graph capture_end(Stream s) {
  Graph g = nullptr;
  const cudaError_t status = cudaStreamEndCapture(s, &g);
  if (status != cudaSuccess) {
    if (g) (void)cudaGraphDestroy(g);
    (void)cudaGetLastError();
    throw CaptureFailed(native::msg("cudaStreamEndCapture: ", cudaGetErrorName(status), " (",
                                    cudaGetErrorString(status), ")"));
  }
  return g;
}
inline GraphExec graph_instantiate(Graph g) {
  GraphExec x = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&x, g, 0));
  return x;
}
inline void graph_destroy(Graph g) noexcept {
  if (g) (void)cudaGraphDestroy(g);
}
inline void graph_exec_destroy(GraphExec x) noexcept {
  if (x) (void)cudaGraphExecDestroy(x);
}
inline void graph_launch(GraphExec x, Stream s) { CUDA_CHECK(cudaGraphLaunch(x, s)); }

inline void host_read(const void*, int64_t) {}
inline void host_write(void*, int64_t) {}
inline void clear_last_error() { (void)cudaGetLastError(); }
// The stream as callers outside the plugin take it (a node hook's `stream`): the cudaStream_t.
inline void* caller_stream(Stream s) { return s; }

}  // namespace rt
}  // namespace gpu
}  // namespace parity
