// tests/test_gpu_emu.cpp — the GPU executor (backends/gpu, the host code the CUDA and HIP plugins
// share) executed on the emulated device, through the plugin loader as the ordinary backend
// `gpu_emu`, against `ref`: every op, one and several training steps of both models (the first use
// of each input slot eager, the second captured as a graph and replayed after), determinism,
// training with graphs on, off and with every capture failing (the fallback), and weights shared
// between executables of different batch sizes (each captured on its own); half (bf16, fp16)
// autocast steps planned as on CUDA, against cpu, with the library calls CUDA would make counted
// from the emulation's log and a wrong half descriptor refused. The emulation's
// ordering checks see nothing wrong in those runs; with one of the executor's own calls left out
// (PARITY_EMU_OMIT) they report the hazard that call prevents. The checks are also proved on
// hand-made broken sequences in tests/test_emu_runtime.cpp.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "model/autocast.h"
#include "model/model_summary.h"
#include "parity/check.h"
#include "parity/plugin.h"
#include "tests/gpu_plugin_checks.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

// Sets an environment variable for the life of the object (the plugin reads PARITY_CUDA_* when an
// instance is created, PARITY_EMU_FAIL_CAPTURE at each capture).
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* value) : name(n) { ::setenv(n, value, 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

TEST(GpuEmu, IsAnOrdinaryBackendInAllButNeverChosenByAuto) {
  bool listed = false;
  for (const BackendInfo& b : list_backends())
    if (b.name == "gpu_emu") {
      listed = true;
      EXPECT_TRUE(b.available) << b.detail;
      EXPECT_NE(b.location.find("libparity-backend-gpu_emu.so"), std::string::npos) << b.location;
      EXPECT_NE(b.capabilities.find("graph-capture"), std::string::npos) << b.capabilities;
      EXPECT_EQ(b.capabilities.find("external-stream"), std::string::npos) << b.capabilities;
    }
  ASSERT_TRUE(listed);
  const std::vector<std::string> all = resolve_backend_list("all");
  EXPECT_NE(std::find(all.begin(), all.end(), "gpu_emu"), all.end());
  EXPECT_NE(create_backend("auto")->name(), "gpu_emu");
}

TEST(GpuEmu, EveryOpMatchesRef) {
  OpCheckOptions o;
  o.backends = {"gpu_emu"};
  const std::vector<OpCaseResult> results = check_ops(o);
  ASSERT_GT(results.size(), 100u);
  int half_cases = 0;
  for (const OpCaseResult& r : results) {
    // bf16 and f16 values run here too (the native kernels' CAST, every other op through its f32
    // kernels): nothing is skipped.
    half_cases += r.label.find("bf16") != std::string::npos || r.label.find("f16") != std::string::npos;
    EXPECT_FALSE(r.skipped) << r.op << " " << r.label << ": " << r.skip_reason;
    EXPECT_TRUE(r.pass()) << r.op << " " << r.label;
  }
  EXPECT_GT(half_cases, 100);
}

// Three Adam steps: slot 0 eager, slot 1 eager, slot 0 captured and replayed. Every value of the
// first step against ref with the per-op thresholds, and the drift over all three.
void expect_model_matches_ref(const std::string& model, int64_t batch, int steps) {
  ModelCheckOptions o;
  o.model = model;
  o.backend = "gpu_emu";
  o.against = "ref";
  o.batch = batch;
  o.steps = steps;
  const ModelCheckReport r = check_model(o);
  for (const TensorDiff& d : r.values)
    EXPECT_TRUE(d.pass) << model << ": " << d.node << " " << d.name << ": nmse " << d.nmse << " (limit " << d.threshold
                        << ")";
  EXPECT_EQ(r.first_failure, -1);
  ASSERT_EQ(r.drift.size(), static_cast<size_t>(steps));
  EXPECT_LT(r.drift.back().weights_nmse, 1e-9) << model;
}

// The library calls the emulation logged (PARITY_EMU_LIBRARY_LOG) while `body` ran: one line per
// cuDNN or cuBLAS call CUDA would make, with its element types, and per f32 epilogue of a half
// product.
std::vector<std::string> library_calls(const std::function<void()>& body) {
  // One file per process and test: ctest runs the tests of this file as parallel processes.
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string path = ::testing::TempDir() + "gpu_emu_library_calls." + std::to_string(::getpid()) + "." +
                           (test ? test->name() : "none") + ".log";
  std::remove(path.c_str());
  {
    ScopedEnv log("PARITY_EMU_LIBRARY_LOG", path.c_str());
    body();
  }
  std::vector<std::string> lines;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) lines.emplace_back(line);
    std::fclose(f);
  }
  std::remove(path.c_str());
  return lines;
}
int count_with(const std::vector<std::string>& lines, std::initializer_list<const char*> parts) {
  return static_cast<int>(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
    return std::all_of(parts.begin(), parts.end(), [&](const char* p) { return l.find(p) != std::string::npos; });
  }));
}

ModelCheckReport autocast_step_against_cpu(Precision precision) {
  ModelCheckOptions o;
  o.model = "seed-cnn";
  o.backend = "gpu_emu";
  o.against = "cpu";
  o.batch = 4;
  o.precision = precision;
  return check_model(o);
}

// One autocast step (model/autocast.cpp: conv and linear on half copies, the activations,
// pools and reshape in half, loss and optimizer f32) against cpu, node by node, with check
// model's per-op thresholds for the value's dtype, planned as on CUDA: the convolution backwards
// on cuDNN with PSEUDO_BFLOAT16/PSEUDO_HALF descriptors (db by the f32 channel sum), the linear
// ops as GemmEx calls with f32 accumulation (forward into the f32 staging, then bias and one
// rounding; backwards into half C, db by the channel sum), emulated; the convolutions forward,
// which have an f32 bias, and the activations and pools on the native kernels. The log of the
// library calls proves the library routes were taken, so the test fails if every half node
// silently went native.
void expect_autocast_step_matches_cpu(Precision precision) {
  const char* e = precision == Precision::bf16 ? "bf16" : "f16";
  const std::string half = std::string(" ") + e + " ";
  const std::string config = precision == Precision::bf16 ? "PSEUDO_BFLOAT16_CONFIG" : "PSEUDO_HALF_CONFIG";
  ModelCheckReport r;
  const std::vector<std::string> calls = library_calls([&] { r = autocast_step_against_cpu(precision); });
  int casts = 0;  // the policy's CASTs: their outputs are the half values compared
  for (const TensorDiff& d : r.values) {
    casts += d.op == "CAST";
    EXPECT_TRUE(d.pass) << d.node << " " << d.name << ": nmse " << d.nmse << " (limit " << d.threshold << ")";
  }
  EXPECT_GT(r.values.size(), 50u);
  EXPECT_GT(casts, 4);
  EXPECT_EQ(r.first_failure, -1);

  std::string all;
  for (const std::string& l : calls) all += l;
  SCOPED_TRACE(all);
  // Each step that ran logged its calls (check model may execute the plan more than once): per
  // step, fc1 and logits forward (GemmEx into f32 staging, round_to_half), backward data and weight
  // (GemmEx into half C; channel_sum_f32 for db), conv2's backward data, both convolutions'
  // backward filter with db by channel_sum_f32.
  const int fwd = count_with(calls, {"cublasGemmEx", half.c_str(), "C f32 compute 32F", "node 'fc1'"});
  ASSERT_GE(fwd, 1);
  const std::string c_half = std::string("C ") + e + " compute 32F";
  EXPECT_EQ(count_with(calls, {"cublasGemmEx A", c_half.c_str()}), 4 * fwd);  // fc1, logits: bwd data, bwd weight
  EXPECT_EQ(count_with(calls, {"cublasGemmEx A", "C f32 compute 32F"}), 2 * fwd);  // fc1, logits forward
  EXPECT_EQ(count_with(calls, {"round_to_half acc f32 bias f32 y", half.c_str()}), 2 * fwd);
  EXPECT_EQ(count_with(calls, {"channel_sum_f32 dy", half.c_str(), "db f32"}), 4 * fwd);  // 2 linear, 2 conv
  EXPECT_EQ(count_with(calls, {"cudnnConvolutionBackwardData", config.c_str()}), fwd);        // conv2
  EXPECT_EQ(count_with(calls, {"cudnnConvolutionBackwardFilter", config.c_str()}), 2 * fwd);  // conv1, conv2
  // The forward convolutions have an f32 bias: native (cuDNN would round before adding it).
  EXPECT_EQ(count_with(calls, {"cudnnConvolutionForward"}), 0);
  // No f32 library call in this graph: every conv and linear is half.
  EXPECT_EQ(count_with(calls, {"cublasSgemm"}) + count_with(calls, {"FLOAT_CONFIG"}), 0);
}

TEST(GpuEmu, SeedCnnBf16AutocastStepMatchesCpu) { expect_autocast_step_matches_cpu(Precision::bf16); }
TEST(GpuEmu, SeedCnnFp16AutocastStepMatchesCpu) { expect_autocast_step_matches_cpu(Precision::f16); }

// mobilenet-mini's convolutions have no bias (a batch norm follows each), so its half forward
// convolutions take cuDNN too (PSEUDO_*_CONFIG, grouped and pointwise ones included), and the
// step still matches cpu.
TEST(GpuEmu, MobilenetMiniBf16StepRunsItsBiasFreeConvolutionsOnTheLibraryRoute) {
  ModelCheckOptions o;
  o.model = "mobilenet-mini";
  o.backend = "gpu_emu";
  o.against = "cpu";
  o.batch = 2;
  o.precision = Precision::bf16;
  ModelCheckReport r;
  const std::vector<std::string> calls = library_calls([&] { r = check_model(o); });
  for (const TensorDiff& d : r.values)
    EXPECT_TRUE(d.pass) << d.node << " " << d.name << ": nmse " << d.nmse << " (limit " << d.threshold << ")";
  EXPECT_EQ(r.first_failure, -1);
  EXPECT_GT(count_with(calls, {"cudnnConvolutionForward x bf16 w bf16 y bf16 compute f32 PSEUDO_BFLOAT16_CONFIG"}), 4);
  EXPECT_GT(count_with(calls, {"cudnnConvolutionBackwardData", "PSEUDO_BFLOAT16_CONFIG"}), 4);
  EXPECT_GT(count_with(calls, {"cublasGemmEx A bf16 B bf16"}), 0);
  EXPECT_EQ(count_with(calls, {"FLOAT_CONFIG "}) + count_with(calls, {"cublasSgemm"}), 0);
}

// The emulation's checks of what CUDA would give cuBLAS and cuDNN: a GemmEx whose operand B is
// described with the other half type, and convolution descriptors of the other half type, stop
// the step with the call, the operand and both types named.
TEST(GpuEmu, AWrongHalfDescriptorIsCaught) {
  auto failure = [](const char* what) {
    ScopedEnv misdescribe("PARITY_EMU_MISDESCRIBE", what);
    try {
      (void)autocast_step_against_cpu(Precision::bf16);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string gemm = failure("gemm_ex");
  std::printf("misdescribed GemmEx: %s\n", gemm.c_str());
  EXPECT_NE(gemm.find("cublasGemmEx A bf16 B f16"), std::string::npos) << gemm;
  EXPECT_NE(gemm.find("operand B is described as f16 but holds bf16 values"), std::string::npos) << gemm;
  const std::string conv = failure("conv");
  std::printf("misdescribed convolution: %s\n", conv.c_str());
  EXPECT_NE(conv.find("cuDNN's x descriptor is f16 (PSEUDO_HALF_CONFIG)"), std::string::npos) << conv;
  EXPECT_NE(conv.find("holds bf16 values"), std::string::npos) << conv;
  // And with the descriptors right again, the same step runs.
  EXPECT_EQ(autocast_step_against_cpu(Precision::bf16).first_failure, -1);
}

// f32 graphs keep cuBLAS's Sgemm and cuDNN's FLOAT_CONFIG: no GemmEx, no half epilogue.
TEST(GpuEmu, F32StepsCallNoHalfLibraryRoutine) {
  const std::vector<std::string> calls = library_calls([] { expect_model_matches_ref("seed-cnn", 2, 1); });
  EXPECT_GT(count_with(calls, {"cublasSgemm"}), 0);
  EXPECT_GT(count_with(calls, {"cudnnConvolutionForward", "FLOAT_CONFIG"}), 0);
  EXPECT_EQ(count_with(calls, {"cublasGemmEx"}) + count_with(calls, {"round_to_half"}) +
                count_with(calls, {"channel_sum_f32"}) + count_with(calls, {"PSEUDO_"}),
            0);
}

TEST(GpuEmu, SeedCnnStepsMatchRefWithTheThirdCaptured) { expect_model_matches_ref("seed-cnn", 4, 3); }
TEST(GpuEmu, SeedCnn112StepMatchesRef) { expect_model_matches_ref("seed-cnn-112", 2, 1); }

TEST(GpuEmu, TrainingStepsAreDeterministic) {
  const DeterminismReport r = check_determinism("seed-cnn", "gpu_emu", 4, 1, 0);
  EXPECT_GT(r.values_compared, 50);
  for (const std::string& v : r.differing) ADD_FAILURE() << v << " differs between two runs";
}

struct TrainingRun {
  std::vector<float> losses;
  TensorFile state;
  std::string stderr_text;
};

// `batches`: the batch size of each step; the Trainer compiles one executable per size, all
// sharing the first one's weights and optimizer state.
TrainingRun train(const std::string& backend, const std::vector<int64_t>& batches) {
  const ModelSpec& spec = model_spec("seed-cnn");
  ::testing::internal::CaptureStderr();
  TrainingRun r;
  {
    Trainer t(spec, create_backend(backend), OptimizerConfig{}, 4);
    t.load_weights(init_weights(spec, 5));
    for (size_t s = 0; s < batches.size(); ++s) {
      auto [x, y] = random_batch(spec, batches[s], 70 + static_cast<uint32_t>(s));
      r.losses.push_back(t.train_step(x, y).loss);
    }
    r.state = t.checkpoint();
  }
  r.stderr_text = ::testing::internal::GetCapturedStderr();
  return r;
}

void expect_bitwise_equal(const TrainingRun& a, const TrainingRun& b, const char* what) {
  EXPECT_EQ(a.losses, b.losses) << what;
  ASSERT_EQ(a.state.tensors.size(), b.state.tensors.size()) << what;
  for (const auto& [name, t] : a.state.tensors) EXPECT_TRUE(bitwise_equal(t, b.state.tensors.at(name))) << what << ": " << name;
}

// Five steps of batch 4: the third, fourth and fifth replay the graphs of the two slots. The same
// steps with graphs off (PARITY_CUDA_GRAPHS=0), and with every capture failing
// (PARITY_EMU_FAIL_CAPTURE=1: the executor says so once per executable and launches node by node),
// give the same bits; ref agrees within the model thresholds.
TEST(GpuEmu, GraphsOnOffAndAFailedCaptureGiveTheSameBits) {
  const std::vector<int64_t> batches(5, 4);
  const TrainingRun graphs = train("gpu_emu", batches);
  EXPECT_EQ(graphs.stderr_text.find("capturing the step as a graph failed"), std::string::npos) << graphs.stderr_text;
  TrainingRun off, failed;
  {
    ScopedEnv no_graphs("PARITY_CUDA_GRAPHS", "0");
    off = train("gpu_emu", batches);
  }
  {
    ScopedEnv fail("PARITY_EMU_FAIL_CAPTURE", "1");
    failed = train("gpu_emu", batches);
  }
  EXPECT_NE(failed.stderr_text.find("capturing the step as a graph failed"), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("PARITY_EMU_FAIL_CAPTURE"), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("launching node by node"), std::string::npos) << failed.stderr_text;
  expect_bitwise_equal(graphs, off, "graphs on vs off");
  expect_bitwise_equal(graphs, failed, "graphs on vs every capture failing");
  // The loss is a float32 mean of a few terms over float32 weights (relative rounding ~1e-7 per
  // step): 1e-5 on a loss near 2 leaves room for a few steps' drift and still catches a wrong step.
  const TrainingRun ref = train("ref", batches);
  for (size_t s = 0; s < batches.size(); ++s) EXPECT_NEAR(graphs.losses[s], ref.losses[s], 1e-5) << "step " << s;
}

// Batch 4, then 3 (a second executable sharing the weights and optimizer state, with its own
// slots and graphs), then 4 again, then 3 again: each executable's slots run eagerly once and are
// replayed after. The weights both update are the same storage, so the result equals the same
// sequence with graphs off, bit for bit, and ref's within the model thresholds.
TEST(GpuEmu, ExecutablesOfTwoBatchSizesShareWeightsAndEachCaptures) {
  const std::vector<int64_t> batches = {4, 4, 3, 3, 4, 3, 3, 4};
  const TrainingRun graphs = train("gpu_emu", batches);
  TrainingRun off;
  {
    ScopedEnv no_graphs("PARITY_CUDA_GRAPHS", "0");
    off = train("gpu_emu", batches);
  }
  expect_bitwise_equal(graphs, off, "two batch sizes, graphs on vs off");
  const TrainingRun ref = train("ref", batches);
  for (size_t s = 0; s < batches.size(); ++s) EXPECT_NEAR(graphs.losses[s], ref.losses[s], 1e-5) << "step " << s;
  for (const auto& [name, t] : ref.state.tensors) {
    if (t.dtype() != DType::f32) continue;  // the step count, equal by construction
    const Tensor& mine = graphs.state.tensors.at(name);
    ASSERT_EQ(mine.numel(), t.numel()) << name;
    double err = 0, norm = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double a = mine.f32()[i], b = t.f32()[i];
      err += (a - b) * (a - b);
      norm += b * b;
    }
    // NMSE 1e-7, as tests/test_simt_model.cpp argues: a gradient within rounding of zero may flip
    // sign between float32 and float64 and move one weight by 2 lr; this allows a few.
    EXPECT_LE(err, 1e-7 * norm + 1e-30) << name;
  }
}

// The plugin's own table: libparity's C++ Executable::execute synchronizes after each step, so
// only the C table shows the executor's steps overlapping with the next batch's copies.
const parity_backend_table& gpu_emu_table() {
  static const parity_backend_table* table = [] {
    void* lib = dlopen(PARITY_GPU_EMU_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    EXPECT_NE(lib, nullptr) << dlerror();
    auto entry = reinterpret_cast<parity_backend_entry_fn>(dlsym(lib, PARITY_BACKEND_ENTRY_SYMBOL));
    return entry ? entry() : nullptr;
  }();
  EXPECT_NE(table, nullptr);
  return *table;
}

// A relu over an INPUT, written and executed three times with nothing synchronized in between
// (the two input slots; the first reused while the copy stream may still hold its bytes), then
// read. Returns the first error's message, or "".
// `before_destroy`: run just before the executable is destroyed, unread.
std::string run_relu_three_times(const std::function<void()>& before_destroy = {}) {
  const parity_backend_table& t = gpu_emu_table();
  GraphBuilder b;
  b.relu(b.input("x", Shape{256}), "r");
  Graph g = b.take();
  Plan plan(g, {"r"});
  const parity_plan c = plan.c_plan();
  parity_error err{};
  parity_backend_config config{sizeof(parity_backend_config), 0, 0, nullptr};
  parity_backend_t backend = nullptr;
  if (t.create(&config, &backend, &err) != PARITY_OK) return err.message;
  parity_executable_t exe = nullptr;
  std::string failure;
  std::vector<float> x(256), r(256);
  if (t.compile(backend, &c, 0, nullptr, &exe, &err) != PARITY_OK) failure = err.message;
  for (int round = 0; failure.empty() && round < 3; ++round) {
    for (int i = 0; i < 256; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i % 7 - 3 + round);
    if (t.write_value(exe, plan.value("x"), x.data(), 256 * 4, &err) != PARITY_OK ||
        t.execute(exe, &err) != PARITY_OK)
      failure = err.message;
  }
  if (failure.empty() && !before_destroy) {
    if (t.read_value(exe, plan.value("r"), r.data(), 256 * 4, &err) != PARITY_OK) {
      failure = err.message;
    } else {
      for (int i = 0; i < 256; ++i)
        EXPECT_EQ(r[static_cast<size_t>(i)], std::max(0.0f, x[static_cast<size_t>(i)])) << i;
    }
  }
  if (before_destroy) before_destroy();
  t.executable_destroy(exe);  // unread: its memory goes while its work may be queued
  t.destroy(backend);
  return failure;
}

// The table as the CUDA and HIP plugins' tests check theirs, and its raw buffers: copies in, across
// and out, with their range and NULL checks.
TEST(GpuEmu, TableBuffersAndCopies) {
  const parity_backend_table& t = gpu_emu_table();
  expect_complete_table(&t, "gpu_emu");
  expect_null_handles_refused(&t, "gpu_emu");
  parity_error err{};
  parity_backend_config config{sizeof(parity_backend_config), 0, 0, nullptr};
  parity_backend_t backend = nullptr;
  ASSERT_EQ(t.create(&config, &backend, &err), PARITY_OK) << err.message;
  parity_buffer_t a = nullptr, b = nullptr;
  ASSERT_EQ(t.buffer_alloc(backend, 64, &a, &err), PARITY_OK) << err.message;
  ASSERT_EQ(t.buffer_alloc(backend, 64, &b, &err), PARITY_OK) << err.message;
  const std::vector<float> in = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> out(8, 0.0f);
  ASSERT_EQ(t.copy_host_to_device(backend, a, 16, in.data(), 32, &err), PARITY_OK) << err.message;
  ASSERT_EQ(t.copy_device_to_device(backend, b, 0, a, 16, 32, &err), PARITY_OK) << err.message;
  ASSERT_EQ(t.copy_device_to_host(backend, out.data(), b, 0, 32, &err), PARITY_OK) << err.message;
  EXPECT_EQ(out, in);
  EXPECT_EQ(t.copy_host_to_device(backend, a, 48, in.data(), 32, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(err.message).find("gpu_emu: copy_host_to_device: bytes [48, 80) are outside the buffer's 64"),
            std::string::npos)
      << err.message;
  EXPECT_EQ(t.copy_device_to_host(backend, nullptr, b, 0, 4, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(t.copy_device_to_device(nullptr, a, 0, b, 0, 4, &err), PARITY_STATUS_INVALID_ARGUMENT);
  parity_buffer_t refused = nullptr;
  EXPECT_EQ(t.buffer_alloc(backend, -1, &refused, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(refused, nullptr);
  EXPECT_NE(std::string(err.message).find("bytes must be >= 0"), std::string::npos) << err.message;
  t.buffer_free(backend, a);
  t.buffer_free(backend, b);
  config.stream = &config;  // no vendor stream exists here
  parity_backend_t other = nullptr;
  EXPECT_EQ(t.create(&config, &other, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(err.message).find("external stream"), std::string::npos) << err.message;
  t.destroy(backend);
}

// Planned without a device (ABI 4), a training step needs exactly what the compiled one holds on
// the device: the emulated target searches no algorithm, so nothing is counted at a limit.
TEST(GpuEmu, ItsDeviceFreePlanIsExactlyWhatCompileAllocates) {
  for (const char* model : {"seed-cnn", "seed-cnn-112"}) {
    const ModelSpec& spec = model_spec(model);
    Graph g = build_training_step(spec, 4, OptimizerConfig{});
    Plan plan(g, {"loss", "correct"});
    const std::optional<MemoryNeed> need = memory_need_without_device("gpu_emu", plan.c_plan());
    ASSERT_TRUE(need.has_value());
    auto backend = create_backend("gpu_emu");
    auto exe = backend->compile(plan.c_plan(), {}, nullptr);
    EXPECT_EQ(need->device_bytes, exe->memory_bytes()) << model;
    EXPECT_GT(need->host_bytes, 0) << model;  // the pinned input slots
  }
}

// An INPUT written once and executed twice: the second execute runs from the other input slot, so
// the executor first carries the value's latest bytes there (a device copy on the copy stream).
// The same for half autocast steps, whose arena also holds the f32 GEMM staging of the half
// LINEARs (LinearCalls::staging_bytes): the device-free planner sizes it as compile does.
TEST(GpuEmu, ItsDeviceFreePlanOfAHalfStepIsExactlyWhatCompileAllocates) {
  for (Precision p : {Precision::bf16, Precision::f16}) {
    const Graph forward = autocast(build_forward(model_spec("seed-cnn"), 4), p);
    OptimizerConfig adam;
    Plan plan(differentiate(forward, forward.find("loss"), &adam));
    const std::optional<MemoryNeed> need = memory_need_without_device("gpu_emu", plan.c_plan());
    ASSERT_TRUE(need.has_value());
    auto backend = create_backend("gpu_emu");
    auto exe = backend->compile(plan.c_plan(), {}, nullptr);
    EXPECT_EQ(need->device_bytes, exe->memory_bytes());
  }
}

TEST(GpuEmu, AnInputWrittenOnceServesTwoExecutes) {
  GraphBuilder b;
  Value x = b.input("x", Shape{32});
  b.relu(x, "r");
  Graph g = b.take();
  Plan plan(g, {"r"});
  auto backend = create_backend("gpu_emu");
  CompileOptions poison;
  poison.poison_outputs = true;  // the temporaries are poisoned before each execute
  auto exe = backend->compile(plan.c_plan(), poison, nullptr);
  std::vector<float> in(32), out(32);
  for (int i = 0; i < 32; ++i) in[static_cast<size_t>(i)] = static_cast<float>(i - 16);
  exe->write(plan.value("x"), in.data(), in.size() * 4);
  for (int round = 0; round < 3; ++round) {
    exe->execute();
    exe->read(plan.value("r"), out.data(), out.size() * 4);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(out[static_cast<size_t>(i)], std::max(0.0f, in[static_cast<size_t>(i)]));
  }
}

TEST(GpuEmu, TheChecksFireWhenTheExecutorLeavesOutACall) {
  EXPECT_EQ(run_relu_three_times(), "");  // the executor's sequence as it is
  {
    // The compute stream no longer waits for inputs_ready: the first kernel reads the input slot
    // the copy stream wrote.
    ScopedEnv omit("PARITY_EMU_OMIT", "stream_wait");
    const std::string what = run_relu_three_times();
    std::printf("without stream_wait: %s\n", what.c_str());
    EXPECT_NE(what.find("gpu_emu: unordered_read: launch 'r'"), std::string::npos) << what;
  }
  {
    // write_value no longer waits on the host for the slot's previous copy before it rewrites the
    // slot's pinned staging memory.
    ScopedEnv omit("PARITY_EMU_OMIT", "event_sync");
    const std::string what = run_relu_three_times();
    std::printf("without event_sync: %s\n", what.c_str());
    EXPECT_NE(what.find("gpu_emu: host_write_while_queued"), std::string::npos) << what;
  }
  {
    // compile no longer waits for its zeroing of the input slots (on the compute stream) before
    // the copy stream writes the first batch into them.
    ScopedEnv omit("PARITY_EMU_OMIT", "stream_sync");
    const std::string what = run_relu_three_times();
    std::printf("without stream_sync: %s\n", what.c_str());
    EXPECT_NE(what.find("gpu_emu: unordered_write: copy host_to_device 'write_value (input slot)'"),
              std::string::npos)
        << what;
  }
  {
    // executable_destroy no longer synchronizes the streams before it frees the arena and the
    // pinned memory (a free cannot report to a caller: the runtime mapping prints it).
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(run_relu_three_times([] { ::setenv("PARITY_EMU_OMIT", "stream_sync", 1); }), "");
    ::unsetenv("PARITY_EMU_OMIT");
    const std::string printed = ::testing::internal::GetCapturedStderr();
    std::printf("without stream_sync at destroy: %s", printed.c_str());
    EXPECT_NE(printed.find("free_while_queued"), std::string::npos) << printed;
  }
  EXPECT_EQ(run_relu_three_times(), "");  // and the device is still usable
}

}  // namespace
}  // namespace parity::testing
