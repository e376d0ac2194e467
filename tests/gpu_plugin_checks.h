// tests/gpu_plugin_checks.h — what the tests of every GPU plugin (hip, cuda) check of its table
// without a device: the identity fields, every required function present, and entry points
// given NULL handles or an unknown op answering with a status and a message naming the
// backend, never a crash.
#pragma once

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "parity/plugin.h"

namespace parity::testing {

inline void expect_complete_table(const parity_backend_table* t, const char* name) {
  EXPECT_EQ(t->abi_version, static_cast<uint32_t>(PARITY_ABI_VERSION));
  EXPECT_EQ(t->struct_size, sizeof(parity_backend_table));
  EXPECT_STREQ(t->name, name);
  const void* required[] = {(const void*)t->probe,         (const void*)t->create,
                            (const void*)t->destroy,       (const void*)t->get_capabilities,
                            (const void*)t->supports,      (const void*)t->buffer_alloc,
                            (const void*)t->buffer_free,   (const void*)t->copy_host_to_device,
                            (const void*)t->copy_device_to_host, (const void*)t->copy_device_to_device,
                            (const void*)t->compile,       (const void*)t->executable_destroy,
                            (const void*)t->write_value,   (const void*)t->read_value,
                            (const void*)t->execute,       (const void*)t->synchronize,
                            (const void*)t->memory_bytes};
  for (const void* fn : required) EXPECT_NE(fn, nullptr);
}

inline void expect_null_handles_refused(const parity_backend_table* t, const char* name) {
  parity_plan plan{};
  parity_executable_t exe = nullptr;
  parity_error err{};
  EXPECT_EQ(t->compile(nullptr, &plan, 0, nullptr, &exe, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(t->execute(nullptr, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(t->synchronize(nullptr, &err), PARITY_STATUS_INVALID_ARGUMENT);
  float x = 0;
  EXPECT_EQ(t->write_value(nullptr, 0, &x, 4, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(t->read_value(nullptr, 0, &x, 4, &err), PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(err.message).find(std::string(name) + ": read_value"), std::string::npos) << err.message;
  parity_capabilities caps{};
  EXPECT_EQ(t->get_capabilities(nullptr, &caps, &err), PARITY_STATUS_INVALID_ARGUMENT);
  parity_node_desc bad{};
  std::memcpy(&bad.op, "\x7f\0\0\0", 4);
  char reason[128] = {};
  EXPECT_EQ(t->supports(nullptr, &bad, reason, sizeof reason), 0);
  EXPECT_NE(std::string(reason).find("is not one this build knows"), std::string::npos) << reason;
  EXPECT_EQ(t->supports(nullptr, nullptr, reason, sizeof reason), 0);
  if (t->set_node_hooks) {
    EXPECT_EQ(t->set_node_hooks(nullptr, nullptr, &err), PARITY_STATUS_INVALID_ARGUMENT);
  }
  void* address = &x;
  if (t->value_address) {
    EXPECT_EQ(t->value_address(nullptr, 0, &address, &err), PARITY_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find(std::string(name) + ": value_address"), std::string::npos) << err.message;
  }
  t->destroy(nullptr);
  t->executable_destroy(nullptr);
  t->buffer_free(nullptr, nullptr);
}

}  // namespace parity::testing
