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
#include <vector>

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
          ForwardOptions training;  // as the Trainer builds it: batch norms on batch statistics, dropout on
          training.training = true;
          training.seed = 3;
          Graph fwd = build_forward(spec, n, training);
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

// The models of issue #12: average pooling, batch norm, residual adds, depthwise convolution
// and dropout in their training steps.
TEST(SteadyState, Lenet5TrainingStepAllocatesNothing) { EXPECT_EQ(allocations_in_steady_state("lenet5", 16), 0); }
TEST(SteadyState, Resnet8TrainingStepAllocatesNothing) { EXPECT_EQ(allocations_in_steady_state("resnet8", 8), 0); }
TEST(SteadyState, MobilenetMiniTrainingStepAllocatesNothing) {
  EXPECT_EQ(allocations_in_steady_state("mobilenet-mini", 8), 0);
}

// batchnorm2d's training forward and backward (its per-plane partial sums live in the workspace
// sized at compile) in a small Adam training step.
TEST(SteadyState, BatchnormTrainingStepAllocatesNothing) {
  GraphBuilder b;
  const Shape channels{4};
  Value x = b.input("x", Shape{8, 4, 6, 6});
  Value y = b.batchnorm2d_train(x, b.parameter("bn.weight", channels), b.parameter("bn.bias", channels),
                                b.state("bn.running_mean", channels), b.state("bn.running_var", channels));
  Value logits = b.linear(b.flatten(y), b.parameter("fc.weight", Shape{10, 144}), b.parameter("fc.bias", Shape{10}));
  Value loss = b.softmax_xent(logits, b.input("labels", Shape{8}, DType::i32), "loss");
  const Graph fwd = b.take();
  OptimizerConfig adam;
  const Plan plan(differentiate(fwd, loss, &adam), {"loss"});
  BackendOptions bo;
  bo.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto backend = create_backend("cpu", bo);
  auto exe = backend->compile(plan.c_plan(), CompileOptions{}, nullptr);
  std::vector<float> pixels(8 * 4 * 6 * 6), ones(4, 1.0f), weights(1440);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 97) / 97.0f;
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i % 13) / 130.0f - 0.05f;
  exe->write(plan.value("bn.weight"), ones.data(), ones.size() * 4);
  exe->write(plan.value("bn.running_var"), ones.data(), ones.size() * 4);
  exe->write(plan.value("fc.weight"), weights.data(), weights.size() * 4);
  std::vector<int32_t> labels(8);
  for (int i = 0; i < 8; ++i) labels[static_cast<size_t>(i)] = i % 10;
  int32_t step = 0;
  auto run = [&] {
    exe->write(plan.value("x"), pixels.data(), pixels.size() * 4);
    exe->write(plan.value("labels"), labels.data(), labels.size() * 4);
    ++step;
    exe->write(plan.value(optimizer_step_name()), &step, sizeof step);
    exe->execute();
    float l = 0;
    exe->read(plan.value("loss"), &l, sizeof l);
    return l;
  };
  for (int i = 0; i < 3; ++i) run();
  g_allocations = 0;
  g_counting = true;
  float total = 0;
  for (int i = 0; i < 5; ++i) total += run();
  g_counting = false;
  EXPECT_TRUE(std::isfinite(total));
  EXPECT_EQ(g_allocations.load(), 0);
}

}  // namespace
}  // namespace parity
