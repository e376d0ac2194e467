// backends/gpu/gpu_backend.h — the objects behind a GPU plugin's opaque handles, written once for
// every target (CUDA, HIP, the emulated device: gpu_runtime.h): an instance (one device, a compute
// stream and a copy stream, the target's library handles, the planning options, the cache of
// chosen convolution algorithms), a raw buffer, the device and pinned allocations, and the
// persistent values. gpu_plugin.cpp holds the function table; each target's <target>_device.cpp
// its probe and the creation of an instance; gpu_compile.cpp, gpu_execute.cpp and gpu_launch.cpp
// the executable (gpu_executable.h). Every entry point runs its body through guarded().
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/cuda_decisions.h"
#include "backends/gpu/gpu_runtime.h"
#include "backends/native/dispatch.h"
#include "backends/native/plugin_support.h"
#include "parity/plugin.h"

#ifndef PARITY_GPU_NAME
#error "build with -DPARITY_GPU_NAME=\"cuda\" (the plugin's name, which prefixes its messages)"
#endif

namespace parity {
namespace gpu {

// The plugin's name: "cuda", "hip" or "gpu_emu"; every message starts with it.
constexpr const char* kName = PARITY_GPU_NAME;

using native::copy_message;
using native::msg;
using native::plugin_fail;
using native::report;
[[noreturn]] inline void fail(parity_status status, const std::string& message) { plugin_fail(status, message); }

// Runs one entry point's body; nothing thrown leaves it.
template <class Body>
parity_status guarded(parity_error* err, Body&& body) {
  return native::guarded(kName, err, std::forward<Body>(body));
}

// The target's build of the native kernels (backends/native): nvcc's, hipcc's, or simt's on the host.
const native::NativeOps& native_ops();

// A device allocation, freed with its owner.
struct DeviceMemory {
  void* ptr = nullptr;
  int64_t bytes = 0;
  DeviceMemory() = default;
  void allocate(int64_t n);  // once, on the current device
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory();
};

// Pinned (page-locked) host memory: what the copy stream transfers from asynchronously.
struct PinnedMemory {
  void* ptr = nullptr;
  int64_t bytes = 0;
  PinnedMemory() = default;
  void allocate(int64_t n);
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
  ~PinnedMemory();
};

// A PARAM or STATE value: its own allocation, shared by name between executables of one instance.
struct Persistent {
  parity_value_desc desc;
  DeviceMemory memory;
  explicit Persistent(const parity_value_desc& d);
};
using PersistentStore = kit::PersistentStore<Persistent>;

// The target's library handles (cuDNN and cuBLAS on CUDA; nothing on the native targets),
// defined by the target's library source and destroyed with the instance.
struct LibraryHandles;
void destroy_library(LibraryHandles* library) noexcept;

}  // namespace gpu
}  // namespace parity

struct parity_backend_instance {
  int device = 0;
  parity::gpu::Stream stream{};       // compute: every step, every synchronous copy
  bool owns_stream = false;
  parity::gpu::Stream copy_stream{};  // the next batch's inputs, while a step runs
  parity::gpu::LibraryHandles* library = nullptr;
  parity::cuda_decisions::Options options;
  bool external_legacy_stream = false;
  std::string device_name;
  int64_t device_memory = 0;
  // Convolution algorithms chosen on this instance, by cuda_decisions::conv_cache_key: searched once
  // per shape, shared by the executables (training, last partial batch, evaluation).
  std::map<std::string, parity::cuda_decisions::AlgoChoice> algorithms;

  void make_current() const { parity::gpu::rt::set_device(device); }
  ~parity_backend_instance();
};

struct parity_buffer_object {
  parity::gpu::DeviceMemory memory;
};

namespace parity {
namespace gpu {
// The target's side of the table (<target>_device.cpp): its one-line description, the probe,
// and an instance on a device.
const char* description();
// Whether create() accepts a vendor stream (parity_backend_config::stream): the
// PARITY_FEATURE_EXTERNAL_STREAM capability.
extern const bool kAcceptsExternalStream;
parity_status probe(parity_probe_result* out, parity_error* err);
parity_status create(const parity_backend_config* config, parity_backend_t* out, parity_error* err);

// The executable's entry points (gpu_compile.cpp, gpu_execute.cpp).
parity_status compile(parity_backend_t b, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err);
void executable_destroy(parity_executable_t exe);
parity_status write_value(parity_executable_t exe, int32_t value, const void* host, int64_t bytes, parity_error* err);
parity_status read_value(parity_executable_t exe, int32_t value, void* host, int64_t bytes, parity_error* err);
parity_status execute(parity_executable_t exe, parity_error* err);
parity_status synchronize(parity_executable_t exe, parity_error* err);
parity_status memory_bytes(parity_executable_t exe, int64_t* out, parity_error* err);
// ABI 8 (gpu_execute.cpp): node hooks and the device addresses of values.
parity_status set_node_hooks(parity_executable_t exe, const parity_node_hooks* hooks, parity_error* err);
parity_status value_address(parity_executable_t exe, int32_t value, void** out, parity_error* err);
// ABI 4 (gpu_compile.cpp): what compile would allocate, planned without a device.
parity_status memory_need_without_device(const parity_plan* plan, uint32_t flags, parity_memory_need* out,
                                         parity_error* err);
}  // namespace gpu
}  // namespace parity
