// tests/test_compiled_step.cpp — the one executor of a compiled step (graph/compiled_step.h),
// the one random batch (model/random_batch.h), process spawning (util/process.h) and the
// LibTorch peer's argument list (check/torch_peer_launcher.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "check/torch_peer_launcher.h"
#include "graph/compiled_step.h"
#include "model/random_batch.h"
#include "parity/parity.h"
#include "util/process.h"
#include "util/synthetic_batch.h"

namespace parity {
namespace {

std::unique_ptr<Backend> cpu() {
  BackendOptions bo;
  bo.threads = 1;
  return create_backend("cpu", bo);
}

TEST(CompiledStep, WritesExecutesAndReadsByNameAndIndex) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3});
  Value w = b.parameter("w", Shape{3});
  b.relu(x, "r");
  (void)w;
  const Graph g = b.take();
  auto backend = cpu();
  CompiledStep step(*backend, g, {"r"});
  std::string why;
  EXPECT_TRUE(step.supported_by(*backend, &why)) << why;
  Tensor in(Shape{2, 3}, DType::f32);
  for (int i = 0; i < 6; ++i) in.f32()[i] = float(i) - 2.5f;
  step.write("x", in);
  Tensor ones(Shape{3}, DType::f32);
  for (int i = 0; i < 3; ++i) ones.f32()[i] = 1.0f;
  step.write("w", ones);
  step.zero_params_and_state();
  step.execute();
  const Tensor r = step.read("r");
  EXPECT_EQ(r.shape(), (Shape{2, 3}));
  EXPECT_EQ(r.dtype(), DType::f32);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r.f32()[i], std::max(0.0f, in.f32()[i])) << i;
  const Tensor zeroed = step.read(step.value("w"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(zeroed.f32()[i], 0.0f);
  EXPECT_EQ(step.plan().values()[static_cast<size_t>(step.value("r"))].kind, PARITY_VALUE_TEMP);
}

TEST(CompiledStep, NamesTheNodeABackendCannotRun) {
  ::setenv("PARITY_BACKEND_PATH", PARITY_TEST_PLUGIN_DIR, 1);
  auto faulty = create_backend("testfaulty", {});
  GraphBuilder b;
  b.relu(b.input("x", Shape{4}), "r");
  const Graph g = b.take();
  CompiledStep lowered(g, {"r"});
  std::string why;
  EXPECT_FALSE(lowered.supported_by(*faulty, &why));
  EXPECT_NE(why.find("only FILL, ADD and RESHAPE"), std::string::npos) << why;
  try {
    CompiledStep step(*faulty, g, {"r"});
    ADD_FAILURE() << "expected parity::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backend 'testfaulty' cannot run node 'r'"), std::string::npos) << e.what();
  }
  ::unsetenv("PARITY_BACKEND_PATH");
}

TEST(RandomBatch, IsTheSyntheticBatchOfTheSeedShapedByTheModel) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const ImageBatch a = random_batch(spec, 3, 7, 1), b = random_batch(spec, 3, 7, 1), c = random_batch(spec, 3, 7, 2);
  EXPECT_EQ(a.x.shape(), (Shape{3, spec.channels, spec.height, spec.width}));
  EXPECT_EQ(a.y.shape(), (Shape{3}));
  EXPECT_EQ(std::memcmp(a.x.data(), b.x.data(), a.x.nbytes()), 0);
  EXPECT_NE(std::memcmp(a.x.data(), c.x.data(), a.x.nbytes()), 0);
  std::vector<float> x(static_cast<size_t>(a.x.numel()));
  std::vector<int32_t> y(3);
  synthetic_batch(7, 1, 3, a.x.numel() / 3, spec.num_classes, x.data(), y.data());
  EXPECT_EQ(std::memcmp(a.x.data(), x.data(), a.x.nbytes()), 0);
  EXPECT_EQ(std::memcmp(a.y.data(), y.data(), a.y.nbytes()), 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(a.y.i32()[i] >= 0 && a.y.i32()[i] < spec.num_classes);
}

TEST(Process, CapturesOutputExitStatusAndEnvironment) {
  const ProcessResult r = run_process({"sh", "-c", "echo \"$PARITY_TEST_VALUE\"; exit 3"}, {"PARITY_TEST_VALUE=a b"});
  EXPECT_TRUE(r.started);
  EXPECT_EQ(r.exit_status, 3);
  EXPECT_EQ(r.out, "a b\n");
  EXPECT_FALSE(run_process({"/nonexistent/parity-no-such-program"}).started);
  EXPECT_EQ(shell_command({"/bin/p", "--w", "it's here"}, {"LD_PRELOAD=/x y.so"}),
            "LD_PRELOAD='/x y.so' /bin/p --w 'it'\\''s here'");
}

TEST(Process, RunForJsonTakesTheLastJsonLine) {
  const nlohmann::json j = run_for_json({"sh", "-c", "echo '{\"a\": 1}'; echo noise; echo '{\"a\": 2}'; echo tail"});
  EXPECT_EQ(j.value("a", 0), 2);
  const nlohmann::json none = run_for_json({"sh", "-c", "echo nothing; exit 4"});
  ASSERT_TRUE(none.contains("error"));
  EXPECT_NE(none["error"].get<std::string>().find("exit status 4"), std::string::npos) << none.dump();
}

// A job on seed-cnn with the files every mode takes.
TorchPeerJob seed_cnn_job(const std::string& mode) {
  TorchPeerJob job;
  job.mode = mode;
  job.model = "seed-cnn";
  job.weights = "w.safetensors";
  job.model_file = "m.json";
  return job;
}

TEST(TorchPeerLauncher, StepModeComesFirstAndTakesOnlyItsOptions) {
  TorchPeerJob step = seed_cnn_job("step");
  step.input = "in.safetensors";
  step.out = "out.safetensors";
  step.steps = 3;
  step.threads = 2;
  const std::vector<std::string> args = torch_peer_arguments("peer", step);
  ASSERT_GE(args.size(), 3u);
  EXPECT_EQ(args[0], "peer");
  EXPECT_EQ(args[1], "--mode");  // the peer recognises its step mode from argv[1..2] only
  EXPECT_EQ(args[2], "step");
  EXPECT_NE(std::find(args.begin(), args.end(), "--model-file"), args.end());
  for (const char* absent : {"--batch", "--min-time", "--warmup"})
    EXPECT_EQ(std::find(args.begin(), args.end(), absent), args.end()) << absent;
  // The seed keys parity's dropout masks, which the peer applies in step mode too.
  EXPECT_NE(std::find(args.begin(), args.end(), "--seed"), args.end());
  TorchPeerJob timed = seed_cnn_job("train");
  timed.batch = 64;
  timed.seed = 1;
  timed.min_time = 0.5;
  timed.warmup = 3;
  const std::string cmd = shell_command(torch_peer_arguments("peer", timed));
  EXPECT_EQ(cmd, "peer --mode train --model seed-cnn --model-file m.json --weights w.safetensors --batch 64 --seed 1 "
                 "--min-time 0.5 --warmup 3 --threads 1");
}

}  // namespace
}  // namespace parity
