// backends/hip/hip_plugin.cpp — libparity-backend-hip.so's plugin table (api/include/parity/plugin.h):
// the device probe that says why HIP is unavailable, instances on one device and one stream,
// device buffers and copies, and executables that hold one device arena (the plan's layout),
// persistent values shared by name, and run a plan by launching the native kernels
// (backends/native) node by node through the dispatcher simt also uses
// (backends/native/dispatch.h). Every HIP call goes through HIP_CHECK, which names the call, the
// file and the line; every entry point catches what is thrown and returns status + message.
//
// Compiled, linked and loaded in CI; never executed on a GPU here (no AMD GPU): only the probe's
// "no device" path runs.
#include <hip/hip_runtime.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/kit/poison.h"
#include "backends/native/dispatch.h"
#include "backends/native/plugin_support.h"
#include "backends/native/native_ops.h"
#include "backends/native/pk.h"
#include "parity/plugin.h"

#ifndef PARITY_HIP_ARCHS_STRING
#error "build with -DPARITY_HIP_ARCHS_STRING=\"gfx90a,gfx1030\" (the --offload-arch targets)"
#endif

namespace parity {
namespace native {
namespace hip {
const NativeOps& native_ops();
}
}  // namespace native

namespace hip_plugin {
namespace {

using native::msg;
using native::numel_of;
using native::shape_str;
using native::value_name;

using native::copy_message;
using native::report;

[[noreturn]] void fail(parity_status status, const std::string& message) { native::plugin_fail(status, message); }

// HIP_CHECK(expr): runs one HIP call; a failure becomes a PluginError naming the call, where it was
// made and HIP's error name and text. Out-of-memory keeps its own status.
void check(hipError_t status, const char* call, const char* file, int line) {
  if (status == hipSuccess) return;
  fail(status == hipErrorOutOfMemory ? PARITY_STATUS_OUT_OF_MEMORY : PARITY_STATUS_DEVICE,
       msg("hip: ", call, " failed at ", file, ":", line, ": ", hipGetErrorName(status), " (",
           hipGetErrorString(status), ")"));
}
#define HIP_CHECK(expr) ::parity::hip_plugin::check((expr), #expr, __FILE__, __LINE__)

// Runs one entry point's body; nothing thrown leaves it.
template <class Body>
parity_status guarded(parity_error* err, Body&& body) {
  return native::guarded("hip", err, std::forward<Body>(body));
}

const char* op_name(parity_op op) { return native::op_name(op); }

// The gfx target of a device, without its feature flags ("gfx90a:sramecc+:xnack-" -> "gfx90a").
std::string base_arch(const char* gcn_arch_name) {
  std::string arch(gcn_arch_name, strnlen(gcn_arch_name, 256));
  return arch.substr(0, arch.find(':'));
}

bool built_for(const std::string& arch) {
  const std::string built = PARITY_HIP_ARCHS_STRING;
  size_t start = 0;
  while (start <= built.size()) {
    const size_t comma = std::min(built.find(',', start), built.size());
    if (built.compare(start, comma - start, arch) == 0 && comma - start == arch.size()) return true;
    start = comma + 1;
  }
  return false;
}

// A device allocation, freed with its owner.
struct DeviceMemory {
  void* ptr = nullptr;
  int64_t bytes = 0;
  DeviceMemory() = default;
  void allocate(int64_t n) {  // once, on the current device
    bytes = n;
    if (n > 0) HIP_CHECK(hipMalloc(&ptr, static_cast<size_t>(n)));
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() {
    if (ptr) (void)hipFree(ptr);  // a failure here has no caller to report to
  }
};

}  // namespace
}  // namespace hip_plugin
}  // namespace parity

using parity::hip_plugin::DeviceMemory;
using parity::hip_plugin::fail;
using parity::hip_plugin::guarded;
using parity::native::msg;
using parity::native::numel_of;
using parity::native::shape_str;

struct parity_backend_instance {
  int device = 0;
  hipStream_t stream = nullptr;
  bool owns_stream = false;
  std::string device_name;
  int64_t device_memory = 0;

  // Every call on an instance runs on its device (HIP's current device is per thread).
  void make_current() const { HIP_CHECK(hipSetDevice(device)); }
  ~parity_backend_instance() {
    if (owns_stream && stream) (void)hipStreamDestroy(stream);
  }
};

struct parity_buffer_object {
  DeviceMemory memory;
  explicit parity_buffer_object(int64_t bytes) { memory.allocate(bytes); }
};

namespace parity {
namespace hip_plugin {
namespace {

// A PARAM or STATE value: its own allocation, shared by name between executables of one instance.
struct Persistent {
  parity_value_desc desc;
  DeviceMemory memory;
  explicit Persistent(const parity_value_desc& d) : desc(d) {
    memory.allocate(d.bytes);
    // hipMemset runs on the null stream, which does not order with the instance's non-blocking
    // stream: wait for it here (compile time, not a step).
    if (memory.ptr) {
      HIP_CHECK(hipMemset(memory.ptr, 0, static_cast<size_t>(d.bytes)));
      HIP_CHECK(hipDeviceSynchronize());
    }
  }
};
using PersistentStore = kit::PersistentStore<Persistent>;

using native::is_persistent;

}  // namespace
}  // namespace hip_plugin
}  // namespace parity

using parity::hip_plugin::Persistent;
using parity::hip_plugin::PersistentStore;

struct parity_executable_object {
  // How the dispatcher reaches this executable's values: device pointers; INPUT i32 values (labels,
  // Adam's step) are also kept on the host as written, so their data checks need no device sync.
  struct Memory {
    parity_executable_object* exe;
    float* f32(int32_t value) { return static_cast<float*>(exe->pointers[static_cast<size_t>(value)]); }
    int32_t* i32(int32_t value) { return static_cast<int32_t*>(exe->pointers[static_cast<size_t>(value)]); }
    const int32_t* host_i32(int32_t value) {
      const std::vector<int32_t>& shadow = exe->host_inputs[static_cast<size_t>(value)];
      return shadow.empty() ? nullptr : shadow.data();
    }
    float* workspace() { return static_cast<float*>(exe->workspace.ptr); }
    [[noreturn]] void fail(parity_status status, const std::string& message) { parity::hip_plugin::fail(status, message); }
  };

  parity_backend_instance* instance = nullptr;
  std::vector<parity_value_desc> values;
  std::vector<parity_node_desc> nodes;
  std::shared_ptr<PersistentStore> persistent;
  std::vector<std::shared_ptr<Persistent>> held;  // the persistent values this plan uses
  DeviceMemory arena;                              // INPUT and TEMP values at the plan's offsets
  DeviceMemory workspace;                          // im2col columns, per-row loss terms
  std::vector<void*> pointers;                     // per value: where it lives on the device
  std::vector<std::vector<int32_t>> host_inputs;   // per value: host copy of an i32 INPUT, once written
  bool poison = false;
  Memory memory{this};
  parity::native::NodeDispatcher<Memory> dispatcher{"hip", parity::hip_plugin::op_name,
                                                    parity::native::hip::native_ops(), values, memory};
};

namespace parity {
namespace hip_plugin {
namespace {

parity_status probe(parity_probe_result* out, parity_error* err) {
  if (!out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "hip: probe: out is NULL");
  *out = parity_probe_result{};
  return guarded(err, [&] {
    int count = 0;
    const hipError_t status = hipGetDeviceCount(&count);
    if (status != hipSuccess || count <= 0) {
      const hipError_t shown = status != hipSuccess ? status : hipErrorNoDevice;
      switch (shown) {
        case hipErrorNoDevice: out->reason = PARITY_UNAVAILABLE_NO_DEVICE; break;
        case hipErrorInsufficientDriver: out->reason = PARITY_UNAVAILABLE_DRIVER_TOO_OLD; break;
        case hipErrorNotInitialized:
        case hipErrorSharedObjectInitFailed: out->reason = PARITY_UNAVAILABLE_NO_DRIVER; break;
        default: out->reason = PARITY_UNAVAILABLE_OTHER; break;
      }
      const std::string what =
          out->reason == PARITY_UNAVAILABLE_NO_DEVICE ? std::string("no HIP device")
          : out->reason == PARITY_UNAVAILABLE_DRIVER_TOO_OLD
              ? msg("the AMD GPU driver is older than this HIP runtime (", HIP_VERSION_MAJOR, ".", HIP_VERSION_MINOR, ")")
          : out->reason == PARITY_UNAVAILABLE_NO_DRIVER ? std::string("no usable AMD GPU driver (amdgpu/ROCk)")
                                                        : std::string("hipGetDeviceCount failed");
      copy_message(out->detail, sizeof out->detail, msg(what, " (", hipGetErrorName(shown), ")"));
      return;
    }
    // Devices exist; the usable ones are those of a target this plugin was built for.
    int usable = 0;
    std::string first, seen;
    for (int d = 0; d < count; ++d) {
      hipDeviceProp_t props{};
      HIP_CHECK(hipGetDeviceProperties(&props, d));
      const std::string arch = base_arch(props.gcnArchName);
      seen += msg(seen.empty() ? "" : ", ", arch);
      if (!built_for(arch)) continue;
      if (usable++ == 0) first = msg(props.name, " (", arch, ", wave ", props.warpSize, ", HIP ", HIP_VERSION_MAJOR,
                                     ".", HIP_VERSION_MINOR, ")");
    }
    if (usable == 0) {
      out->reason = PARITY_UNAVAILABLE_DEVICE_TOO_OLD;
      copy_message(out->detail, sizeof out->detail,
                   msg("HIP devices are ", seen, "; this plugin was built for ", PARITY_HIP_ARCHS_STRING,
                       " (rebuild with -DPARITY_HIP_ARCHS)"));
      return;
    }
    out->device_count = usable;
    out->reason = PARITY_AVAILABLE;
    copy_message(out->detail, sizeof out->detail, first);
  });
}

parity_status create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  if (!out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "hip: create: out is NULL");
  *out = nullptr;
  return guarded(err, [&] {
    parity_backend_config c{};
    c.struct_size = sizeof c;
    if (config) std::memcpy(&c, config, std::min<size_t>(config->struct_size, sizeof c));
    int count = 0;
    HIP_CHECK(hipGetDeviceCount(&count));
    if (c.device < 0 || c.device >= count)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg("hip: device ", c.device, " does not exist: there are ", count));
    auto instance = std::make_unique<parity_backend_instance>();
    instance->device = c.device;
    instance->make_current();
    hipDeviceProp_t props{};
    HIP_CHECK(hipGetDeviceProperties(&props, c.device));
    const std::string arch = base_arch(props.gcnArchName);
    if (!built_for(arch))
      fail(PARITY_STATUS_UNSUPPORTED, msg("hip: device ", c.device, " is ", arch, "; this plugin was built for ",
                                          PARITY_HIP_ARCHS_STRING));
    instance->device_name = msg(props.name, " (", arch, ")");
    instance->device_memory = static_cast<int64_t>(props.totalGlobalMem);
    if (c.stream) {
      instance->stream = static_cast<hipStream_t>(c.stream);
    } else {
      HIP_CHECK(hipStreamCreateWithFlags(&instance->stream, hipStreamNonBlocking));
      instance->owns_stream = true;
    }
    *out = instance.release();
  });
}

void destroy(parity_backend_t backend) {
  if (!backend) return;
  (void)hipSetDevice(backend->device);
  (void)hipStreamSynchronize(backend->stream);
  delete backend;
}

parity_status get_capabilities(parity_backend_t b, parity_capabilities* out, parity_error* err) {
  if (!b || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "hip: get_capabilities: NULL argument");
  *out = parity_capabilities{};
  out->dtypes = PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32);
  out->features = PARITY_FEATURE_ASYNC_EXECUTE | PARITY_FEATURE_DETERMINISTIC | PARITY_FEATURE_EXTERNAL_STREAM;
  out->threads = 1;
  out->device = b->device;
  out->device_memory_bytes = b->device_memory;
  copy_message(out->device_name, sizeof out->device_name, b->device_name);
  return PARITY_OK;
}

int32_t supports(parity_backend_t, const parity_node_desc* node, char* reason, size_t reason_len) {
  return native::supports_known_op("hip", node, reason, reason_len);
}

parity_status buffer_alloc(parity_backend_t b, int64_t bytes, parity_buffer_t* out, parity_error* err) {
  if (!b || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "hip: buffer_alloc: NULL argument");
  *out = nullptr;
  return guarded(err, [&] {
    if (bytes < 0) fail(PARITY_STATUS_INVALID_ARGUMENT, msg("hip: buffer_alloc: bytes must be >= 0, got ", bytes));
    b->make_current();
    *out = new parity_buffer_object(bytes);
  });
}

void buffer_free(parity_backend_t b, parity_buffer_t buffer) {
  if (!buffer) return;
  if (b) {  // a buffer may still be in use by queued copies
    (void)hipSetDevice(b->device);
    (void)hipStreamSynchronize(b->stream);
  }
  delete buffer;
}

void check_range(parity_buffer_t buffer, int64_t offset, int64_t bytes, const char* function) {
  native::check_buffer_range("hip", !buffer, buffer ? buffer->memory.bytes : 0, offset, bytes, function);
}

char* at(parity_buffer_t buffer, int64_t offset) { return static_cast<char*>(buffer->memory.ptr) + offset; }

// Host to device: returns once the host bytes have been read (the ABI lets the caller reuse them).
parity_status copy_host_to_device(parity_backend_t b, parity_buffer_t dst, int64_t dst_offset, const void* src,
                                  int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: copy_host_to_device: backend is NULL");
    check_range(dst, dst_offset, bytes, "copy_host_to_device");
    if (bytes == 0) return;
    b->make_current();
    HIP_CHECK(hipMemcpyAsync(at(dst, dst_offset), src, static_cast<size_t>(bytes), hipMemcpyHostToDevice, b->stream));
    HIP_CHECK(hipStreamSynchronize(b->stream));
  });
}

parity_status copy_device_to_host(parity_backend_t b, void* dst, parity_buffer_t src, int64_t src_offset,
                                  int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: copy_device_to_host: backend is NULL");
    check_range(src, src_offset, bytes, "copy_device_to_host");
    if (bytes == 0) return;
    b->make_current();
    HIP_CHECK(hipMemcpyAsync(dst, at(src, src_offset), static_cast<size_t>(bytes), hipMemcpyDeviceToHost, b->stream));
    HIP_CHECK(hipStreamSynchronize(b->stream));
  });
}

// Device to device: queued on the instance's stream, ordered with its other work.
parity_status copy_device_to_device(parity_backend_t b, parity_buffer_t dst, int64_t dst_offset, parity_buffer_t src,
                                    int64_t src_offset, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: copy_device_to_device: backend is NULL");
    check_range(dst, dst_offset, bytes, "copy_device_to_device");
    check_range(src, src_offset, bytes, "copy_device_to_device");
    if (bytes == 0) return;
    b->make_current();
    HIP_CHECK(hipMemcpyAsync(at(dst, dst_offset), at(src, src_offset), static_cast<size_t>(bytes),
                             hipMemcpyDeviceToDevice, b->stream));
  });
}

parity_status compile(parity_backend_t b, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err) {
  if (!b || !plan || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "hip: compile: NULL argument");
  *out = nullptr;
  return guarded(err, [&] {
    native::check_compile("hip", plan, /*inputs_in_arena=*/true, share_with != nullptr,
                          share_with && share_with->instance == b);
    b->make_current();
    auto exe = std::make_unique<parity_executable_object>();
    native::start_executable(*exe, b, plan, share_with, flags);
    exe->arena.allocate(plan->arena_bytes);
    exe->workspace.allocate(exe->dispatcher.workspace_floats(exe->nodes) * 4);
    exe->pointers.resize(exe->values.size());
    exe->host_inputs.resize(exe->values.size());
    for (size_t i = 0; i < exe->values.size(); ++i) {
      const parity_value_desc& v = exe->values[i];
      if (is_persistent(v)) {
        exe->held.push_back(native::shared_persistent("hip", *exe->persistent, v));
        exe->pointers[i] = exe->held.back()->memory.ptr;
      } else {
        exe->pointers[i] = static_cast<char*>(exe->arena.ptr) + v.offset;
      }
    }
    *out = exe.release();
  });
}

void executable_destroy(parity_executable_t exe) {
  if (!exe) return;
  (void)hipSetDevice(exe->instance->device);
  (void)hipStreamSynchronize(exe->instance->stream);  // queued kernels may still use its memory
  delete exe;
}

parity_status write_value(parity_executable_t exe, int32_t value, const void* host, int64_t bytes,
                          parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !host) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: write_value: NULL argument");
    const parity_value_desc& v = native::value_to_write("hip", exe->values, value, bytes);
    exe->instance->make_current();
    HIP_CHECK(hipMemcpyAsync(exe->pointers[static_cast<size_t>(value)], host, static_cast<size_t>(bytes),
                             hipMemcpyHostToDevice, exe->instance->stream));
    HIP_CHECK(hipStreamSynchronize(exe->instance->stream));
    if (v.kind == PARITY_VALUE_INPUT && v.dtype == PARITY_I32) {
      const auto* p = static_cast<const int32_t*>(host);
      exe->host_inputs[static_cast<size_t>(value)].assign(p, p + numel_of(v));
    }
  });
}

parity_status read_value(parity_executable_t exe, int32_t value, void* host, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !host) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: read_value: NULL argument");
    native::value_to_read("hip", exe->values, value, bytes);
    exe->instance->make_current();
    HIP_CHECK(hipMemcpyAsync(host, exe->pointers[static_cast<size_t>(value)], static_cast<size_t>(bytes),
                             hipMemcpyDeviceToHost, exe->instance->stream));
    HIP_CHECK(hipStreamSynchronize(exe->instance->stream));
  });
}

// Queues the whole step on the instance's stream and returns (PARITY_FEATURE_ASYNC_EXECUTE).
parity_status execute(parity_executable_t exe, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: execute: executable is NULL");
    exe->instance->make_current();
    struct StreamScope {  // pk.h's launches go to pk::stream() (per thread)
      hipStream_t saved = ::pk::stream();
      explicit StreamScope(hipStream_t s) { ::pk::stream() = s; }
      ~StreamScope() { ::pk::stream() = saved; }
    } scope(exe->instance->stream);
    if (exe->poison)
      parity::kit::poison_temps(exe->values, [&](size_t i, int64_t count, uint32_t bits) {
        HIP_CHECK(hipMemsetD32Async(exe->pointers[i], static_cast<int>(bits), static_cast<size_t>(count),
                                    exe->instance->stream));
      });
    for (const parity_node_desc& node : exe->nodes) exe->dispatcher.run(node);
  });
}

parity_status synchronize(parity_executable_t exe, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, "hip: synchronize: executable is NULL");
    exe->instance->make_current();
    HIP_CHECK(hipStreamSynchronize(exe->instance->stream));
  });
}

parity_status memory_bytes(parity_executable_t exe, int64_t* out, parity_error* err) {
  if (!exe || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "hip: memory_bytes: NULL argument");
  int64_t total = exe->arena.bytes + exe->workspace.bytes;
  for (const auto& p : exe->held) total += p->memory.bytes;
  *out = total;
  return PARITY_OK;
}

const parity_backend_table kTable = {
    PARITY_ABI_VERSION,
    sizeof(parity_backend_table),
    "hip",
    "the native kernels compiled by hipcc for AMD GPUs (" PARITY_HIP_ARCHS_STRING ")",
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
};

}  // namespace
}  // namespace hip_plugin
}  // namespace parity

extern "C" PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry(void) {
  return &parity::hip_plugin::kTable;
}
