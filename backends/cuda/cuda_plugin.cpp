// backends/cuda/cuda_plugin.cpp — libparity-backend-cuda.so's function table
// (api/include/parity/plugin.h): the probe that says why CUDA is unavailable, instances (device,
// streams, cuDNN and cuBLAS handles, options), raw buffers and copies. The executables are in
// cuda_executable.cpp.
//
// Compiled, linked and loaded in CI; never executed on a GPU in this project (no NVIDIA GPU):
// only the probe's "unavailable" path runs here.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_backend.h"

#ifndef PARITY_CUDA_ARCHS_STRING
#error "build with -DPARITY_CUDA_ARCHS_STRING=\"80,90\" (CMAKE_CUDA_ARCHITECTURES)"
#endif

using parity::cuda_backend::fail;
using parity::cuda_backend::guarded;
using parity::cuda_backend::report;
using parity::native::msg;

parity_backend_instance::~parity_backend_instance() {
  // Destruction cannot report; what fails here has no caller.
  try {
    parity::gpu::rt::set_device(device);
    if (stream) parity::gpu::rt::stream_sync(stream);
    if (copy_stream) parity::gpu::rt::stream_sync(copy_stream);
  } catch (const std::exception&) {
  }
  if (cublas) (void)cublasDestroy(cublas);
  if (cudnn) (void)cudnnDestroy(cudnn);
  parity::gpu::rt::stream_destroy(copy_stream);
  if (owns_stream) parity::gpu::rt::stream_destroy(stream);
}

namespace parity {
namespace cuda_backend {

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

std::vector<cuda_decisions::ProbeFacts::Architecture> built_architectures() {
  return cuda_decisions::parse_architectures(PARITY_CUDA_ARCHS_STRING);
}

std::string cudnn_version_string() {
  const size_t v = cudnnGetVersion();  // cuDNN 9: major * 10000 + minor * 100 + patch
  return msg(v / 10000, ".", v % 10000 / 100, ".", v % 100);
}

// Gathers what the probe decides from (cuda_decisions::classify_probe decides).
cuda_decisions::ProbeFacts probe_facts() {
  cuda_decisions::ProbeFacts f;
  f.runtime_version = CUDART_VERSION;
  f.built_architectures = built_architectures();
  f.cudnn_version = cudnn_version_string();
  if (void* libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    f.libcuda_loadable = true;
    dlclose(libcuda);
  } else {
    const char* why = dlerror();
    f.libcuda_error = why ? why : "dlopen failed";
  }
  const cudaError_t status = cudaGetDeviceCount(&f.device_count);
  f.count_error_name = cudaGetErrorName(status);
  switch (status) {
    case cudaSuccess: f.count_status = cuda_decisions::DeviceCountStatus::ok; break;
    case cudaErrorNoDevice: f.count_status = cuda_decisions::DeviceCountStatus::no_device; break;
    case cudaErrorInsufficientDriver: f.count_status = cuda_decisions::DeviceCountStatus::insufficient_driver; break;
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorSystemNotReady: f.count_status = cuda_decisions::DeviceCountStatus::no_driver; break;
    default: f.count_status = cuda_decisions::DeviceCountStatus::other; break;
  }
  if (status != cudaSuccess) (void)cudaGetLastError();  // clear the runtime's last error
  (void)cudaDriverGetVersion(&f.driver_version);
  if (f.count_status == cuda_decisions::DeviceCountStatus::ok) {
    for (int d = 0; d < f.device_count; ++d) {
      cudaDeviceProp props{};
      CUDA_CHECK(cudaGetDeviceProperties(&props, d));
      f.devices.push_back({props.name, props.major, props.minor});
    }
  }
  return f;
}

parity_status probe(parity_probe_result* out, parity_error* err) {
  if (!out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "cuda: probe: out is NULL");
  *out = parity_probe_result{};
  return guarded(err, [&] {
    const cuda_decisions::ProbeOutcome outcome = cuda_decisions::classify_probe(probe_facts());
    out->reason = outcome.reason;
    out->device_count = outcome.usable_devices;
    copy_message(out->detail, sizeof out->detail, outcome.detail);
  });
}

parity_status create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  if (!out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "cuda: create: out is NULL");
  *out = nullptr;
  return guarded(err, [&] {
    parity_backend_config c{};
    c.struct_size = sizeof c;
    if (config) std::memcpy(&c, config, std::min<size_t>(config->struct_size, sizeof c));
    auto instance = std::make_unique<parity_backend_instance>();
    instance->options = cuda_decisions::options_from_env([](const char* name) { return std::getenv(name); });
    const cuda_decisions::ProbeOutcome available = cuda_decisions::classify_probe(probe_facts());
    if (available.reason != PARITY_AVAILABLE) fail(PARITY_STATUS_DEVICE, msg("cuda: unavailable: ", available.detail));
    int count = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    if (c.device < 0 || c.device >= count)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: device ", c.device, " does not exist: there are ", count));
    cudaDeviceProp props{};
    CUDA_CHECK(cudaGetDeviceProperties(&props, c.device));
    if (!cuda_decisions::device_can_run(props.major, props.minor, built_architectures()))
      fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: device ", c.device, " is ", props.name, " (sm_", props.major,
                                          props.minor, "); this plugin was built for ", PARITY_CUDA_ARCHS_STRING));
    instance->device = c.device;
    instance->make_current();
    instance->device_name = msg(props.name, " (sm_", props.major, props.minor, ")");
    instance->device_memory = static_cast<int64_t>(props.totalGlobalMem);
    if (c.stream) {
      instance->stream = static_cast<cudaStream_t>(c.stream);
      instance->external_legacy_stream = instance->stream == cudaStreamLegacy;
    } else {
      instance->stream = gpu::rt::stream_create();
      instance->owns_stream = true;
    }
    instance->copy_stream = gpu::rt::stream_create();
    // cuDNN 9 loads its sub-libraries on first use: a missing libcudnn_ops or libcudnn_cnn is
    // reported here, not in the middle of a compile or a graph capture.
    CUDA_CHECK(cudnnOpsVersionCheck());
    CUDA_CHECK(cudnnCnnVersionCheck());
    CUDA_CHECK(cudnnCreate(&instance->cudnn));
    CUDA_CHECK(cudnnSetStream(instance->cudnn, instance->stream));
    CUDA_CHECK(cublasCreate(&instance->cublas));
    CUDA_CHECK(cublasSetStream(instance->cublas, instance->stream));
    CUDA_CHECK(cublasSetPointerMode(instance->cublas, CUBLAS_POINTER_MODE_HOST));
    // Full float32 unless TF32 is allowed (the tolerance table assumes float32 products).
    CUDA_CHECK(cublasSetMathMode(instance->cublas,
                                 instance->options.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    // cuBLAS's default (non-atomic) reductions are bitwise repeatable on one device; say so explicitly.
    CUDA_CHECK(cublasSetAtomicsMode(instance->cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
    *out = instance.release();
  });
}

void destroy(parity_backend_t backend) { delete backend; }

parity_status get_capabilities(parity_backend_t b, parity_capabilities* out, parity_error* err) {
  if (!b || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "cuda: get_capabilities: NULL argument");
  *out = parity_capabilities{};
  out->dtypes = PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32);
  out->features = PARITY_FEATURE_ASYNC_EXECUTE | PARITY_FEATURE_EXTERNAL_STREAM;
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
  return native::supports_known_op("cuda", node, reason, reason_len);
}

parity_status buffer_alloc(parity_backend_t b, int64_t bytes, parity_buffer_t* out, parity_error* err) {
  if (!b || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, "cuda: buffer_alloc: NULL argument");
  *out = nullptr;
  return guarded(err, [&] {
    if (bytes < 0) fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: buffer_alloc: bytes must be >= 0, got ", bytes));
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
  native::check_buffer_range("cuda", !buffer, buffer ? buffer->memory.bytes : 0, offset, bytes, function);
}

char* at(parity_buffer_t buffer, int64_t offset) { return static_cast<char*>(buffer->memory.ptr) + offset; }

// Host to device: returns once the host bytes have been read (the ABI lets the caller reuse them).
parity_status copy_host_to_device(parity_backend_t b, parity_buffer_t dst, int64_t dst_offset, const void* src,
                                  int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!b || (!src && bytes)) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: copy_host_to_device: NULL argument");
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
    if (!b || (!dst && bytes)) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: copy_device_to_host: NULL argument");
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
    if (!b) fail(PARITY_STATUS_INVALID_ARGUMENT, "cuda: copy_device_to_device: backend is NULL");
    check_range(dst, dst_offset, bytes, "copy_device_to_device");
    check_range(src, src_offset, bytes, "copy_device_to_device");
    if (bytes == 0) return;
    b->make_current();
    gpu::rt::copy_async(at(dst, dst_offset), at(src, src_offset), bytes, gpu::Copy::device_to_device, b->stream,
                        "copy_device_to_device");
  });
}

const parity_backend_table kTable = {
    PARITY_ABI_VERSION,
    sizeof(parity_backend_table),
    "cuda",
    "cuDNN 9 + cuBLAS on NVIDIA GPUs, native kernels for the rest, one CUDA graph per step (sm " PARITY_CUDA_ARCHS_STRING
    ")",
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
};

}  // namespace
}  // namespace cuda_backend
}  // namespace parity

extern "C" PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry(void) {
  return &parity::cuda_backend::kTable;
}
