// tests/test_alloc.cpp — no heap allocation inside a steady-state training step on the cpu
// backend: malloc and friends (and so operator new, Eigen's and oneTBB's allocations) are
// replaced by counting wrappers over glibc's __libc_* functions, and a few warmed-up execute()
// calls of the seed CNN training step must count zero on every thread.
// Not built with PARITY_SANITIZE: AddressSanitizer replaces malloc itself.
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "parity/parity.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
inline void count() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  count();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* memalign(size_t alignment, size_t n) {
  count();
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
  count();
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
  count();
  void* p = __libc_memalign(alignment, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}

namespace parity {
namespace {

struct StepFixture {
  Plan plan;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Executable> exe;
  Tensor x, y;
  int32_t step = 0;

  StepFixture(const ModelSpec& spec, int64_t n, int threads)
      : plan([&] {
          Graph fwd = build_forward(spec, n);
          OptimizerConfig adam;
          return Plan(differentiate(fwd, fwd.find("loss"), &adam), {"loss", "correct"});
        }()),
        x(Shape{n, spec.channels, spec.height, spec.width}, DType::f32),
        y(Shape{n}, DType::i32) {
    BackendOptions bo;
    bo.threads = threads;
    backend = create_backend("cpu", bo);
    exe = backend->compile(plan.c_plan(), CompileOptions{}, nullptr);
    for (const auto& [name, t] : init_weights(spec, 3)) exe->write(plan.value(name), t.data(), t.nbytes());
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = static_cast<float>(i % 251) / 251.0f;
    for (int64_t i = 0; i < n; ++i) y.i32()[i] = static_cast<int32_t>(i % 10);
  }

  // The steady-state loop of a trainer: write the batch and step count, execute, read the loss.
  float run() {
    exe->write(plan.value("x"), x.data(), x.nbytes());
    exe->write(plan.value("y"), y.data(), y.nbytes());
    ++step;
    exe->write(plan.value(optimizer_step_name()), &step, sizeof step);
    exe->execute();
    float loss = 0;
    exe->read(plan.value("loss"), &loss, sizeof loss);
    return loss;
  }
};

long allocations_in_steady_state(const std::string& model, int64_t batch) {
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  StepFixture f(model_spec(model), batch, threads);
  for (int i = 0; i < 3; ++i) f.run();  // warm-up: first-use allocations of oneTBB's workers
  g_allocations = 0;
  g_counting = true;
  float loss = 0;
  for (int i = 0; i < 5; ++i) loss += f.run();
  g_counting = false;
  EXPECT_TRUE(std::isfinite(loss));
  return g_allocations.load();
}

TEST(SteadyState, TheCounterSeesAllocations) {
  g_allocations = 0;
  g_counting = true;
  void* p = std::malloc(64);
  auto* q = new std::string(100, 'x');
  g_counting = false;
  delete q;
  std::free(p);
  EXPECT_GE(g_allocations.load(), 2);
}

TEST(SteadyState, SeedCnnTrainingStepAllocatesNothing) {
  EXPECT_EQ(allocations_in_steady_state("seed-cnn", 64), 0);
}

TEST(SteadyState, SeedCnn112TrainingStepAllocatesNothing) {
  EXPECT_EQ(allocations_in_steady_state("seed-cnn-112", 8), 0);
}

TEST(SteadyState, SeedCnn4ConvTrainingStepAllocatesNothing) {
  EXPECT_EQ(allocations_in_steady_state("seed-cnn-4conv", 16), 0);
}

}  // namespace
}  // namespace parity
