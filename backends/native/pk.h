// backends/native/pk.h — the one portability header the native GPU kernels are written
// against: kernel and device-function qualifiers, thread and block indices, shared memory,
// barriers, warp shuffles, votes and reductions, atomics, and the launch. It maps to
//   CUDA   (nvcc: __CUDACC__),
//   HIP    (hipcc: __HIPCC__; the wave size is per target: 64 on gfx90a, 32 on gfx1030),
//   simt   (g++ for the host, PARITY_SIMT_WARP = 32 or 64: backends/simt/simt_runtime.h),
// so kernel sources contain no #ifdef per platform. The warp size is a compile-time constant
// per target, pk::kWarpSize; kernels must work for 32 and 64 (simt builds both).
//
// Names: PK_GLOBAL (a kernel), PK_DEVICE (a device function), PK_SHARED(T, name, count),
// PK_SYNC(), PK_LAUNCH(kernel, grid, block, args...), and in namespace pk: thread_x/y/z(),
// block_x/y/z(), block_dim_x/y/z(), grid_dim_x/y/z(), lane(), shfl / shfl_xor / shfl_down /
// shfl_up (float, int), ballot / any / all, atomic_add (int: order cannot change the result).
#pragma once

#include <stdint.h>

#include "ops/kernels/hd.h"

#if defined(PARITY_SIMT_WARP)  // ---------------------------------------------------------------

#include <cstring>

#include "backends/simt/simt_runtime.h"

#define PK_GLOBAL static
#define PK_DEVICE static inline
#define PK_SHARED(T, name, count) \
  T* const name = static_cast<T*>(::parity::simt::shared_alloc(sizeof(T) * (count), alignof(T), #name))
#define PK_SYNC() ::parity::simt::sync_block(__LINE__)
#define PK_LAUNCH(kernel, grid, block, ...) \
  ::parity::simt::launch(#kernel, PARITY_SIMT_WARP, grid, block, [&] { kernel(__VA_ARGS__); })
#define PK_WARP_OP(op, value, arg) \
  ::pk::detail::warp_op(::parity::simt::WarpOp::op, value, arg, __LINE__)

namespace pk {
constexpr int kWarpSize = PARITY_SIMT_WARP;
using Dim3 = ::parity::simt::Dim3;
inline Dim3 dim3(unsigned x, unsigned y = 1, unsigned z = 1) { return Dim3{x, y, z}; }
inline int thread_x() { return static_cast<int>(::parity::simt::current().thread.x); }
inline int thread_y() { return static_cast<int>(::parity::simt::current().thread.y); }
inline int thread_z() { return static_cast<int>(::parity::simt::current().thread.z); }
inline int block_x() { return static_cast<int>(::parity::simt::current().block.x); }
inline int block_y() { return static_cast<int>(::parity::simt::current().block.y); }
inline int block_z() { return static_cast<int>(::parity::simt::current().block.z); }
inline int block_dim_x() { return static_cast<int>(::parity::simt::current().block_dim.x); }
inline int block_dim_y() { return static_cast<int>(::parity::simt::current().block_dim.y); }
inline int block_dim_z() { return static_cast<int>(::parity::simt::current().block_dim.z); }
inline int grid_dim_x() { return static_cast<int>(::parity::simt::current().grid_dim.x); }
inline int grid_dim_y() { return static_cast<int>(::parity::simt::current().grid_dim.y); }
inline int grid_dim_z() { return static_cast<int>(::parity::simt::current().grid_dim.z); }
namespace detail {
template <class T>
inline T warp_op(::parity::simt::WarpOp op, T value, int arg, int line) {
  static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = ::parity::simt::warp_collective(op, bits, arg, line);
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}
}  // namespace detail
#define PK_SHFL(value, src) PK_WARP_OP(shfl_idx, value, src)
#define PK_SHFL_XOR(value, mask) PK_WARP_OP(shfl_xor, value, mask)
#define PK_SHFL_DOWN(value, delta) PK_WARP_OP(shfl_down, value, delta)
#define PK_SHFL_UP(value, delta) PK_WARP_OP(shfl_up, value, delta)
#define PK_BALLOT(pred) PK_WARP_OP(ballot, static_cast<uint64_t>((pred) ? 1 : 0), 0)
inline int atomic_add(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
}  // namespace pk

#elif defined(__HIPCC__)  // ---------------------------------------------------------------------

#include <hip/hip_runtime.h>

#define PK_GLOBAL __global__
#define PK_DEVICE __device__ static inline
#define PK_SHARED(T, name, count) __shared__ T name[count]
#define PK_SYNC() __syncthreads()
#define PK_LAUNCH(kernel, grid, block, ...)                                        \
  do {                                                                             \
    hipLaunchKernelGGL(kernel, grid, block, 0, ::pk::stream(), __VA_ARGS__);       \
    ::pk::check_launch(#kernel, hipGetLastError(), hipSuccess, hipGetErrorName);   \
  } while (0)
#define PK_SHFL(value, src) __shfl(value, src)
#define PK_SHFL_XOR(value, mask) __shfl_xor(value, mask)
#define PK_SHFL_DOWN(value, delta) __shfl_down(value, delta)
#define PK_SHFL_UP(value, delta) __shfl_up(value, delta)
#define PK_BALLOT(pred) static_cast<uint64_t>(__ballot(pred))

namespace pk {
// The device pass knows its target's wave size; the host pass only sizes launches, which never
// depend on it (block sizes are multiples of 64), so it takes the larger.
#if defined(__HIP_DEVICE_COMPILE__)
constexpr int kWarpSize = __AMDGCN_WAVEFRONT_SIZE;
#else
constexpr int kWarpSize = 64;
#endif
using Dim3 = ::dim3;
inline Dim3 dim3(unsigned x, unsigned y = 1, unsigned z = 1) { return Dim3(x, y, z); }
// The stream launches go to: the HIP plugin sets it to the instance's stream around each
// execute (per thread: separate instances on separate threads use their own streams).
inline hipStream_t& stream() {
  static thread_local hipStream_t s = nullptr;
  return s;
}
__device__ inline int thread_x() { return static_cast<int>(threadIdx.x); }
__device__ inline int thread_y() { return static_cast<int>(threadIdx.y); }
__device__ inline int thread_z() { return static_cast<int>(threadIdx.z); }
__device__ inline int block_x() { return static_cast<int>(blockIdx.x); }
__device__ inline int block_y() { return static_cast<int>(blockIdx.y); }
__device__ inline int block_z() { return static_cast<int>(blockIdx.z); }
__device__ inline int block_dim_x() { return static_cast<int>(blockDim.x); }
__device__ inline int block_dim_y() { return static_cast<int>(blockDim.y); }
__device__ inline int block_dim_z() { return static_cast<int>(blockDim.z); }
__device__ inline int grid_dim_x() { return static_cast<int>(gridDim.x); }
__device__ inline int grid_dim_y() { return static_cast<int>(gridDim.y); }
__device__ inline int grid_dim_z() { return static_cast<int>(gridDim.z); }
__device__ inline int atomic_add(int* p, int v) { return atomicAdd(p, v); }
}  // namespace pk

#elif defined(__CUDACC__)  // --------------------------------------------------------------------

#define PK_GLOBAL __global__
#define PK_DEVICE __device__ static inline
#define PK_SHARED(T, name, count) __shared__ T name[count]
#define PK_SYNC() __syncthreads()
#define PK_LAUNCH(kernel, grid, block, ...)                                        \
  do {                                                                             \
    kernel<<<grid, block, 0, ::pk::stream()>>>(__VA_ARGS__);                       \
    ::pk::check_launch(#kernel, cudaGetLastError(), cudaSuccess, cudaGetErrorName); \
  } while (0)
#define PK_SHFL(value, src) __shfl_sync(0xffffffffu, value, src)
#define PK_SHFL_XOR(value, mask) __shfl_xor_sync(0xffffffffu, value, mask)
#define PK_SHFL_DOWN(value, delta) __shfl_down_sync(0xffffffffu, value, delta)
#define PK_SHFL_UP(value, delta) __shfl_up_sync(0xffffffffu, value, delta)
#define PK_BALLOT(pred) static_cast<uint64_t>(__ballot_sync(0xffffffffu, pred))

namespace pk {
constexpr int kWarpSize = 32;
using Dim3 = ::dim3;
inline Dim3 dim3(unsigned x, unsigned y = 1, unsigned z = 1) { return Dim3(x, y, z); }
inline cudaStream_t& stream() {
  static thread_local cudaStream_t s = nullptr;
  return s;
}
__device__ inline int thread_x() { return static_cast<int>(threadIdx.x); }
__device__ inline int thread_y() { return static_cast<int>(threadIdx.y); }
__device__ inline int thread_z() { return static_cast<int>(threadIdx.z); }
__device__ inline int block_x() { return static_cast<int>(blockIdx.x); }
__device__ inline int block_y() { return static_cast<int>(blockIdx.y); }
__device__ inline int block_z() { return static_cast<int>(blockIdx.z); }
__device__ inline int block_dim_x() { return static_cast<int>(blockDim.x); }
__device__ inline int block_dim_y() { return static_cast<int>(blockDim.y); }
__device__ inline int block_dim_z() { return static_cast<int>(blockDim.z); }
__device__ inline int grid_dim_x() { return static_cast<int>(gridDim.x); }
__device__ inline int grid_dim_y() { return static_cast<int>(gridDim.y); }
__device__ inline int grid_dim_z() { return static_cast<int>(gridDim.z); }
__device__ inline int atomic_add(int* p, int v) { return atomicAdd(p, v); }
}  // namespace pk

#endif

#if !defined(PARITY_SIMT_WARP)
#include <stdexcept>
#include <string>
namespace pk {
// Every launch's status is checked; a failure names the kernel and the runtime's error. (The
// plugin's ABI entry points must turn it into a status and message: no exception crosses the ABI.)
template <class Status, class NameFn>
inline void check_launch(const char* kernel, Status status, Status success, NameFn name) {
  if (status != success)
    throw std::runtime_error(std::string("kernel '") + kernel + "' failed to launch: " + name(status));
}
}  // namespace pk
#endif

#if !defined(PARITY_SIMT_WARP) && !defined(__HIPCC__) && !defined(__CUDACC__)
#error "backends/native/pk.h: compile with nvcc, hipcc, or define PARITY_SIMT_WARP (32 or 64) for simt"
#endif

// --- built on the above, the same for every target ----------------------------------------------

namespace pk {

constexpr int kMaxBlockThreads = 1024;
constexpr int kMaxWarpsPerBlock = kMaxBlockThreads / 32;

PK_DEVICE int lane() { return thread_x() % kWarpSize; }  // blocks are 1-D where warps matter
PK_DEVICE int warp_id() { return thread_x() / kWarpSize; }
PK_DEVICE bool any(bool pred) { return PK_BALLOT(pred) != 0; }
PK_DEVICE bool all(bool pred) {
  const uint64_t full = kWarpSize == 64 ? ~uint64_t{0} : (uint64_t{1} << kWarpSize) - 1;
  return PK_BALLOT(pred) == full;
}

// Sum over the warp by a butterfly: every lane gets the same result, combined in a fixed order.
template <class T>
PK_DEVICE T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = v + PK_SHFL_XOR(v, offset);
  return v;
}

// Sum over a 1-D block (blockDim.x a multiple of kWarpSize): each warp's butterfly, then warp
// 0 adds the warp partials in warp order. `scratch` is a shared array of kMaxWarpsPerBlock T.
// Every thread must call it; every thread gets the result. Fixed tree: bitwise reproducible.
template <class T>
PK_DEVICE T block_sum(T v, T* scratch) {
  v = warp_sum(v);
  if (lane() == 0) scratch[warp_id()] = v;
  PK_SYNC();
  const int warps = block_dim_x() / kWarpSize;
  T total = T(0);
  if (warp_id() == 0) {
    total = lane() < warps ? scratch[lane()] : T(0);
    total = warp_sum(total);
    if (lane() == 0) scratch[0] = total;
  }
  PK_SYNC();
  total = scratch[0];
  PK_SYNC();  // scratch may be reused by the caller
  return total;
}

}  // namespace pk
