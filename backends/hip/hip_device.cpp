// backends/hip/hip_device.cpp — the HIP target's side of the plugin table: its description, the
// probe that says why HIP is unavailable (no device, the driver, or no device of a target this
// plugin was built for), and an instance on one device (its properties, the compute stream, its
// own or the caller's, and the copy stream; the planning options of the CUDA plugin, read from
// the same PARITY_CUDA_* variables, since this target runs the same executor and planning).
//
// Compiled by hipcc, linked and loaded in CI; never executed on a GPU here (no AMD GPU): only the
// probe's "no device" path runs.
#include <hip/hip_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backends/gpu/gpu_backend.h"
#include "backends/hip/hip_check.h"

#ifndef PARITY_HIP_ARCHS_STRING
#error "build with -DPARITY_HIP_ARCHS_STRING=\"gfx90a,gfx1030\" (the --offload-arch targets)"
#endif

namespace parity {
namespace gpu {

const char* description() {
  return "the native kernels compiled by hipcc for AMD GPUs, inputs double-buffered from pinned memory on a copy "
         "stream, one HIP graph per step (" PARITY_HIP_ARCHS_STRING ")";
}

// A hipStream_t. ROCm 5.2 has no hipStreamLegacy, so no caller's stream is the uncapturable
// legacy one: instances never set external_legacy_stream.
extern const bool kAcceptsExternalStream = true;

namespace {

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

}  // namespace

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
              ? msg("the AMD GPU driver is older than this HIP runtime (", HIP_VERSION_MAJOR, ".", HIP_VERSION_MINOR,
                    ")")
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
    instance->options = cuda_decisions::options_from_env([](const char* name) { return std::getenv(name); });
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
      instance->stream = static_cast<Stream>(c.stream);
    } else {
      instance->stream = rt::stream_create();
      instance->owns_stream = true;
    }
    instance->copy_stream = rt::stream_create();
    *out = instance.release();
  });
}

}  // namespace gpu
}  // namespace parity
