// util/host_memory.h — how much memory this process may still take: the smaller of the kernel's
// MemAvailable and what is left under the process's cgroup memory limit (v2 memory.max or v1
// memory.limit_in_bytes, less the cgroup's current usage).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace parity {

struct HostMemory {
  int64_t available_bytes = 0;  // the smaller of the two below that is known
  std::string source;           // what bounded it, for messages: "MemAvailable" or "cgroup memory.max ..."
};

// From the text of /proc/meminfo and the cgroup's limit and usage in bytes (nullopt: none, or
// unlimited). Throws Error(io) when meminfo has no MemAvailable line.
HostMemory host_memory_from(const std::string& meminfo, std::optional<int64_t> cgroup_limit,
                            std::optional<int64_t> cgroup_usage, const std::string& cgroup_file = "memory.max");

// This process's, read now from /proc and /sys/fs/cgroup.
HostMemory available_host_memory();

// "1.50 GiB (1610612736 bytes)"
std::string format_bytes(int64_t bytes);

}  // namespace parity
