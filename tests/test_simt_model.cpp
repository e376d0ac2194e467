// tests/test_simt_model.cpp — the whole seed CNN on `simt` (the native GPU kernels on the host,
// at the warp size CTest sets in PARITY_SIMT_WARP): one Adam training step against `ref`, and
// bitwise-identical results when the same steps run twice. Batch 4 keeps the fibers' cost low.
// Thresholds as in test_model.cpp's cpu-vs-ref step: the loss is a float32 mean of 4 terms
// (NMSE 1e-9 is generous), and after Adam's first step a gradient within rounding of zero may
// flip sign between float32 and float64 and move one weight by 2 lr (NMSE 1e-7 allows a few).
#include <map>
#include <random>

#include "parity/check.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

struct TrainingRun {
  std::vector<float> losses;
  TensorFile state;  // weights and optimizer state after the steps
};

TrainingRun train(const std::string& backend, int steps, int64_t batch) {
  const ModelSpec& spec = model_spec("seed-cnn");
  BackendOptions bo;
  bo.threads = 2;
  Trainer t(spec, create_backend(backend, bo), OptimizerConfig{}, batch);
  t.load_weights(init_weights(spec, 3));
  TrainingRun r;
  for (int s = 0; s < steps; ++s) {
    auto [x, y] = random_batch(spec, batch, 40 + static_cast<uint32_t>(s));
    r.losses.push_back(t.train_step(x, y).loss);
  }
  r.state = t.checkpoint();
  return r;
}

// Every node output, gradient, updated weight and optimizer state of one Adam step, against
// ref, with the per-op step thresholds of ops/*.cpp (the engine of `parity check model`).
TEST(SimtModel, AdamStepOfTheSeedCnnMatchesRefNodeByNode) {
  ModelCheckOptions o;
  o.backend = "simt";
  o.against = "ref";
  o.batch = 4;
  o.steps = 2;
  const ModelCheckReport r = check_model(o);
  for (const TensorDiff& d : r.values)
    EXPECT_TRUE(d.pass) << d.node << " " << d.name << ": nmse " << d.nmse << " (limit " << d.threshold << ")";
  EXPECT_EQ(r.first_failure, -1);
  EXPECT_LT(r.drift.back().weights_nmse, 1e-9);
}

TEST(SimtModel, TrainingStepsAreBitwiseRepeatable) {
  const TrainingRun a = train("simt", 2, 4), b = train("simt", 2, 4);
  EXPECT_EQ(a.losses, b.losses);
  for (const auto& [name, t] : a.state.tensors) EXPECT_TRUE(bitwise_equal(t, b.state.tensors.at(name))) << name;
}

}  // namespace
}  // namespace parity::testing
