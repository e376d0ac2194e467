// backends/cuda/cuda_kernels.cu — the kernels nvcc compiles for the CUDA plugin: the native
// kernels of backends/native (through pk.h's CUDA branch) and the CUDA-only launches of
// cuda_kernels.h, which reuse the same element bodies.
#define PARITY_NATIVE_NS cuda
#include "backends/native/native_ops_impl.h"

#include "backends/cuda/cuda_kernels.h"

namespace parity {
namespace native {
namespace cuda {

void set_launch_stream(cudaStream_t stream) { pk::stream() = stream; }
cudaStream_t launch_stream() { return pk::stream(); }

namespace {

__global__ void adam_step_device_f32(float* param, const float* grad, float* m, float* v, const int32_t* step,
                                     int64_t count, const parity_adam_params* hyperparameters) {
  const parity_adam_params hp = *hyperparameters;
  adam_step_elements(param, grad, m, v, step, count, hp);
}

__global__ void sgd_step_device_f32(float* param, const float* grad, float* velocity, const int32_t* step,
                                    int64_t count, const parity_sgd_params* hyperparameters) {
  const parity_sgd_params hp = *hyperparameters;
  sgd_step_elements(param, grad, velocity, step, count, hp);
}

__global__ void fill_words_u32(uint32_t* y, int64_t count, uint32_t bits) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) y[i] = bits;
}

}  // namespace

void adam_step_device(float* param, const float* grad, float* m, float* v, const int32_t* step, int64_t count,
                      const parity_adam_params* hyperparameters) {
  PK_LAUNCH(adam_step_device_f32, element_grid(count), pk::dim3(kElementBlock), param, grad, m, v, step, count,
            hyperparameters);
}

void sgd_step_device(float* param, const float* grad, float* velocity, const int32_t* step, int64_t count,
                     const parity_sgd_params* hyperparameters) {
  PK_LAUNCH(sgd_step_device_f32, element_grid(count), pk::dim3(kElementBlock), param, grad, velocity, step, count,
            hyperparameters);
}

void fill_words(void* y, int64_t count, uint32_t bits) {
  PK_LAUNCH(fill_words_u32, element_grid(count), pk::dim3(kElementBlock), static_cast<uint32_t*>(y), count, bits);
}

}  // namespace cuda
}  // namespace native
}  // namespace parity
