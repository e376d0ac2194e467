// tests/test_cpu_avgpool.cpp — the cpu backend's loops for average-pooling windows that tile the
// input (no padding, stride == kernel) give the bits of the general window kernels
// (ops/kernels/pool.h), which simt runs for every geometry: forward and backward, with odd sizes
// whose last rows and columns no window covers.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "graph/compiled_step.h"
#include "parity/parity.h"

namespace parity {
namespace {

struct Tiling {
  Shape x;
  int kernel;
};

// The pool of x, and the backward of the same window for dy, on one backend.
std::vector<Tensor> run_pool(const std::string& backend, const Graph& g, const Tensor& x, const Tensor& dy) {
  BackendOptions bo;
  bo.threads = 2;
  std::unique_ptr<Backend> be = create_backend(backend, bo);
  const std::vector<std::string> keep{"pool", "pool.bwd"};
  CompiledStep step(*be, g, keep);
  step.write("x", x);
  step.write("dy", dy);
  step.execute();
  std::vector<Tensor> out;
  for (const std::string& name : keep) out.push_back(step.read(name));
  return out;
}

TEST(CpuAvgpool, TilingWindowsGiveTheGeneralKernelsBits) {
  bool simt = false;
  for (const BackendInfo& info : list_backends()) simt = simt || (info.name == "simt" && info.available);
  if (!simt) GTEST_SKIP() << "simt (the general kernels' other runner) is not built";
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (const Tiling& t : {Tiling{Shape{4, 6, 28, 28}, 2}, Tiling{Shape{2, 3, 10, 11}, 3}, Tiling{Shape{3, 2, 7, 9}, 2},
                          Tiling{Shape{1, 1, 5, 5}, 5}}) {
    SCOPED_TRACE(t.x.str() + " kernel " + std::to_string(t.kernel));
    GraphBuilder b;
    const Value x = b.parameter("x", t.x);
    const Value pool = b.avgpool2d(x, t.kernel, t.kernel, "pool");
    const Shape pooled = b.graph().value(pool).shape;
    const Value dy = b.parameter("dy", pooled);
    parity_op_params p = b.graph().nodes().back().params;  // the backward also names x's size
    p.avgpool2d.input_h = static_cast<int32_t>(t.x[2]);
    p.avgpool2d.input_w = static_cast<int32_t>(t.x[3]);
    b.node(PARITY_OP_AVGPOOL2D_BWD, p, {dy}, "pool.bwd");
    const Graph g = b.graph();
    Tensor xt(t.x, DType::f32), dyt(pooled, DType::f32);
    for (int64_t i = 0; i < xt.numel(); ++i) xt.f32()[i] = u(rng);
    for (int64_t i = 0; i < dyt.numel(); ++i) dyt.f32()[i] = u(rng);
    dyt.f32()[dyt.numel() - 1] = -0.0f;  // the gather sums from +0: dx is +0 there, as in the general kernel
    const std::vector<Tensor> cpu = run_pool("cpu", g, xt, dyt), general = run_pool("simt", g, xt, dyt);
    for (size_t i : {size_t{0}, size_t{1}}) {
      ASSERT_EQ(cpu[i].nbytes(), general[i].nbytes());
      EXPECT_EQ(std::memcmp(cpu[i].data(), general[i].data(), cpu[i].nbytes()), 0) << (i == 0 ? "forward" : "backward");
    }
  }
}

}  // namespace
}  // namespace parity
