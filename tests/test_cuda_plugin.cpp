// tests/test_cuda_plugin.cpp — libparity-backend-cuda.so (nvcc, cuDNN 9, cuBLAS) goes through the
// loader like any plugin: it exports parity_backend_entry() with this ABI version and a complete
// table, and its probe says why it cannot run. On the machines this project is built on there
// is no NVIDIA driver (libcuda.so.1 is absent; the CUDA runtime answers
// cudaErrorInsufficientDriver), and creating the backend is an error carrying that reason.
// Entry points given bad arguments answer with a status, not a crash. Its device-free planner
// (memory_need_without_device) answers. Nothing here runs a kernel: the plugin's device code has
// never been executed in this project's CI.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "model/autocast.h"
#include "model/model_summary.h"
#include "parity/parity.h"
#include "parity/plugin.h"
#include "tests/gpu_plugin_checks.h"

namespace parity {
namespace {

bool libcuda_present() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib) dlclose(lib);
  return lib != nullptr;
}

TEST(CudaPlugin, LoaderProbesItAndReportsWhyItIsUnavailable) {
  BackendInfo cuda;
  for (BackendInfo& b : list_backends())
    if (b.name == "cuda") cuda = b;
  ASSERT_EQ(cuda.name, "cuda") << "list_backends() lacks cuda";
  std::printf("cuda: %s: %s (%s)\n", cuda.available ? "available" : "unavailable", cuda.detail.c_str(),
              cuda.location.c_str());
  EXPECT_NE(cuda.location.find("libparity-backend-cuda.so"), std::string::npos) << cuda.location;
  if (libcuda_present()) GTEST_SKIP() << "an NVIDIA driver is installed here: " << cuda.detail;
  ASSERT_FALSE(cuda.available) << cuda.detail;
  EXPECT_NE(cuda.detail.find("the NVIDIA driver library libcuda.so.1 cannot be loaded"), std::string::npos) << cuda.detail;
  try {
    create_backend("cuda");
    ADD_FAILURE() << "create_backend(\"cuda\") succeeded without a driver";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::backend) << e.what();
    EXPECT_NE(std::string(e.what()).find("libcuda.so.1 cannot be loaded"), std::string::npos) << e.what();
  }
}

TEST(CudaPlugin, TableIsCompleteAndRefusesBadArguments) {
  void* lib = dlopen(PARITY_CUDA_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto entry = reinterpret_cast<parity_backend_entry_fn>(dlsym(lib, PARITY_BACKEND_ENTRY_SYMBOL));
  ASSERT_NE(entry, nullptr) << "no " << PARITY_BACKEND_ENTRY_SYMBOL;
  const parity_backend_table* t = entry();
  ASSERT_NE(t, nullptr);
  testing::expect_complete_table(t, "cuda");
  EXPECT_EQ(t->write_value_f64, nullptr);  // float64 access is ref's alone

  parity_probe_result probe{};
  parity_error err{};
  ASSERT_EQ(t->probe(&probe, &err), PARITY_OK) << err.message;
  std::printf("probe: reason %d, %s\n", static_cast<int>(probe.reason), probe.detail);
  if (libcuda_present()) GTEST_SKIP() << "an NVIDIA driver is installed here: " << probe.detail;
  EXPECT_EQ(probe.device_count, 0);
  EXPECT_EQ(probe.reason, PARITY_UNAVAILABLE_NO_DRIVER);
  EXPECT_NE(std::string(probe.detail).find("cudaErrorInsufficientDriver"), std::string::npos) << probe.detail;

  parity_backend_config config{sizeof(parity_backend_config), 0, 0, nullptr};
  parity_backend_t backend = nullptr;
  err = {};
  EXPECT_EQ(t->create(&config, &backend, &err), PARITY_STATUS_DEVICE);
  EXPECT_EQ(backend, nullptr);
  EXPECT_NE(std::string(err.message).find("cuda: unavailable: the NVIDIA driver library libcuda.so.1"), std::string::npos) << err.message;

  // Entry points given NULL handles answer with a status (no exception, no crash).
  testing::expect_null_handles_refused(t, "cuda");
}

// ABI 4: the plugin plans a training step without a device, from the same steps and arena
// layout its compile uses. The convolution workspace is counted at PARITY_CUDA_WORKSPACE_MB's
// limit and sits last in the arena, so two limits differ by exactly their difference; the rest
// covers at least the plan's arena, both input slots, cuBLAS's 32 MiB and the persistent values.
TEST(CudaPlugin, PlansATrainingStepWithoutADevice) {
  const ModelSpec& spec = model_spec("seed-cnn");
  Plan plan(build_training_step(spec, 64, OptimizerConfig{}), {"loss", "correct"});
  const parity_plan c = plan.c_plan();
  int64_t inputs = 0, i32_inputs = 0, persistent = 0;
  for (int32_t i = 0; i < c.num_values; ++i) {
    const parity_value_desc& v = c.values[i];
    if (v.kind == PARITY_VALUE_INPUT) inputs += v.bytes;
    if (v.kind == PARITY_VALUE_INPUT && v.dtype == PARITY_I32) i32_inputs += v.bytes;
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) persistent += v.bytes;
  }
  ::setenv("PARITY_CUDA_WORKSPACE_MB", "64", 1);
  const std::optional<MemoryNeed> at64 = memory_need_without_device("cuda", c);
  ::setenv("PARITY_CUDA_WORKSPACE_MB", "0", 1);
  const std::optional<MemoryNeed> at0 = memory_need_without_device("cuda", c);
  ::unsetenv("PARITY_CUDA_WORKSPACE_MB");
  ASSERT_TRUE(at64.has_value() && at0.has_value());
  std::printf("seed-cnn batch 64 without a device: %lld device bytes at 64 MiB of workspace, %lld host bytes\n",
              static_cast<long long>(at64->device_bytes), static_cast<long long>(at64->host_bytes));
  EXPECT_EQ(at64->device_bytes - at0->device_bytes, int64_t{64} << 20);
  EXPECT_GE(at0->device_bytes, c.arena_bytes + 2 * inputs + (int64_t{32} << 20) + persistent);
  EXPECT_LT(at0->device_bytes, c.arena_bytes + 2 * inputs + (int64_t{32} << 20) + persistent + (int64_t{1} << 20));
  EXPECT_GE(at64->host_bytes, 2 * inputs + i32_inputs);  // pinned slots and the labels' host copies
  EXPECT_LT(at64->host_bytes, 2 * inputs + i32_inputs + 16 * 256);

  // Refusals: what compile would refuse, and an option it cannot read.
  std::vector<parity_node_desc> nodes(c.nodes, c.nodes + c.num_nodes);
  nodes[0].inputs[0] = c.num_values + 5;
  parity_plan broken = c;
  broken.nodes = nodes.data();
  try {
    memory_need_without_device("cuda", broken);
    ADD_FAILURE() << "a plan reading a value out of range planned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
  ::setenv("PARITY_CUDA_WORKSPACE_MB", "lots", 1);
  try {
    memory_need_without_device("cuda", c);
    ADD_FAILURE() << "PARITY_CUDA_WORKSPACE_MB=lots was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("PARITY_CUDA_WORKSPACE_MB='lots'"), std::string::npos) << e.what();
  }
  ::unsetenv("PARITY_CUDA_WORKSPACE_MB");
}

// The plugin lists bf16 and f16 (libparity would refuse a half plan before it reached the plugin
// otherwise) and plans a half autocast step without a device, with the f32 GEMM staging of its
// half LINEARs (fc1's [64, 128] f32 result, the largest) in the arena on top of the regions an f32
// step has.
TEST(CudaPlugin, PlansAHalfAutocastStepWithoutADevice) {
  for (Precision p : {Precision::bf16, Precision::f16}) {
    const Graph forward = autocast(build_forward(model_spec("seed-cnn"), 64), p);
    OptimizerConfig adam;
    Plan plan(differentiate(forward, forward.find("loss"), &adam));
    const parity_plan c = plan.c_plan();
    int64_t inputs = 0, persistent = 0;
    for (int32_t i = 0; i < c.num_values; ++i) {
      const parity_value_desc& v = c.values[i];
      if (v.kind == PARITY_VALUE_INPUT) inputs += v.bytes;
      if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) persistent += v.bytes;
    }
    ::setenv("PARITY_CUDA_WORKSPACE_MB", "0", 1);
    const std::optional<MemoryNeed> need = memory_need_without_device("cuda", c);
    ::unsetenv("PARITY_CUDA_WORKSPACE_MB");
    ASSERT_TRUE(need.has_value());
    const int64_t staging = 64 * 128 * 4, at_least = c.arena_bytes + 2 * inputs + (int64_t{32} << 20) + persistent;
    // Above that, the native workspace: the half nodes on the native kernels (the forward
    // convolutions, which have a bias) widen their operands into f32 staging there.
    EXPECT_GE(need->device_bytes, at_least + staging);
    std::printf("seed-cnn batch 64 %s without a device: %lld device bytes (%lld above the f32-shaped regions)\n",
                p == Precision::bf16 ? "bf16" : "fp16", static_cast<long long>(need->device_bytes),
                static_cast<long long>(need->device_bytes - at_least));
  }
}

}  // namespace
}  // namespace parity
