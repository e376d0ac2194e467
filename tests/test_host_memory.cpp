// tests/test_host_memory.cpp — util/host_memory: MemAvailable and the cgroup limit, whichever is
// smaller, and the message parts.
#include <gtest/gtest.h>

#include "parity/error.h"
#include "util/host_memory.h"

namespace parity {
namespace {

const char* kMeminfo =
    "MemTotal:       24576000 kB\n"
    "MemFree:         1000000 kB\n"
    "MemAvailable:   20000000 kB\n";

TEST(HostMemory, MemAvailableWhenThereIsNoCgroupLimit) {
  const HostMemory m = host_memory_from(kMeminfo, std::nullopt, std::nullopt);
  EXPECT_EQ(m.available_bytes, int64_t{20000000} * 1024);
  EXPECT_EQ(m.source, "MemAvailable");
}

TEST(HostMemory, TheCgroupLimitLessItsUsageWhenSmaller) {
  const HostMemory m = host_memory_from(kMeminfo, int64_t{8} << 30, int64_t{1} << 30, "memory.max");
  EXPECT_EQ(m.available_bytes, int64_t{7} << 30);
  EXPECT_NE(m.source.find("memory.max"), std::string::npos) << m.source;
  // A limit above MemAvailable changes nothing; usage above the limit leaves 0, never less.
  EXPECT_EQ(host_memory_from(kMeminfo, int64_t{1} << 40, 0).source, "MemAvailable");
  EXPECT_EQ(host_memory_from(kMeminfo, int64_t{1} << 20, int64_t{2} << 20).available_bytes, 0);
}

TEST(HostMemory, MeminfoWithoutMemAvailableIsAnIoError) {
  try {
    host_memory_from("MemTotal: 1 kB\n", std::nullopt, std::nullopt);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
  }
}

TEST(HostMemory, ThisProcessHasSomeMemoryAndSaysWhatBoundsIt) {
  const HostMemory m = available_host_memory();
  EXPECT_GT(m.available_bytes, 0);
  EXPECT_FALSE(m.source.empty());
}

TEST(HostMemory, BytesAreFormattedWithTheExactCount) {
  EXPECT_EQ(format_bytes(int64_t{3} << 29), "1.50 GiB (1610612736 bytes)");
  EXPECT_EQ(format_bytes(1048576), "1.0 MiB (1048576 bytes)");
}

}  // namespace
}  // namespace parity
