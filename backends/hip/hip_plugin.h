/* backends/hip/hip_plugin.h — the C entry points libparity-backend-hip.so exports until the
 * versioned plugin ABI (api/include/parity/plugin.h's function table) lands; the loader will then
 * call the ABI's single entry point instead. No exception crosses these functions.
 *
 *   int parity_backend_hip_abi_version(void);
 *       PARITY_ABI_VERSION the plugin was built against.
 *   int parity_backend_hip_probe(char* message, size_t capacity);
 *       1 when a HIP device is usable (message: its name and gfx target), 0 when not (message: the
 *       reason, e.g. "no HIP device (hipErrorNoDevice)"). message is always NUL-terminated.
 *   const void* parity_backend_hip_native_ops(void);
 *       the parity::native::NativeOps table (backends/native/native_ops.h) of the kernels, which
 *       take device pointers; for C++ callers built with the same headers. */
#ifndef PARITY_BACKEND_HIP_PLUGIN_H
#define PARITY_BACKEND_HIP_PLUGIN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

int parity_backend_hip_abi_version(void);
int parity_backend_hip_probe(char* message, size_t capacity);
const void* parity_backend_hip_native_ops(void);

#ifdef __cplusplus
}
#endif

#endif
