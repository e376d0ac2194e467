// backends/hip/hip_plugin.cpp — the exported C entry points of libparity-backend-hip.so (see
// hip_plugin.h): ABI version, the device probe that says why HIP is unavailable, and the table
// of native kernels. Every HIP call's status is checked and named.
#include "backends/hip/hip_plugin.h"

#include <hip/hip_runtime.h>

#include <cstdio>

#include "backends/native/native_ops.h"
#include "parity/plugin.h"

namespace parity {
namespace native {
namespace hip {
const NativeOps& native_ops();
}
}  // namespace native
}  // namespace parity

extern "C" {

__attribute__((visibility("default"))) int parity_backend_hip_abi_version(void) { return PARITY_ABI_VERSION; }

__attribute__((visibility("default"))) int parity_backend_hip_probe(char* message, size_t capacity) {
  if (!message || capacity == 0) return 0;
  int count = 0;
  const hipError_t status = hipGetDeviceCount(&count);
  if (status != hipSuccess || count == 0) {
    const hipError_t shown = status != hipSuccess ? status : hipErrorNoDevice;
    std::snprintf(message, capacity, "no HIP device (%s)", hipGetErrorName(shown));
    return 0;
  }
  hipDeviceProp_t props;
  const hipError_t prop_status = hipGetDeviceProperties(&props, 0);
  if (prop_status != hipSuccess) {
    std::snprintf(message, capacity, "hipGetDeviceProperties failed (%s)", hipGetErrorName(prop_status));
    return 0;
  }
  std::snprintf(message, capacity, "%s (%s, wave %d), %d device(s)", props.name, props.gcnArchName, props.warpSize,
                count);
  return 1;
}

__attribute__((visibility("default"))) const void* parity_backend_hip_native_ops(void) {
  return &parity::native::hip::native_ops();
}

}  // extern "C"
