// backends/gpu_emu/emu_device.cpp — the emulated target's side of the plugin table: its
// description, a probe that always finds its one device, and an instance on it (the compute and
// copy streams of the emulated runtime; the planning options of the CUDA plugin, read from the
// same PARITY_CUDA_* variables, since this target runs the CUDA executor's planning).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backends/gpu/gpu_backend.h"

namespace parity {
namespace gpu {

const char* description() {
  return "the GPU executor (CUDA's planning, streams, events, graphs) on an emulated device with ordering checks, "
         "native kernels on the host (simt); a test backend, slow";
}

extern const bool kAcceptsExternalStream = false;  // the emulated device has no vendor streams

parity_status probe(parity_probe_result* out, parity_error* err) {
  if (!out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": probe: out is NULL"));
  *out = parity_probe_result{};
  out->reason = PARITY_AVAILABLE;
  out->device_count = 1;
  copy_message(out->detail, sizeof out->detail, "an emulated device in host memory (backends/gpu_emu)");
  return PARITY_OK;
}

parity_status create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  if (!out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": create: out is NULL"));
  *out = nullptr;
  return guarded(err, [&] {
    parity_backend_config c{};
    c.struct_size = sizeof c;
    if (config) std::memcpy(&c, config, std::min<size_t>(config->struct_size, sizeof c));
    if (c.device != 0) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": device ", c.device, " does not exist: there is 1"));
    if (c.stream)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": an external stream is a vendor stream; the emulated device has none"));
    auto instance = std::make_unique<parity_backend_instance>();
    instance->options = cuda_decisions::options_from_env([](const char* name) { return std::getenv(name); });
    instance->device = 0;
    instance->device_name = "emulated device (host memory, simt kernels at warp 32)";
    instance->stream = rt::stream_create();
    instance->owns_stream = true;
    instance->copy_stream = rt::stream_create();
    *out = instance.release();
  });
}

}  // namespace gpu
}  // namespace parity
