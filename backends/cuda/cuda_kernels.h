// backends/cuda/cuda_kernels.h — the host-side face of the kernels nvcc compiles for the CUDA
// plugin (cuda_kernels.cu): the native kernel table (backends/native, the same sources simt runs
// on the host and HIP on AMD GPUs) and the CUDA-only launches: the optimizer steps that read
// their hyperparameters from device memory, and the poison fill. Plain C++ plus the CUDA
// runtime types.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "backends/native/native_ops.h"
#include "parity/plugin.h"

namespace parity {
namespace native {
namespace cuda {

const NativeOps& native_ops();
// The stream the native launches of this thread go to (pk.h's pk::stream()).
void set_launch_stream(cudaStream_t stream);
cudaStream_t launch_stream();

// Adam / SGD with the step count and the hyperparameters read on the device, so a captured
// graph replays with whatever those hold at launch time.
void adam_step_device(float* param, const float* grad, float* m, float* v, const int32_t* step, int64_t count,
                      const parity_adam_params* hyperparameters);
void sgd_step_device(float* param, const float* grad, float* velocity, const int32_t* step, int64_t count,
                     const parity_sgd_params* hyperparameters);
// Writes `bits` into each of `count` 32-bit words (NaN poison for f32, INT32_MAX for i32).
void fill_words(void* y, int64_t count, uint32_t bits);

}  // namespace cuda
}  // namespace native
}  // namespace parity
