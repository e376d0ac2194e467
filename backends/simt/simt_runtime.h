// backends/simt/simt_runtime.h — the host emulator behind the `simt` target of
// backends/native/pk.h: a kernel launch runs its blocks in parallel on oneTBB, and the threads
// of one block as cooperatively scheduled fibers (Boost.Context), so a barrier really waits for
// every thread, shared memory is one copy per block (with guard zones checked after the block),
// warp shuffles and votes exchange values among the fibers of one warp (32 or 64 lanes), and a
// barrier or warp operation that cannot complete is reported as a deadlock with the kernel's
// name instead of hanging. Kernel code never calls this directly; it goes through pk.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace parity {
namespace simt {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// What a running kernel thread sees: its indices, the launch shape and the warp size.
struct ThreadContext {
  Dim3 thread, block, block_dim, grid_dim;
  int warp_size = 32;
  int linear_thread = 0;  // thread.x + block_dim.x * (thread.y + block_dim.y * thread.z)
};

// The context of the kernel thread (fiber) running on this OS thread. Only valid inside a kernel.
const ThreadContext& current();

// __syncthreads: returns once every thread of the block has reached the barrier at `line`.
void sync_block(int line);

// One shared-memory array of the block (the n-th PK_SHARED a thread executes gets the n-th array;
// every thread must declare the same arrays in the same order). Filled with 0xff bytes (a NaN in
// every float) when the block starts, surrounded by guard zones checked when the block ends.
void* shared_alloc(size_t bytes, size_t align, const char* name);

enum class WarpOp : uint8_t { shfl_idx, shfl_xor, shfl_down, shfl_up, ballot };

// A warp collective: every live lane of the calling thread's warp must reach the same call
// (same `line`, same op). Shuffles return `value` of the source lane; ballot returns the mask of
// lanes whose value is nonzero.
uint64_t warp_collective(WarpOp op, uint64_t value, int arg, int line);

// Runs `body` once per thread of a grid x block launch; blocks run in parallel on oneTBB in the
// calling thread's task arena. Throws parity::Error naming `kernel` on a deadlock, a shared-memory
// overrun or an invalid launch shape.
void launch(const char* kernel, int warp_size, Dim3 grid, Dim3 block, const std::function<void()>& body);

// The warp size `simt` runs at: PARITY_SIMT_WARP (32 or 64) from the environment, default 32.
// Throws parity::Error for any other value.
int warp_size_from_env();

}  // namespace simt
}  // namespace parity
