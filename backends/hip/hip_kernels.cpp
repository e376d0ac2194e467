// backends/hip/hip_kernels.cpp — the native kernels (backends/native) compiled by hipcc for the
// AMD targets (gfx90a: wave 64, gfx1030: wave 32); the same sources simt runs on the host.
#define PARITY_NATIVE_NS hip
#include "backends/native/native_ops_impl.h"
