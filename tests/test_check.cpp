// tests/test_check.cpp — the engine behind `parity check`: the comparison metric can fail,
// the model check passes cpu against ref and names the first divergence when one is forced,
// and bad weight or input files are reported by name.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "parity/check.h"
#include "parity/parity.h"

namespace parity {
namespace {

namespace fs = std::filesystem;

TEST(CompareTensors, MetricsAndVerdicts) {
  Tensor want = Tensor::from_f32(Shape{4}, {1.0f, -2.0f, 3.0f, 4.0f});
  TensorDiff same = compare_tensors(want, want, 0.0);
  EXPECT_TRUE(same.pass);
  EXPECT_EQ(same.nmse, 0.0);

  Tensor off = Tensor::from_f32(Shape{4}, {1.0f, -2.0f, 3.0f, 4.5f});
  TensorDiff d = compare_tensors(off, want, 1e-3);
  EXPECT_NEAR(d.nmse, 0.25 / 30.0, 1e-12);
  EXPECT_FALSE(d.pass);
  EXPECT_DOUBLE_EQ(d.max_abs, 0.5);
  EXPECT_DOUBLE_EQ(d.max_rel, 0.125);
  ASSERT_FALSE(d.worst.empty());
  EXPECT_EQ(d.worst[0].index, 3);
  EXPECT_TRUE(compare_tensors(off, want, 1e-2).pass);

  // Exact mode: the smallest difference fails.
  Tensor tiny = want;
  tiny.f32()[0] = std::nextafter(1.0f, 2.0f);
  EXPECT_FALSE(compare_tensors(tiny, want, 0.0).pass);

  // An unwritten (NaN-poisoned) element fails whatever the threshold.
  Tensor nan = want;
  nan.f32()[2] = std::nanf("");
  TensorDiff n = compare_tensors(nan, want, 1.0);
  EXPECT_EQ(n.nonfinite_mismatch, 1);
  EXPECT_FALSE(n.pass);

  // Integer outputs: the fraction of elements that differ.
  Tensor a = Tensor::from_i32(Shape{4}, {1, 2, 3, 4}), b = Tensor::from_i32(Shape{4}, {1, 2, 3, 5});
  EXPECT_DOUBLE_EQ(compare_tensors(a, b, 0.5).nmse, 0.25);
}

TEST(CheckOps, EveryOpOnCpuPassesAgainstRefIncludingExactMode) {
  for (bool exact : {false, true}) {
    OpCheckOptions o;
    o.backends = {"cpu"};
    o.exact = exact;
    std::vector<OpCaseResult> results = check_ops(o);
    EXPECT_GT(results.size(), 90u);
    for (const OpCaseResult& r : results) {
      EXPECT_FALSE(r.skipped) << r.op << " " << r.label;
      for (const TensorDiff& d : r.outputs) EXPECT_TRUE(d.pass) << r.op << " " << r.label << " " << d.name << " nmse " << d.nmse;
    }
  }
}

TEST(CheckOps, UserCaseAndBadRequests) {
  OpCheckOptions o;
  o.backends = {"cpu"};
  o.op = "conv2d";
  o.shape = {2, 3, 9, 9, 4, 5, 3, 2, 2};
  std::vector<OpCaseResult> results = check_ops(o);
  bool found = false;
  for (const OpCaseResult& r : results) found = found || r.label == "x[2,3,9,9] w[4,3,5,3] stride 2 pad 2";
  EXPECT_TRUE(found);
  o.shape = {2, 3};
  EXPECT_THROW(check_ops(o), Error);
  o.op = "nosuch";
  o.shape.clear();
  EXPECT_THROW(check_ops(o), Error);
}

// --precision splits the cases by dtype: each selection holds only cases with a value of its
// dtype (f32: none of bf16 or f16), the three together cover every case (a bf16<->f16 CAST is in
// both half selections), and an op family without half cases is refused for a half precision.
bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

TEST(CheckOps, PrecisionSelectsCasesByDtype) {
  OpCheckOptions o;
  o.backends = {"cpu"};
  o.op = "relu";
  const size_t all = check_ops(o).size();
  std::map<std::string, size_t> counts;
  for (const char* precision : {"f32", "bf16", "fp16"}) {
    o.precision = precision;
    const std::vector<OpCaseResult> results = check_ops(o);
    counts[precision] = results.size();
    for (const OpCaseResult& r : results) {
      // The half cases' labels end in their dtype (ops/conformance.cpp's add_half_cases).
      const bool bf16 = ends_with(r.label, " bf16"), f16 = ends_with(r.label, " f16");
      EXPECT_EQ(o.precision == "bf16", bf16) << precision << ": " << r.label;
      EXPECT_EQ(o.precision == "fp16", f16) << precision << ": " << r.label;
      EXPECT_TRUE(r.pass()) << precision << ": " << r.label;
    }
  }
  EXPECT_GT(counts["bf16"], 0u);
  EXPECT_EQ(counts["bf16"], counts["fp16"]);
  EXPECT_EQ(counts["f32"] + counts["bf16"] + counts["fp16"], all);
  o.op = "argmax";  // no half cases
  o.precision = "bf16";
  EXPECT_THROW(check_ops(o), Error);
  o.op.clear();
  o.precision = "f64";
  EXPECT_THROW(check_ops(o), Error);
}

// A plugin with deliberate bugs (tests/plugins/test_backend.cpp, PARITY_TEST_FAULTY): the
// checker must catch a write past an output (guard region), an unwritten element (NaN
// prefill), a wrong value (threshold), and the same faults through the gradient mode.
TEST(CheckOps, CatchesOverrunsUnwrittenElementsAndWrongValues) {
  ::setenv("PARITY_BACKEND_PATH", PARITY_TEST_PLUGIN_DIR, 1);
  auto run = [](const std::string& op, bool gradient) {
    OpCheckOptions o;
    o.backends = {"testfaulty"};
    o.op = op;
    o.gradient = gradient;
    return check_ops(o);
  };
  auto failed_with = [](const std::vector<OpCaseResult>& results, const std::string& op, const std::string& fragment,
                        bool nonfinite) {
    int cases = 0;
    for (const OpCaseResult& r : results) {
      if (r.op != op) continue;
      if (r.skipped) {  // the plugin stores no half values: its bf16 and f16 cases are refused by name
        // (and gradient mode skips every half case, saying why)
        EXPECT_TRUE(r.skip_reason.find("backend 'testfaulty' cannot run") != std::string::npos ||
                    r.skip_reason.find("half-precision case") != std::string::npos)
            << r.label << ": " << r.skip_reason;
        continue;
      }
      ++cases;
      EXPECT_FALSE(r.pass()) << op << " " << r.label;
      for (const TensorDiff& d : r.outputs) {
        EXPECT_NE(d.note.find(fragment), std::string::npos) << op << ": " << d.note;
        if (nonfinite) {
          EXPECT_GT(d.nonfinite_mismatch, 0) << op;
        }
      }
    }
    EXPECT_GT(cases, 0) << op;
  };
  failed_with(run("add", false), "ADD", "guard region", false);
  failed_with(run("reshape", false), "RESHAPE", "", true);
  failed_with(run("fill", false), "FILL", "", false);
  failed_with(run("reshape", true), "RESHAPE (gradient)", "central differences", true);
  // Ops the plugin lacks are listed as skipped with its reason, never as passed.
  std::vector<OpCaseResult> conv = run("conv2d", false);
  ASSERT_FALSE(conv.empty());
  for (const OpCaseResult& r : conv) {
    EXPECT_TRUE(r.skipped);
    EXPECT_NE(r.skip_reason.find("only FILL, ADD and RESHAPE"), std::string::npos) << r.skip_reason;
  }
  ::unsetenv("PARITY_BACKEND_PATH");
}

TEST(CheckOps, GradientModePassesOnCpu) {
  OpCheckOptions o;
  o.backends = {"cpu"};
  o.gradient = true;
  std::vector<OpCaseResult> results = check_ops(o);
  EXPECT_GT(results.size(), 25u);
  for (const OpCaseResult& r : results)
    for (const TensorDiff& d : r.outputs) EXPECT_TRUE(d.pass) << r.op << " " << r.label << " " << d.name << " nmse " << d.nmse;
}

TEST(CheckModel, CpuAgainstRefPassesEveryValueAndDriftStaysSmall) {
  ModelCheckOptions o;
  o.batch = 4;
  o.steps = 3;
  ModelCheckReport r = check_model(o);
  EXPECT_TRUE(r.pass());
  // Every node output of the step (forward, backward, gradients) plus 8 updated weights and 16
  // Adam states (57), then the train plan's loss, weights and states (25).
  EXPECT_EQ(r.values.size(), 82u);
  int train_plan_rows = 0;
  for (const TensorDiff& d : r.values) train_plan_rows += d.role == "train plan";
  EXPECT_EQ(train_plan_rows, 25);
  ASSERT_EQ(r.drift.size(), 3u);
  EXPECT_LT(r.drift[2].weights_nmse, 1e-9);
  EXPECT_NEAR(r.drift[0].loss_a, r.drift[0].loss_b, 1e-5);
}

// --dump writes every value of both sides; bad --weights and --input files are named.
TEST(CheckModel, DumpsEveryValueAndRejectsBadFiles) {
  fs::path dir = fs::temp_directory_path() / ("parity-check-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  TensorFile weights;
  for (auto& [name, t] : init_weights(model_spec("seed-cnn"), 0)) weights.tensors.emplace(name, t);
  const std::string path = (dir / "w.safetensors").string();
  write_safetensors(path, weights);
  ModelCheckOptions o;
  o.batch = 2;
  o.weights = path;
  o.dump = (dir / "dump").string();
  ModelCheckReport r = check_model(o);
  EXPECT_TRUE(r.pass());
  TensorFile cpu = read_safetensors((dir / "dump" / "cpu.safetensors").string());
  TensorFile ref = read_safetensors((dir / "dump" / "ref.safetensors").string());
  EXPECT_EQ(cpu.tensors.size(), ref.tensors.size());
  EXPECT_TRUE(cpu.tensors.count("grad/conv1.weight"));
  EXPECT_TRUE(cpu.tensors.count("pool1.indices"));
  EXPECT_EQ(cpu.tensors.at("logits").shape(), (Shape{2, 10}));

  weights.tensors.at("conv2.weight") = Tensor(Shape{32, 16, 5, 5}, DType::f32);
  write_safetensors(path, weights);
  try {
    check_model(o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv2.weight"), std::string::npos) << e.what();
  }
  TensorFile input;
  input.tensors.emplace("x", Tensor(Shape{2, 1, 28, 28}, DType::f32));
  input.tensors.emplace("y", Tensor(Shape{2}, DType::f32));
  const std::string input_path = (dir / "in.safetensors").string();
  write_safetensors(input_path, input);
  ModelCheckOptions bad;
  bad.input = input_path;
  try {
    check_model(bad);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'y' is f32 [2], expected i64 [2]"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// PyTorch as the other side: the LibTorch peer (built when libtorch-dev is installed) runs the
// same step from the same weights and batch; forward values, gradients, updated weights and
// Adam's state must agree with cpu within the same thresholds as against ref.
TEST(CheckModel, CpuAgainstTorchWhenThePeerIsBuilt) {
  ModelCheckOptions o;
  o.against = "torch";
  o.batch = 4;
  o.steps = 2;
#ifdef PARITY_TEST_TORCH_PEER
  o.torch_peer = PARITY_TEST_TORCH_PEER;
  ModelCheckReport r = check_model(o);
  for (const TensorDiff& d : r.values) EXPECT_TRUE(d.pass) << d.name << ": nmse " << d.nmse;
  EXPECT_GT(r.values.size(), 70u);
  EXPECT_EQ(r.against, "torch");
  EXPECT_NEAR(r.drift[1].loss_a, r.drift[1].loss_b, 1e-5);
#else
  // Without the peer the request is a clear error, never a silent pass.
  try {
    check_model(o);
    ADD_FAILURE() << "expected an error: the peer is not built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LibTorch peer is not built"), std::string::npos) << e.what();
  }
#endif
}

TEST(CheckDeterminism, CpuAndRefAreBitwiseRepeatable) {
  for (const char* backend : {"cpu", "ref"}) {
    DeterminismReport r = check_determinism("seed-cnn", backend, 4, 0, 1);
    EXPECT_TRUE(r.pass()) << backend;
    EXPECT_GT(r.values_compared, 50);
  }
}

}  // namespace
}  // namespace parity
