// backends/simt/simt_kernels_w32.cpp — the native kernels compiled for the host at warp size 32.
#define PARITY_SIMT_WARP 32
#define PARITY_NATIVE_NS simt_w32
#include "backends/native/native_ops_impl.h"
