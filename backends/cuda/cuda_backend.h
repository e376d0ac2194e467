// backends/cuda/cuda_backend.h — the objects behind the CUDA plugin's opaque handles: an
// instance (one device, a compute stream and a copy stream, one cuDNN and one cuBLAS handle, the
// options, the cache of chosen convolution algorithms), a raw buffer, and an executable (one
// device arena, double-buffered inputs fed from pinned memory, the compiled steps and their
// captured CUDA graphs). cuda_plugin.cpp implements the instance and buffer entry points,
// cuda_compile.cpp and cuda_executable.cpp the executable's (cuda_executable.h); every entry
// point runs its body through guarded().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decisions.h"
#include "backends/gpu/gpu_runtime.h"
#include "backends/native/dispatch.h"
#include "backends/native/plugin_support.h"
#include "parity/plugin.h"

namespace parity {
namespace cuda_backend {

using native::copy_message;
using native::plugin_fail;
using native::report;
[[noreturn]] inline void fail(parity_status status, const std::string& message) { plugin_fail(status, message); }

// Runs one entry point's body; nothing thrown leaves it.
template <class Body>
parity_status guarded(parity_error* err, Body&& body) {
  return native::guarded("cuda", err, std::forward<Body>(body));
}

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

}  // namespace cuda_backend
}  // namespace parity

struct parity_backend_instance {
  int device = 0;
  parity::gpu::Stream stream{};       // compute: every step, every synchronous copy
  bool owns_stream = false;
  parity::gpu::Stream copy_stream{};  // the next batch's inputs, while a step runs
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
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
  parity::cuda_backend::DeviceMemory memory;
};

namespace parity {
namespace cuda_backend {
// The executable's entry points (cuda_executable.cpp).
parity_status compile(parity_backend_t b, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err);
void executable_destroy(parity_executable_t exe);
parity_status write_value(parity_executable_t exe, int32_t value, const void* host, int64_t bytes, parity_error* err);
parity_status read_value(parity_executable_t exe, int32_t value, void* host, int64_t bytes, parity_error* err);
parity_status execute(parity_executable_t exe, parity_error* err);
parity_status synchronize(parity_executable_t exe, parity_error* err);
parity_status memory_bytes(parity_executable_t exe, int64_t* out, parity_error* err);
// ABI 4 (cuda_compile.cpp): what compile would allocate, planned without a device.
parity_status memory_need_without_device(const parity_plan* plan, uint32_t flags, parity_memory_need* out,
                                         parity_error* err);
}  // namespace cuda_backend
}  // namespace parity
