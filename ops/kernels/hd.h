// ops/kernels/hd.h — PARITY_HD: marks element-level math that host and device code share.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PARITY_HD __host__ __device__
#else
#define PARITY_HD
#endif
