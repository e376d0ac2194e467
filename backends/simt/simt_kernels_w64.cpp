// backends/simt/simt_kernels_w64.cpp — the native kernels compiled for the host at warp size 64.
#define PARITY_SIMT_WARP 64
#define PARITY_NATIVE_NS simt_w64
#include "backends/native/native_ops_impl.h"
