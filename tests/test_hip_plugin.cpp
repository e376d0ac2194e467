// tests/test_hip_plugin.cpp — libparity-backend-hip.so (built by hipcc for gfx90a and gfx1030)
// loads, exports its entry points, and its probe either names a device or says why there is
// none: on the machines this project is built on, "no HIP device (hipErrorNoDevice)".
#include <dlfcn.h>

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "backends/hip/hip_plugin.h"
#include "backends/native/native_ops.h"
#include "parity/plugin.h"

namespace {

TEST(HipPlugin, LoadsAndReportsWhyItIsUnavailable) {
  void* lib = dlopen(PARITY_HIP_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto abi = reinterpret_cast<decltype(&parity_backend_hip_abi_version)>(dlsym(lib, "parity_backend_hip_abi_version"));
  auto probe = reinterpret_cast<decltype(&parity_backend_hip_probe)>(dlsym(lib, "parity_backend_hip_probe"));
  auto ops = reinterpret_cast<decltype(&parity_backend_hip_native_ops)>(dlsym(lib, "parity_backend_hip_native_ops"));
  ASSERT_TRUE(abi && probe && ops) << "an entry point is missing";
  EXPECT_EQ(abi(), PARITY_ABI_VERSION);
  char message[256];
  const int available = probe(message, sizeof message);
  std::printf("hip: %s: %s\n", available ? "available" : "unavailable", message);
  if (!available) {
    EXPECT_EQ(std::string(message).rfind("no HIP device (", 0), 0u) << message;
  }
  const auto* table = static_cast<const parity::native::NativeOps*>(ops());
  ASSERT_NE(table, nullptr);
  EXPECT_STREQ(table->target, "hip");
  EXPECT_NE(table->conv2d_forward, nullptr);
  EXPECT_NE(table->sgd_step, nullptr);
  // Not dlclose'd: the HIP runtime registers atexit handlers.
}

}  // namespace
