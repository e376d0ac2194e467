// tests/test_backend_kit.cpp — the backend kit's ABI edge: statuses and messages that cross a
// table function, truncation of copied messages, and an I/O error kept as I/O both ways.
#include <cstring>
#include <new>
#include <string>

#include <gtest/gtest.h>

#include "backends/backend_from_table.h"
#include "backends/kit/abi_guard.h"
#include "backends/table_from_backend.h"
#include "parity/error.h"

namespace parity {
namespace {

std::unique_ptr<Backend> make_unreadable(const BackendOptions&) {
  throw Error(ErrorKind::io, "unreadable: cannot open 'weights.bin'");
}

const AdaptedBackendSpec unreadable_spec{"unreadable", "a backend whose creation fails reading a file",
                                         make_unreadable, PARITY_DTYPE_BIT(PARITY_F32), 0};

parity_status unreadable_probe(parity_probe_result* out, parity_error*) {
  return adapted_host_probe(unreadable_spec, out);
}
parity_status unreadable_create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(unreadable_spec, config, out, err);
}

TEST(BackendKit, IoErrorCrossesTheAbiAsIo) {
  const parity_backend_table table = make_adapted_table(unreadable_spec, unreadable_probe, unreadable_create);
  parity_backend_t handle = nullptr;
  parity_error err{};
  EXPECT_EQ(table.create(nullptr, &handle, &err), PARITY_STATUS_IO);
  EXPECT_EQ(err.status, PARITY_STATUS_IO);
  EXPECT_STREQ(err.message, "unreadable: cannot open 'weights.bin'");
  EXPECT_EQ(handle, nullptr);
}

TEST(BackendKit, IoStatusComesBackAsIoError) {
  static const parity_backend_table table = make_adapted_table(unreadable_spec, unreadable_probe, unreadable_create);
  try {
    make_backend_from_table(&table, BackendOptions{});
    FAIL() << "create should have thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_STREQ(e.what(), "unreadable: cannot open 'weights.bin'");
  }
}

TEST(BackendKit, GuardKeepsStatusAndMessage) {
  parity_error err{};
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { kit::abi_fail(PARITY_STATUS_SHAPE, "x: bad"); },
                         [](const std::exception&, parity_status&, std::string&) {}),
            PARITY_STATUS_SHAPE);
  EXPECT_STREQ(err.message, "x: bad");
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { throw std::bad_alloc(); },
                         [](const std::exception&, parity_status&, std::string&) {}),
            PARITY_STATUS_OUT_OF_MEMORY);
  EXPECT_STREQ(err.message, "x: out of host memory");
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { throw 7; }, [](const std::exception&, parity_status&, std::string&) {}),
            PARITY_STATUS_INTERNAL);
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { throw std::runtime_error("launch failed"); },
                         [](const std::exception& e, parity_status& status, std::string& message) {
                           status = PARITY_STATUS_DEVICE;
                           message = std::string("x: ") + e.what();
                         }),
            PARITY_STATUS_DEVICE);
  EXPECT_STREQ(err.message, "x: launch failed");
  EXPECT_EQ(kit::guarded(&err, "x: ", [] {}, [](const std::exception&, parity_status&, std::string&) {}), PARITY_OK);
}

TEST(BackendKit, CopyMessageTruncatesAndTerminates) {
  char small[4] = {'a', 'a', 'a', 'a'};
  kit::copy_message(small, sizeof small, "abcdef");
  EXPECT_STREQ(small, "abc");
  kit::copy_message(small, 0, "zzz");  // nothing to write into
  EXPECT_STREQ(small, "abc");
}

}  // namespace
}  // namespace parity
