// backends/cuda/cuda_device.cpp — the CUDA target's side of the plugin table: the probe that says
// why CUDA is unavailable (cuda_decisions::classify_probe decides from the facts gathered here),
// and an instance on one device (its properties, the compute and copy streams, the cuDNN and
// cuBLAS handles and their settings).
//
// Compiled, linked and loaded in CI; never executed on a GPU in this project (no NVIDIA GPU):
// only the probe's "unavailable" path runs here.
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_library.h"
#include "backends/gpu/gpu_backend.h"

#ifndef PARITY_CUDA_ARCHS_STRING
#error "build with -DPARITY_CUDA_ARCHS_STRING=\"80,90\" (CMAKE_CUDA_ARCHITECTURES)"
#endif

namespace parity {
namespace gpu {

const char* description() {
  return "cuDNN 9 + cuBLAS on NVIDIA GPUs, native kernels for the rest, one CUDA graph per step (sm "
         PARITY_CUDA_ARCHS_STRING ")";
}

extern const bool kAcceptsExternalStream = true;  // a cudaStream_t, the legacy default one included

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

}  // namespace

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
      instance->stream = static_cast<Stream>(c.stream);
      instance->external_legacy_stream = instance->stream == cudaStreamLegacy;
    } else {
      instance->stream = rt::stream_create();
      instance->owns_stream = true;
    }
    instance->copy_stream = rt::stream_create();
    // cuDNN 9 loads its sub-libraries on first use: a missing libcudnn_ops or libcudnn_cnn is
    // reported here, not in the middle of a compile or a graph capture.
    CUDA_CHECK(cudnnOpsVersionCheck());
    CUDA_CHECK(cudnnCnnVersionCheck());
    instance->library = new LibraryHandles;
    LibraryHandles& library = *instance->library;
    CUDA_CHECK(cudnnCreate(&library.cudnn));
    CUDA_CHECK(cudnnSetStream(library.cudnn, instance->stream));
    CUDA_CHECK(cublasCreate(&library.cublas));
    CUDA_CHECK(cublasSetStream(library.cublas, instance->stream));
    CUDA_CHECK(cublasSetPointerMode(library.cublas, CUBLAS_POINTER_MODE_HOST));
    // Full float32 unless TF32 is allowed (the tolerance table assumes float32 products), and
    // reductions in f32 even where a GEMM writes a half C (cuda_decisions::cublas_math_mode).
    CUDA_CHECK(cublasSetMathMode(library.cublas,
                                 static_cast<cublasMath_t>(cuda_decisions::cublas_math_mode(instance->options))));
    // cuBLAS's default (non-atomic) reductions are bitwise repeatable on one device; say so explicitly.
    CUDA_CHECK(cublasSetAtomicsMode(library.cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
    *out = instance.release();
  });
}

}  // namespace gpu
}  // namespace parity
