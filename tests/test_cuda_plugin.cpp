// tests/test_cuda_plugin.cpp — libparity-backend-cuda.so (nvcc, cuDNN 9, cuBLAS) goes through the
// loader like any plugin: it exports parity_backend_entry() with this ABI version and a complete
// table, and its probe says why it cannot run. On the machines this project is built on there
// is no NVIDIA driver (libcuda.so.1 is absent; the CUDA runtime answers
// cudaErrorInsufficientDriver), and creating the backend is an error carrying that reason.
// Entry points given bad arguments answer with a status, not a crash. Nothing here runs a
// kernel: the plugin has never been executed in this project's CI.
#include <dlfcn.h>

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace parity
