// backends/cuda/cuda_check.h — the one status check of the CUDA plugin: CUDA_CHECK(call) runs a
// CUDA runtime, cuDNN or cuBLAS call and, unless it succeeded, throws a CudaError that names
// the call, the file and the line, and carries the library's own error name and text, mapped to
// parity's status (out of memory keeps its own status; the rest is a device error). Every entry
// point of the plugin catches it and returns status + message (no exception crosses the ABI).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "backends/cuda/cuda_decisions.h"
#include "backends/native/dispatch.h"  // msg

namespace parity {
namespace cuda_check {

[[noreturn]] inline void raise(parity_status status, const char* library, const char* call, const char* file, int line,
                               const std::string& what) {
  throw cuda_decisions::CudaError(status, native::msg("cuda: ", call, " failed at ", file, ":", line, ": ", library, " ", what));
}

inline void check(cudaError_t s, const char* call, const char* file, int line) {
  if (s == cudaSuccess) return;
  raise(s == cudaErrorMemoryAllocation ? PARITY_STATUS_OUT_OF_MEMORY : PARITY_STATUS_DEVICE, "CUDA", call, file, line,
        native::msg(cudaGetErrorName(s), " (", cudaGetErrorString(s), ")"));
}
inline void check(cudnnStatus_t s, const char* call, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  char last[512] = {};
  cudnnGetLastErrorString(last, sizeof last);  // cuDNN 9: the detail of the latest failure on this thread
  raise(s == CUDNN_STATUS_ALLOC_FAILED ? PARITY_STATUS_OUT_OF_MEMORY : PARITY_STATUS_DEVICE, "cuDNN", call, file, line,
        native::msg(cudnnGetErrorString(s), last[0] ? native::msg(": ", last) : std::string()));
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  raise(s == CUBLAS_STATUS_ALLOC_FAILED ? PARITY_STATUS_OUT_OF_MEMORY : PARITY_STATUS_DEVICE, "cuBLAS", call, file,
        line, native::msg(cublasGetStatusName(s), " (", cublasGetStatusString(s), ")"));
}

}  // namespace cuda_check
}  // namespace parity

#define CUDA_CHECK(call) ::parity::cuda_check::check((call), #call, __FILE__, __LINE__)
