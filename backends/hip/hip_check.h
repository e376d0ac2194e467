// backends/hip/hip_check.h — the one status check of the HIP plugin: HIP_CHECK(call) runs a HIP
// runtime call and, unless it succeeded, throws a PluginError that names the call, the file and
// the line, and carries HIP's own error name and text ("hip: <call> failed at <file>:<line>:
// <name> (<text>)"). Out of memory keeps PARITY_STATUS_OUT_OF_MEMORY; the rest is a device
// error. Every entry point of the plugin catches it and returns status + message.
#pragma once

#include <hip/hip_runtime.h>

#include "backends/native/dispatch.h"  // msg
#include "backends/native/plugin_support.h"

namespace parity {
namespace hip_check {

inline void check(hipError_t status, const char* call, const char* file, int line) {
  if (status == hipSuccess) return;
  native::plugin_fail(status == hipErrorOutOfMemory ? PARITY_STATUS_OUT_OF_MEMORY : PARITY_STATUS_DEVICE,
                      native::msg("hip: ", call, " failed at ", file, ":", line, ": ", hipGetErrorName(status), " (",
                                  hipGetErrorString(status), ")"));
}

}  // namespace hip_check
}  // namespace parity

#define HIP_CHECK(call) ::parity::hip_check::check((call), #call, __FILE__, __LINE__)
