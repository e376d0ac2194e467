// tests/test_hip_plugin.cpp — libparity-backend-hip.so (built by hipcc for gfx90a and gfx1030)
// goes through the loader like any plugin: it exports parity_backend_entry() with this ABI
// version and a complete table, and its probe says why it cannot run. On the machines this
// project is built on (no AMD GPU) that is "no HIP device (hipErrorNoDevice)", and creating the
// backend is an error carrying that reason. The entry points that need no device refuse bad
// arguments with a status, not a crash. Nothing here runs a kernel.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "parity/parity.h"
#include "parity/plugin.h"
#include "tests/gpu_plugin_checks.h"

namespace parity {
namespace {

constexpr const char* kNoDevice = "no HIP device (hipErrorNoDevice)";

TEST(HipPlugin, LoaderProbesItAndReportsWhyItIsUnavailable) {
  BackendInfo hip;
  for (BackendInfo& b : list_backends())
    if (b.name == "hip") hip = b;
  ASSERT_EQ(hip.name, "hip") << "list_backends() lacks hip";
  std::printf("hip: %s: %s (%s)\n", hip.available ? "available" : "unavailable", hip.detail.c_str(),
              hip.location.c_str());
  EXPECT_NE(hip.location.find("libparity-backend-hip.so"), std::string::npos) << hip.location;
  ASSERT_FALSE(hip.available) << "this test expects a machine without an AMD GPU; found " << hip.detail;
  EXPECT_NE(hip.detail.find(kNoDevice), std::string::npos) << hip.detail;
  try {
    create_backend("hip");
    ADD_FAILURE() << "create_backend(\"hip\") succeeded without a device";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::backend) << e.what();
    EXPECT_NE(std::string(e.what()).find(kNoDevice), std::string::npos) << e.what();
  }
}

// The table itself, through dlopen as the loader sees it.
TEST(HipPlugin, TableIsCompleteAndRefusesBadArguments) {
  void* lib = dlopen(PARITY_HIP_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto entry = reinterpret_cast<parity_backend_entry_fn>(dlsym(lib, PARITY_BACKEND_ENTRY_SYMBOL));
  ASSERT_NE(entry, nullptr) << "no " << PARITY_BACKEND_ENTRY_SYMBOL;
  const parity_backend_table* t = entry();
  ASSERT_NE(t, nullptr);
  testing::expect_complete_table(t, "hip");

  parity_probe_result probe{};
  parity_error err{};
  ASSERT_EQ(t->probe(&probe, &err), PARITY_OK) << err.message;
  EXPECT_EQ(probe.device_count, 0);
  EXPECT_EQ(probe.reason, PARITY_UNAVAILABLE_NO_DEVICE);
  EXPECT_STREQ(probe.detail, kNoDevice);

  // create: the HIP error, named with the call, file and line, as a status.
  parity_backend_config config{sizeof(parity_backend_config), 0, 0, nullptr};
  parity_backend_t backend = nullptr;
  err = {};
  EXPECT_EQ(t->create(&config, &backend, &err), PARITY_STATUS_DEVICE);
  EXPECT_EQ(backend, nullptr);
  EXPECT_NE(std::string(err.message).find("hipGetDeviceCount(&count) failed at "), std::string::npos) << err.message;
  EXPECT_NE(std::string(err.message).find("hipErrorNoDevice"), std::string::npos) << err.message;

  // Entry points given NULL handles answer with a status (no exception, no crash).
  testing::expect_null_handles_refused(t, "hip");
  // Not dlclose'd: the HIP runtime registers atexit handlers.
}

}  // namespace
}  // namespace parity
