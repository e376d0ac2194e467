// tests/test_backend_kit.cpp — the backend kit's ABI edge: statuses and messages that cross a
// table function, truncation of copied messages, and an I/O error kept as I/O both ways.
#include <cmath>
#include <cstring>
#include <vector>
#include <new>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "backends/backend_from_table.h"
#include "backends/kit/abi_guard.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/poison.h"
#include "backends/native/plugin_support.h"
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

parity_value_desc value(const char* name, parity_value_kind kind, parity_dtype dtype, int64_t rows, int64_t cols) {
  parity_value_desc v{};
  std::strncpy(v.name, name, sizeof v.name - 1);
  v.kind = kind;
  v.dtype = dtype;
  v.rank = 2;
  v.dims[0] = rows;
  v.dims[1] = cols;
  v.bytes = rows * cols * 4;
  return v;
}

TEST(BackendKit, PersistentStoreSharesByNameAndRefusesAnotherShape) {
  kit::PersistentStore<int> store;
  int made = 0;
  const auto make = [&] { return std::make_shared<int>(++made); };
  const auto refuse = [](const parity_value_desc& kept) {
    throw std::runtime_error("kept " + std::to_string(kept.dims[0]) + "x" + std::to_string(kept.dims[1]));
  };
  const auto w = store.bind(value("w", PARITY_VALUE_PARAM, PARITY_F32, 2, 3), make, refuse);
  EXPECT_EQ(store.bind(value("w", PARITY_VALUE_PARAM, PARITY_F32, 2, 3), make, refuse), w);
  EXPECT_NE(store.bind(value("m", PARITY_VALUE_STATE, PARITY_F32, 2, 3), make, refuse), w);
  EXPECT_EQ(made, 2);
  try {
    store.bind(value("w", PARITY_VALUE_PARAM, PARITY_F32, 3, 2), make, refuse);
    FAIL() << "a shape mismatch should have been refused";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "kept 2x3");
  }
  EXPECT_THROW(store.bind(value("w", PARITY_VALUE_PARAM, PARITY_I32, 2, 3), make, refuse), std::runtime_error);
  int sum = 0;
  store.for_each([&](int entry) { sum += entry; });
  EXPECT_EQ(sum, 3);
  EXPECT_TRUE(kit::is_persistent(PARITY_VALUE_PARAM));
  EXPECT_TRUE(kit::is_persistent(PARITY_VALUE_STATE));
  EXPECT_FALSE(kit::is_persistent(PARITY_VALUE_TEMP));
  EXPECT_FALSE(kit::is_persistent(PARITY_VALUE_INPUT));
}

TEST(BackendKit, PoisonReachesEveryTemporaryAndNothingElse) {
  const std::vector<parity_value_desc> values = {
      value("x", PARITY_VALUE_INPUT, PARITY_F32, 2, 2), value("h", PARITY_VALUE_TEMP, PARITY_F32, 2, 3),
      value("w", PARITY_VALUE_PARAM, PARITY_F32, 1, 1), value("k", PARITY_VALUE_TEMP, PARITY_I32, 1, 5)};
  std::vector<std::vector<int64_t>> filled;
  kit::poison_temps(values, [&](size_t i, int64_t count, uint32_t bits) {
    filled.push_back({static_cast<int64_t>(i), count, static_cast<int64_t>(bits)});
  });
  const std::vector<std::vector<int64_t>> expected = {{1, 6, 0x7fc00000}, {3, 5, 0x7fffffff}};
  EXPECT_EQ(filled, expected);
  float nan_bits;
  const uint32_t bits = kit::poison_bits32(PARITY_F32);
  std::memcpy(&nan_bits, &bits, 4);
  EXPECT_TRUE(std::isnan(nan_bits));
  EXPECT_TRUE(std::isnan(kit::poison_value<float>()));
  EXPECT_TRUE(std::isnan(kit::poison_value<double>()));
  EXPECT_EQ(kit::poison_value<int32_t>(), 0x7fffffff);
}

// The status and message a plugin-side check fails with.
template <class Check>
std::pair<parity_status, std::string> failure_of(Check&& check) {
  try {
    check();
  } catch (const kit::AbiError& e) {
    return {e.status, e.what()};
  }
  return {PARITY_OK, ""};
}

TEST(BackendKit, HostWritesAndReadsOfAValueAreChecked) {
  parity_value_desc kept = value("loss", PARITY_VALUE_TEMP, PARITY_F32, 1, 1);
  kept.keep = 1;
  const std::vector<parity_value_desc> values = {value("x", PARITY_VALUE_INPUT, PARITY_F32, 2, 2),
                                                 value("h", PARITY_VALUE_TEMP, PARITY_F32, 2, 3), kept};
  EXPECT_STREQ(native::value_to_write("t", values, 0, 16).name, "x");
  EXPECT_STREQ(native::value_to_read("t", values, 2, 4).name, "loss");
  const auto no_value = failure_of([&] { native::value_to_write("t", values, 3, 16); });
  EXPECT_EQ(no_value.first, PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(no_value.second, "t: write of value 3: no such value, the plan has 3");
  const auto temp = failure_of([&] { native::value_to_write("t", values, 1, 24); });
  EXPECT_EQ(temp.second, "t: write to value 'h' refused: only INPUT, PARAM and STATE values can be written");
  const auto size = failure_of([&] { native::value_to_write("t", values, 0, 12); });
  EXPECT_EQ(size.second, "t: write to value 'x' [2,2] needs 16 bytes, got 12");
  const auto unkept = failure_of([&] { native::value_to_read("t", values, 1, 24); });
  EXPECT_EQ(unkept.second, "t: read of value 'h' refused: it is a TEMP value the plan did not mark keep");
}

}  // namespace
}  // namespace parity
