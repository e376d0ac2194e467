// backends/simt/simt_runtime.cpp — fibers (Boost.Context fcontext), the per-block scheduler
// with barrier / warp-collective resolution and deadlock detection, per-block shared memory
// with guard zones, and the oneTBB grid loop. See simt_runtime.h.
//
// Scheduling: the scheduler resumes every runnable fiber in thread order; each runs until it
// reaches a barrier, a warp collective or its end. When none is runnable it resolves what can
// be resolved: a warp whose live lanes all wait at the same collective, then a barrier that
// every thread of the block waits at. If nothing can be resolved and threads remain, the block
// is deadlocked and the launch fails with a description of where each thread waits. No timer.
#include "backends/simt/simt_runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "parity/error.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define PARITY_SIMT_ASAN 1
#else
#define PARITY_SIMT_ASAN 0
#endif

namespace parity {
namespace simt {
namespace {

namespace bctx = boost::context::detail;

constexpr int kMaxThreadsPerBlock = 1024;
constexpr size_t kSharedLimit = 48 * 1024;  // CUDA's static shared-memory limit per block
constexpr size_t kGuardBytes = 256;         // before and after every shared array
constexpr unsigned char kGuardByte = 0xa5;
constexpr size_t kMaxSharedArrays = 32;
constexpr size_t kMaxAlign = 64;
#if PARITY_SIMT_ASAN
constexpr size_t kStackBytes = 512 * 1024;  // ASan's redzones make frames much larger
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

enum class State : uint8_t { runnable, barrier, warp, done };

struct Fiber {
  bctx::fcontext_t ctx = nullptr;
  State state = State::runnable;
  int line = 0;  // where it waits
  WarpOp op = WarpOp::shfl_idx;
  uint64_t value = 0, result = 0;
  int arg = 0;
  size_t next_shared = 0;
  ThreadContext tc;
  void* stack_bottom = nullptr;
#if PARITY_SIMT_ASAN
  void* fake_stack = nullptr;
#endif
};

struct SharedArray {
  const char* name;
  size_t offset, bytes;
};

// One OS thread's scheduler: fiber stacks (reused across blocks), the shared-memory arena and
// the state of the block it runs.
struct Worker {
  std::vector<void*> stacks;  // mmap'd, lowest page a guard page
  std::vector<Fiber> fibers;
  std::vector<unsigned char> arena =
      std::vector<unsigned char>(kSharedLimit + kMaxSharedArrays * (2 * kGuardBytes + kMaxAlign));
  size_t arena_used = 0, shared_payload = 0;
  std::vector<SharedArray> shared;
  bctx::fcontext_t scheduler = nullptr;
  const std::function<void()>* body = nullptr;
  std::exception_ptr error;
  std::string violation;  // a rule broken inside a fiber, reported by the scheduler
  int live = 0;
#if PARITY_SIMT_ASAN
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
  void* scheduler_fake_stack = nullptr;
#endif

  ~Worker() {
    for (void* s : stacks) munmap(s, kStackBytes);
  }

  void* stack(size_t i) {
    while (stacks.size() <= i) {
      void* s = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (s == MAP_FAILED) throw Error(ErrorKind::backend, "simt: could not map a fiber stack");
      mprotect(s, static_cast<size_t>(sysconf(_SC_PAGESIZE)), PROT_NONE);  // overflow faults, not corrupts
      stacks.push_back(s);
    }
    return stacks[i];
  }
};

thread_local Worker* t_worker = nullptr;
thread_local Fiber* t_fiber = nullptr;

Worker& worker() {
  thread_local Worker w;
  return w;
}

// --- switching, annotated for AddressSanitizer so it knows which stack is live ---

void switch_to_scheduler(Worker& w, Fiber& f, bool finishing) {
#if PARITY_SIMT_ASAN
  __sanitizer_start_switch_fiber(finishing ? nullptr : &f.fake_stack, w.scheduler_stack_bottom,
                                 w.scheduler_stack_size);
#endif
  bctx::transfer_t t = bctx::jump_fcontext(w.scheduler, nullptr);
  // Resumed by the scheduler.
  w.scheduler = t.fctx;
#if PARITY_SIMT_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &w.scheduler_stack_bottom, &w.scheduler_stack_size);
#endif
  (void)finishing;
}

void resume(Worker& w, Fiber& f) {
  t_fiber = &f;
#if PARITY_SIMT_ASAN
  __sanitizer_start_switch_fiber(&w.scheduler_fake_stack, f.stack_bottom, kStackBytes);
#endif
  bctx::transfer_t t = bctx::jump_fcontext(f.ctx, &f);
  f.ctx = t.fctx;
#if PARITY_SIMT_ASAN
  __sanitizer_finish_switch_fiber(w.scheduler_fake_stack, nullptr, nullptr);
#endif
  t_fiber = nullptr;
}

void fiber_entry(bctx::transfer_t t) {
  Worker& w = *t_worker;
  w.scheduler = t.fctx;
  Fiber& f = *static_cast<Fiber*>(t.data);
#if PARITY_SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &w.scheduler_stack_bottom, &w.scheduler_stack_size);
#endif
  try {
    (*w.body)();
  } catch (const Error& e) {  // a rule of the emulator broken by this thread: the scheduler names the kernel
    if (w.violation.empty()) w.violation = e.what();
  } catch (...) {
    if (!w.error) w.error = std::current_exception();
  }
  f.state = State::done;
  --w.live;
  switch_to_scheduler(w, f, true);
  std::abort();  // a finished fiber is never resumed
}

// Blocks the calling fiber in `state` until the scheduler releases it.
void wait_here(State state, int line) {
  Worker& w = *t_worker;
  Fiber& f = *t_fiber;
  f.state = state;
  f.line = line;
  switch_to_scheduler(w, f, false);
}

std::string dim3_str(Dim3 d) { return fmt::format("({},{},{})", d.x, d.y, d.z); }

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::shfl_idx: return "shfl";
    case WarpOp::shfl_xor: return "shfl_xor";
    case WarpOp::shfl_down: return "shfl_down";
    case WarpOp::shfl_up: return "shfl_up";
    case WarpOp::ballot: return "ballot";
  }
  return "?";
}

// Where each unfinished thread waits, grouped, for a deadlock report.
std::string describe_waits(const std::vector<Fiber>& fibers, int n, int warp_size) {
  std::map<std::string, int> groups;
  int done = 0;
  for (int i = 0; i < n; ++i) {
    const Fiber& f = fibers[static_cast<size_t>(i)];
    if (f.state == State::done) ++done;
    else if (f.state == State::barrier) ++groups[fmt::format("at the barrier on line {}", f.line)];
    else if (f.state == State::warp)
      ++groups[fmt::format("at {} on line {} (warp {})", op_name(f.op), f.line, i / warp_size)];
  }
  std::string s;
  for (const auto& [where, count] : groups) s += fmt::format("{}{} thread(s) wait {}", s.empty() ? "" : "; ", count, where);
  if (done) s += fmt::format("; {} thread(s) have finished", done);
  return s;
}

// Completes the collective of warp `first / warp_size` if all its live lanes wait at it.
// Returns true if it released the lanes.
bool resolve_warp(Worker& w, int warp, int first, int end, const char* kernel, Dim3 block) {
  int waiting = 0, live = 0, lead = -1;
  for (int i = first; i < end; ++i) {
    const Fiber& f = w.fibers[static_cast<size_t>(i)];
    if (f.state == State::done) continue;
    ++live;
    if (f.state == State::warp) {
      ++waiting;
      if (lead < 0) lead = i;
    }
  }
  if (waiting == 0 || waiting != live) return false;
  const Fiber& l = w.fibers[static_cast<size_t>(lead)];
  for (int i = first; i < end; ++i) {
    const Fiber& f = w.fibers[static_cast<size_t>(i)];
    if (f.state == State::done)
      throw Error(ErrorKind::backend,
                  fmt::format("simt: kernel '{}' block {}: {} on line {} is a collective of the whole warp, but "
                              "thread {} of that warp has already finished",
                              kernel, dim3_str(block), op_name(l.op), l.line, i));
    if (f.line != l.line || f.op != l.op)
      throw Error(ErrorKind::backend,
                  fmt::format("simt: kernel '{}' block {}: the lanes of warp {} wait at different collectives "
                              "({} on line {} and {} on line {})",
                              kernel, dim3_str(block), warp, op_name(l.op), l.line,
                              op_name(f.op), f.line));
  }
  const int lanes = end - first;
  uint64_t mask = 0;
  if (l.op == WarpOp::ballot)
    for (int i = first; i < end; ++i)
      if (w.fibers[static_cast<size_t>(i)].value) mask |= uint64_t{1} << (i - first);
  for (int i = first; i < end; ++i) {
    Fiber& f = w.fibers[static_cast<size_t>(i)];
    const int lane = i - first;
    int src = lane;
    switch (f.op) {
      case WarpOp::shfl_idx: src = f.arg; break;
      case WarpOp::shfl_xor: src = lane ^ f.arg; break;
      case WarpOp::shfl_down: src = lane + f.arg; break;
      case WarpOp::shfl_up: src = lane - f.arg; break;
      case WarpOp::ballot: break;
    }
    if (src < 0 || src >= lanes) src = lane;  // out of the warp: the lane keeps its own value (CUDA/HIP)
    f.result = f.op == WarpOp::ballot ? mask : w.fibers[static_cast<size_t>(first + src)].value;
  }
  for (int i = first; i < end; ++i) w.fibers[static_cast<size_t>(i)].state = State::runnable;
  return true;
}

void check_guards(const Worker& w, const char* kernel, Dim3 block) {
  for (const SharedArray& a : w.shared) {
    const unsigned char* before = w.arena.data() + a.offset - kGuardBytes;
    const unsigned char* after = w.arena.data() + a.offset + a.bytes;
    for (size_t i = 0; i < kGuardBytes; ++i) {
      if (after[i] != kGuardByte)
        throw Error(ErrorKind::backend,
                    fmt::format("simt: kernel '{}' block {} wrote past the end of shared array '{}' ({} bytes): "
                                "byte {} after its end was overwritten",
                                kernel, dim3_str(block), a.name, a.bytes, i));
      if (before[kGuardBytes - 1 - i] != kGuardByte)
        throw Error(ErrorKind::backend,
                    fmt::format("simt: kernel '{}' block {} wrote before the start of shared array '{}' ({} bytes): "
                                "byte {} before its start was overwritten",
                                kernel, dim3_str(block), a.name, a.bytes, i + 1));
    }
  }
}

void run_block(Worker& w, const char* kernel, int warp_size, Dim3 grid, Dim3 block_dim, Dim3 block,
               const std::function<void()>& body) {
  const int n = static_cast<int>(block_dim.x * block_dim.y * block_dim.z);
  w.body = &body;
  w.error = nullptr;
  w.violation.clear();
  w.shared.clear();
  w.arena_used = 0;
  w.shared_payload = 0;
  w.live = n;
  if (w.fibers.size() < static_cast<size_t>(n)) w.fibers.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Fiber& f = w.fibers[static_cast<size_t>(i)];
    f = Fiber{};
    f.tc.block = block;
    f.tc.block_dim = block_dim;
    f.tc.grid_dim = grid;
    f.tc.warp_size = warp_size;
    f.tc.linear_thread = i;
    f.tc.thread = Dim3{static_cast<unsigned>(i) % block_dim.x, (static_cast<unsigned>(i) / block_dim.x) % block_dim.y,
                       static_cast<unsigned>(i) / (block_dim.x * block_dim.y)};
    f.stack_bottom = w.stack(static_cast<size_t>(i));
#if PARITY_SIMT_ASAN
    __asan_unpoison_memory_region(static_cast<char*>(f.stack_bottom) + sysconf(_SC_PAGESIZE),
                                  kStackBytes - static_cast<size_t>(sysconf(_SC_PAGESIZE)));
#endif
    f.ctx = bctx::make_fcontext(static_cast<char*>(f.stack_bottom) + kStackBytes, kStackBytes, fiber_entry);
  }
  for (;;) {
    for (int i = 0; i < n; ++i) {
      Fiber& f = w.fibers[static_cast<size_t>(i)];
      if (f.state == State::runnable) resume(w, f);
      if (w.error) std::rethrow_exception(w.error);
      if (!w.violation.empty())
        throw Error(ErrorKind::backend,
                    fmt::format("simt: kernel '{}' block {} thread {}: {}", kernel, dim3_str(block), i, w.violation));
    }
    if (w.live == 0) break;
    bool released = false;
    for (int first = 0; first < n; first += warp_size)
      released |= resolve_warp(w, first / warp_size, first, std::min(n, first + warp_size), kernel, block);
    if (released) continue;
    int at_barrier = 0, line = -1;
    bool one_line = true;
    for (int i = 0; i < n; ++i) {
      const Fiber& f = w.fibers[static_cast<size_t>(i)];
      if (f.state != State::barrier) continue;
      ++at_barrier;
      if (line >= 0 && f.line != line) one_line = false;
      line = f.line;
    }
    if (at_barrier == n && one_line) {
      for (int i = 0; i < n; ++i) w.fibers[static_cast<size_t>(i)].state = State::runnable;
      continue;
    }
    throw Error(ErrorKind::backend, fmt::format("simt: kernel '{}' block {} deadlocked: {}", kernel, dim3_str(block),
                                                describe_waits(w.fibers, n, warp_size)));
  }
  check_guards(w, kernel, block);
}

}  // namespace

const ThreadContext& current() { return t_fiber->tc; }

void sync_block(int line) { wait_here(State::barrier, line); }

uint64_t warp_collective(WarpOp op, uint64_t value, int arg, int line) {
  Fiber& f = *t_fiber;
  f.op = op;
  f.value = value;
  f.arg = arg;
  wait_here(State::warp, line);
  return f.result;
}

void* shared_alloc(size_t bytes, size_t align, const char* name) {
  Worker& w = *t_worker;
  Fiber& f = *t_fiber;
  const size_t k = f.next_shared++;
  if (k < w.shared.size()) {
    const SharedArray& a = w.shared[k];
    if (a.bytes != bytes || std::strcmp(a.name, name) != 0)
      w.violation = fmt::format("its shared array #{} is '{}' ({} bytes) but another thread declared '{}' ({} bytes): "
                                "every thread must declare the same shared arrays in the same order",
                                k, name, bytes, a.name, a.bytes);
    return w.arena.data() + a.offset;
  }
  size_t offset = w.arena_used + kGuardBytes;
  offset = (offset + align - 1) / align * align;
  if (w.shared_payload + bytes > kSharedLimit)
    throw Error(ErrorKind::backend, fmt::format("shared array '{}' ({} bytes) takes the block past the {} bytes "
                                                "of shared memory a block may use",
                                                name, bytes, kSharedLimit));
  if (offset + bytes + kGuardBytes > w.arena.size())
    throw Error(ErrorKind::backend, fmt::format("shared array '{}': more than {} shared arrays in one block",
                                                name, kMaxSharedArrays));
  w.shared_payload += bytes;
  std::memset(w.arena.data() + w.arena_used, kGuardByte, offset - w.arena_used);
  std::memset(w.arena.data() + offset, 0xff, bytes);
  std::memset(w.arena.data() + offset + bytes, kGuardByte, kGuardBytes);
  w.arena_used = offset + bytes + kGuardBytes;
  w.shared.push_back(SharedArray{name, offset, bytes});
  return w.arena.data() + offset;
}

void launch(const char* kernel, int warp_size, Dim3 grid, Dim3 block, const std::function<void()>& body) {
  const int64_t threads = int64_t{block.x} * block.y * block.z;
  if (threads < 1 || threads > kMaxThreadsPerBlock)
    throw Error(ErrorKind::backend, fmt::format("simt: kernel '{}' launched with block {} = {} threads; a block has 1 "
                                                "to {} threads",
                                                kernel, dim3_str(block), threads, kMaxThreadsPerBlock));
  if (warp_size != 32 && warp_size != 64)
    throw Error(ErrorKind::backend, fmt::format("simt: kernel '{}': warp size {} (32 or 64)", kernel, warp_size));
  const int64_t blocks = int64_t{grid.x} * grid.y * grid.z;
  if (blocks == 0) return;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, blocks, 1), [&](const tbb::blocked_range<int64_t>& r) {
    Worker& w = worker();
    Worker* const outer = t_worker;
    t_worker = &w;
    try {
      for (int64_t b = r.begin(); b != r.end(); ++b) {
        const Dim3 id{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                      static_cast<unsigned>(b / (int64_t{grid.x} * grid.y))};
        run_block(w, kernel, warp_size, grid, block, id, body);
      }
    } catch (...) {
      t_worker = outer;
      throw;
    }
    t_worker = outer;
  });
}

int warp_size_from_env() {
  const char* env = std::getenv("PARITY_SIMT_WARP");
  if (!env || !*env) return 32;
  const std::string s = env;
  if (s == "32") return 32;
  if (s == "64") return 64;
  throw Error(ErrorKind::invalid_argument, "PARITY_SIMT_WARP must be 32 or 64, got '" + s + "'");
}

}  // namespace simt
}  // namespace parity
