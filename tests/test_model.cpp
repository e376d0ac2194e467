// tests/test_model.cpp — whole-model checks: seeded initialisation, autodiff of the seed CNN
// against finite differences on ref, one training step on cpu against ref, and bitwise
// determinism of cpu at the machine's maximum thread count.
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "backends/ref/ref_ops.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

TEST(Init, SeededWeightsFollowPyTorchBoundsAndRepeat) {
  const ModelSpec& spec = model_spec("seed-cnn");
  auto a = init_weights(spec, 7), b = init_weights(spec, 7), c = init_weights(spec, 8);
  for (const ParamSpec& p : spec.params) {
    const Tensor& t = a.at(p.name);
    ASSERT_EQ(t.shape(), p.shape);
    EXPECT_TRUE(bitwise_equal(t, b.at(p.name))) << p.name;
    EXPECT_FALSE(bitwise_equal(t, c.at(p.name))) << p.name;
    const double bound = 1.0 / std::sqrt(double(p.fan_in));
    double lo = 1e9, hi = -1e9, sum = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      lo = std::min(lo, double(t.f32()[i]));
      hi = std::max(hi, double(t.f32()[i]));
      sum += t.f32()[i];
    }
    EXPECT_GE(lo, -bound) << p.name;
    EXPECT_LT(hi, bound) << p.name;
    // U(-b, b) has standard deviation b/sqrt(3); the mean of n draws is within 5 sigma of 0.
    if (t.numel() >= 100) {
      EXPECT_LT(std::fabs(sum / t.numel()), 5 * bound / std::sqrt(3.0 * t.numel())) << p.name;
    }
    if (t.numel() >= 1000) {
      EXPECT_GT(hi - lo, 1.9 * bound) << p.name;  // the draws fill the range
    }
  }
}

// The seed CNN's loss in float64, composed from ref's op functions (each checked against
// finite differences in test_ref_gradients.cpp): the independent side of the autodiff check.
double seed_cnn_loss_f64(const std::map<std::string, std::vector<double>>& w, const std::vector<double>& x,
                         const std::vector<int32_t>& y, int64_t n) {
  using namespace parity::ref;
  Conv2dDims c1 = make_conv2d_dims(n, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1);
  std::vector<double> a1(static_cast<size_t>(n * 16 * 28 * 28)), r1(a1.size());
  conv2d_forward(x.data(), w.at("conv1.weight").data(), w.at("conv1.bias").data(), a1.data(), c1);
  relu_forward(a1.data(), r1.data(), static_cast<int64_t>(a1.size()));
  Maxpool2dDims p1 = make_maxpool2d_dims(n, 16, 28, 28, 2, 2, 2, 2);
  std::vector<double> m1(static_cast<size_t>(n * 16 * 14 * 14));
  std::vector<int32_t> i1(m1.size());
  maxpool2d_forward(r1.data(), m1.data(), i1.data(), p1);
  Conv2dDims c2 = make_conv2d_dims(n, 16, 14, 14, 32, 3, 3, 1, 1, 1, 1);
  std::vector<double> a2(static_cast<size_t>(n * 32 * 14 * 14)), r2(a2.size());
  conv2d_forward(m1.data(), w.at("conv2.weight").data(), w.at("conv2.bias").data(), a2.data(), c2);
  relu_forward(a2.data(), r2.data(), static_cast<int64_t>(a2.size()));
  Maxpool2dDims p2 = make_maxpool2d_dims(n, 32, 14, 14, 2, 2, 2, 2);
  std::vector<double> m2(static_cast<size_t>(n * 32 * 7 * 7));
  std::vector<int32_t> i2(m2.size());
  maxpool2d_forward(r2.data(), m2.data(), i2.data(), p2);
  std::vector<double> h1(static_cast<size_t>(n * 128)), g1(h1.size()), logits(static_cast<size_t>(n * 10));
  linear_forward(m2.data(), w.at("fc1.weight").data(), w.at("fc1.bias").data(), h1.data(), LinearDims{n, 1568, 128});
  relu_forward(h1.data(), g1.data(), static_cast<int64_t>(h1.size()));
  linear_forward(g1.data(), w.at("fc2.weight").data(), w.at("fc2.bias").data(), logits.data(), LinearDims{n, 128, 10});
  double loss = 0;
  softmax_xent_forward(logits.data(), y.data(), XentDims{n, 10}, XentLoss{}, &loss);
  return loss;
}

// Autodiff of the whole seed CNN (the gradient graph run on ref) against central differences
// of the float64 loss above. With h = 1e-6 the truncation error is O(h^2) and the rounding
// error about 1e-16 / 1e-6 = 1e-10; the autodiff gradient crosses the API as float32 (relative
// error 6e-8). A step of 1e-6 rarely crosses a relu or maxpool kink, and a crossing shows as a
// single outlier, so each entry must agree to 1e-5 * max(1e-3, |g|) except at most one per
// parameter; a wrong rule (a transposed weight, a missing sum, a misrouted pool gradient)
// breaks most entries.
TEST(Autodiff, SeedCnnGradientsMatchFiniteDifferencesInFloat64) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const int64_t n = 2;
  auto weights = init_weights(spec, 3);
  auto [x, y] = random_batch(spec, n, 11);

  Graph fwd = build_forward(spec, n);
  Graph train = differentiate(fwd, fwd.find("loss"), nullptr);
  std::vector<std::string> keep;
  for (const ParamSpec& p : spec.params) keep.push_back(grad_name(p.name));
  Plan plan(train, keep);
  auto ref = create_backend("ref");
  auto exe = ref->compile(plan.c_plan(), {}, nullptr);
  exe->write(plan.value("x"), x.data(), x.nbytes());
  exe->write(plan.value("y"), y.data(), y.nbytes());
  for (const auto& [name, t] : weights) exe->write(plan.value(name), t.data(), t.nbytes());
  exe->execute();

  std::map<std::string, std::vector<double>> w64;
  for (const auto& [name, t] : weights) w64[name].assign(t.f32(), t.f32() + t.numel());
  std::vector<double> x64(x.f32(), x.f32() + x.numel());
  std::vector<int32_t> y32(y.i32(), y.i32() + y.numel());

  std::mt19937 rng(5);
  for (const ParamSpec& p : spec.params) {
    Tensor grad(p.shape, DType::f32);
    exe->read(plan.value(grad_name(p.name)), grad.data(), grad.nbytes());
    std::vector<double>& w = w64.at(p.name);
    const int64_t count = static_cast<int64_t>(w.size());
    const int samples = static_cast<int>(std::min<int64_t>(count, 16));
    int outliers = 0;
    double largest = 0;
    std::string details;
    for (int s = 0; s < samples; ++s) {
      const int64_t i = count <= 16 ? s : std::uniform_int_distribution<int64_t>(0, count - 1)(rng);
      const double h = 1e-6, saved = w[static_cast<size_t>(i)];
      w[static_cast<size_t>(i)] = saved + h;
      const double plus = seed_cnn_loss_f64(w64, x64, y32, n);
      w[static_cast<size_t>(i)] = saved - h;
      const double minus = seed_cnn_loss_f64(w64, x64, y32, n);
      w[static_cast<size_t>(i)] = saved;
      const double fd = (plus - minus) / (2 * h), g = grad.f32()[i];
      largest = std::max(largest, std::fabs(fd));
      if (std::fabs(fd - g) > 1e-5 * std::max(1e-3, std::fabs(g))) {
        ++outliers;
        details += fmt::format("\n  [{}]: autodiff {}, finite difference {}", i, g, fd);
      }
    }
    EXPECT_LE(outliers, 1) << p.name << details;
    EXPECT_GT(largest, 0.0) << p.name << ": the loss does not move with this parameter";
  }
}

// One Adam step of the seed CNN on cpu against ref, node by node, is `parity check model`'s
// job: see tests/test_check.cpp (CheckModel.*).

// Bitwise determinism at the machine's maximum thread count: two trainers, same seed and
// batches, three steps each, identical weights and optimizer state.
TEST(Determinism, CpuTrainingStepsAreBitwiseRepeatable) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto run = [&] {
    BackendOptions bo;
    bo.threads = threads;
    Trainer t(spec, create_backend("cpu", bo), OptimizerConfig{}, 16);
    t.load_weights(init_weights(spec, 4));
    for (uint32_t s = 0; s < 3; ++s) {
      auto [x, y] = random_batch(spec, 16, 100 + s);
      t.train_step(x, y);
    }
    return t.checkpoint();
  };
  TensorFile a = run(), b = run();
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) EXPECT_TRUE(bitwise_equal(t, b.tensors.at(name))) << name << " differs";
}

}  // namespace
}  // namespace parity::testing
