// backends/gpu/gpu_plugin.cpp — a GPU plugin's function table (api/include/parity/plugin.h), for
// every target: instances (the target's probe and create are in its <target>_device.cpp), raw
// buffers and copies, the device and pinned allocations and persistent values. The executables
// are in gpu_compile.cpp and gpu_execute.cpp.
//
// On CUDA and HIP compiled, linked and loaded in CI, never executed on a GPU here (only their
// probes' "unavailable" paths run); on the emulated device (gpu_emu) executed by the tests.
#include <cstdlib>
#include <cstring>

#include "backends/gpu/gpu_backend.h"
#include "backends/gpu/gpu_executable.h"  // stores_half_values

using parity::gpu::fail;
using parity::gpu::guarded;
using parity::gpu::kName;
using parity::gpu::report;
using parity::native::msg;

parity_backend_instance::~parity_backend_instance() {
  // Destruction cannot report; what fails here has no caller.
  try {
    parity::gpu::rt::set_device(device);
    if (stream) parity::gpu::rt::stream_sync(stream);
    if (copy_stream) parity::gpu::rt::stream_sync(copy_stream);
  } catch (const std::exception&) {
  }
  parity::gpu::destroy_library(library);
  parity::gpu::rt::stream_destroy(copy_stream);
  if (owns_stream) parity::gpu::rt::stream_destroy(stream);
}

namespace parity {
namespace gpu {

void DeviceMemory::allocate(int64_t n) {
  bytes = n;
  ptr = gpu::rt::device_alloc(n);
}
DeviceMemory::~DeviceMemory() { gpu::rt::device_free(ptr); }

void PinnedMemory::allocate(int64_t n) {
  bytes = n;
  ptr = gpu::rt::pinned_alloc(n);
}
PinnedMemory::~PinnedMemory() { gpu::rt::pinned_free(ptr); }

Persistent::Persistent(const parity_value_desc& d) : desc(d) {
  memory.allocate(d.bytes);
  if (memory.ptr) gpu::rt::zero_now(memory.ptr, d.bytes);
}

namespace {

void destroy(parity_backend_t backend) { delete backend; }

parity_status get_capabilities(parity_backend_t b, parity_capabilities* out, parity_error* err) {
  if (!b || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": get_capabilities: NULL argument"));
  *out = parity_capabilities{};
  out->dtypes = parity::native::native_dtypes(gpu::stores_half_values());
  out->features = PARITY_FEATURE_ASYNC_EXECUTE;
  if (gpu::kAcceptsExternalStream) out->features |= PARITY_FEATURE_EXTERNAL_STREAM;
  if (b->options.deterministic) out->features |= PARITY_FEATURE_DETERMINISTIC;
  if (cuda_decisions::decide_capture(b->options, b->external_legacy_stream, 1).capture)
    out->features |= PARITY_FEATURE_GRAPH_CAPTURE;
  out->threads = 1;
  out->device = b->device;
  out->device_memory_bytes = b->device_memory;
  copy_message(out->device_name, sizeof out->device_name,
               msg(b->device_name, "; ", cuda_decisions::describe(b->options)));
  return PARITY_OK;
}

int32_t supports(parity_backend_t, const parity_node_desc* node, char* reason, size_t reason_len) {
  return native::supports_known_op(kName, node, reason, reason_len, gpu::stores_half_values());
}

parity_status buffer_alloc(parity_backend_t b, int64_t bytes, parity_buffer_t* out, parity_error* err) {
  if (!b || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": buffer_alloc: NULL argument"));
  *out = nullptr;
  return guarded(err, [&] {
    if (bytes < 0) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": buffer_alloc: bytes must be >= 0, got ", bytes));
    b->make_current();
    auto buffer = std::make_unique<parity_buffer_object>();
    buffer->memory.allocate(bytes);
    *out = buffer.release();
  });
}

void buffer_free(parity_backend_t b, parity_buffer_t buffer) {
  if (!buffer) return;
  if (b) {  // a buffer may still be in use by queued copies
    try {
      gpu::rt::set_device(b->device);
      gpu::rt::stream_sync(b->stream);
    } catch (const std::exception&) {  // freeing cannot report
    }
  }
  delete buffer;
}

void check_range(parity_buffer_t buffer, int64_t offset, int64_t bytes, const char* function) {
  native::check_buffer_range(kName, !buffer, buffer ? buffer->memory.bytes : 0, offset, bytes, function);
}

char* at(parity_buffer_t buffer, int64_t offset) { return static_cast<char*>(buffer->memory.ptr) + offset; }

// Host to device: returns once the host bytes have been read (the ABI lets the caller reuse them).
parity_status copy_host_to_device(parity_backend_t b, parity_buffer_t dst, int64_t dst_offset, const void* src,
                                  int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b || (!src && bytes)) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": copy_host_to_device: NULL argument"));
    check_range(dst, dst_offset, bytes, "copy_host_to_device");
    if (bytes == 0) return;
    b->make_current();
    gpu::rt::copy_async(at(dst, dst_offset), src, bytes, gpu::Copy::host_to_device, b->stream, "copy_host_to_device");
    gpu::rt::stream_sync(b->stream);
  });
}

parity_status copy_device_to_host(parity_backend_t b, void* dst, parity_buffer_t src, int64_t src_offset,
                                  int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b || (!dst && bytes)) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": copy_device_to_host: NULL argument"));
    check_range(src, src_offset, bytes, "copy_device_to_host");
    if (bytes == 0) return;
    b->make_current();
    gpu::rt::copy_async(dst, at(src, src_offset), bytes, gpu::Copy::device_to_host, b->stream, "copy_device_to_host");
    gpu::rt::stream_sync(b->stream);
  });
}

// Device to device: queued on the instance's stream, ordered with its other work.
parity_status copy_device_to_device(parity_backend_t b, parity_buffer_t dst, int64_t dst_offset, parity_buffer_t src,
                                    int64_t src_offset, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": copy_device_to_device: backend is NULL"));
    check_range(dst, dst_offset, bytes, "copy_device_to_device");
    check_range(src, src_offset, bytes, "copy_device_to_device");
    if (bytes == 0) return;
    b->make_current();
    gpu::rt::copy_async(at(dst, dst_offset), at(src, src_offset), bytes, gpu::Copy::device_to_device, b->stream,
                        "copy_device_to_device");
  });
}

}  // namespace

// The table, built on first use (its description is the target's).
const parity_backend_table* table() {
  static const parity_backend_table kTable = {
      PARITY_ABI_VERSION,
      sizeof(parity_backend_table),
      kName,
      description(),
      probe,
      create,
      destroy,
      get_capabilities,
      supports,
      buffer_alloc,
      buffer_free,
      copy_host_to_device,
      copy_device_to_host,
      copy_device_to_device,
      compile,
      executable_destroy,
      write_value,
      read_value,
      execute,
      synchronize,
      memory_bytes,
      nullptr,  // write_value_f64: float64 access is ref's alone
      nullptr,  // read_value_f64
      nullptr,  // memory_need: the algorithm search that sizes a convolution's workspace runs at compile
      memory_need_without_device,
      set_node_hooks,
      value_address,
  };
  return &kTable;
}

}  // namespace gpu
}  // namespace parity

extern "C" PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry(void) { return parity::gpu::table(); }
