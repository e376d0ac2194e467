// backends/gpu/gpu_runtime.h — the device runtime the GPU executors' host code is written
// against: the host-side counterpart of backends/native/pk.h. Memory (device and pinned),
// streams, events, asynchronous copies, synchronization and graph capture, in namespace
// parity::gpu::rt, mapped per target by one header:
//
//   CUDA  (PARITY_GPU_CUDA)  backends/gpu/runtime_cuda.h   the CUDA runtime
//   HIP   (PARITY_GPU_HIP)   backends/gpu/runtime_hip.h    HIP (ROCm 5.2: streams, events, capture)
//   emu   (PARITY_GPU_EMU)   backends/gpu/runtime_emu.h    backends/gpu_emu's emulated device
//
// so that the executor contains no #ifdef per platform. Every target header provides, in
// namespace parity::gpu:
//
//   Stream, Event, Graph, GraphExec           handle types (copyable; Stream{} is "none")
//   rt::set_device(int)
//   rt::device_alloc(bytes) -> void*          rt::device_free(p)     (nullptr for 0 bytes)
//   rt::pinned_alloc(bytes) -> void*          rt::pinned_free(p)
//   rt::copy_async(dst, src, bytes, Copy, stream, label)
//   rt::zero_async(dst, bytes, stream)
//   rt::zero_now(dst, bytes)                  zeroed before it returns (compile time only)
//   rt::stream_create() -> Stream             rt::stream_destroy(s)  rt::stream_sync(s)
//   rt::event_create() -> Event               rt::event_destroy(e)
//   rt::event_record(e, s)  rt::stream_wait(s, e)  rt::event_sync(e)  rt::device_sync()
//   rt::capture_begin(s)    rt::capture_end(s) -> Graph (throws CaptureFailed)
//   rt::graph_instantiate(g) -> GraphExec     rt::graph_destroy(g)   rt::graph_exec_destroy(x)
//   rt::graph_launch(x, s)
//   rt::host_read(p, bytes)  rt::host_write(p, bytes)   the host is about to read / write pinned
//                            memory a copy used: nothing on a real device, checked by the emulation
//   rt::clear_last_error()
//   rt::caller_stream(s) -> void*             the stream as a caller outside the plugin takes it
//                                             (a node hook's `stream`, plugin.h): cudaStream_t,
//                                             hipStream_t, or a pointer to emu::StreamOnDevice
//
// Every call that can fail throws native::PluginError naming the call, where it was made and the
// runtime's error (out of memory keeps PARITY_STATUS_OUT_OF_MEMORY); the destroy and free calls
// never throw (they run in destructors). `label` names a copy in the emulation's messages.
#pragma once

#include <stdexcept>
#include <string>

namespace parity {
namespace gpu {

enum class Copy { host_to_device, device_to_host, device_to_device };

// A graph capture that failed or was invalidated (the runtime's own error, or the emulation's
// forced failure): the executor launches node by node instead.
struct CaptureFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace gpu
}  // namespace parity

#if defined(PARITY_GPU_EMU)
#include "backends/gpu/runtime_emu.h"
#elif defined(PARITY_GPU_HIP)
#include "backends/gpu/runtime_hip.h"
#elif defined(PARITY_GPU_CUDA)
#include "backends/gpu/runtime_cuda.h"
#else
#error "define PARITY_GPU_CUDA, PARITY_GPU_HIP or PARITY_GPU_EMU (the target the executor is compiled for)"
#endif
