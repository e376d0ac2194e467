// util/host_memory.cpp — reading MemAvailable and the cgroup memory limit (v2 and v1) of this
// process.
#include "util/host_memory.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "parity/error.h"

namespace parity {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A limit file's number; nullopt for "max", an unreadable file, or a value so large it means
// "no limit" (cgroup v1 writes 2^63 rounded down to a page).
std::optional<int64_t> read_limit(const std::string& path) {
  const std::string text = read_text(path);
  if (text.empty() || text.rfind("max", 0) == 0) return std::nullopt;
  try {
    const long long value = std::stoll(text);
    if (value < 0 || value >= (int64_t{1} << 60)) return std::nullopt;
    return value;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

HostMemory host_memory_from(const std::string& meminfo, std::optional<int64_t> cgroup_limit,
                            std::optional<int64_t> cgroup_usage, const std::string& cgroup_file) {
  std::istringstream lines(meminfo);
  std::string line;
  std::optional<int64_t> available;
  while (std::getline(lines, line)) {
    long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kib) == 1) available = int64_t{kib} * 1024;
  }
  if (!available) throw Error(ErrorKind::io, "/proc/meminfo has no MemAvailable line");
  HostMemory m{*available, "MemAvailable"};
  if (cgroup_limit) {
    const int64_t left = std::max<int64_t>(0, *cgroup_limit - cgroup_usage.value_or(0));
    if (left < m.available_bytes)
      m = {left, fmt::format("the cgroup's {} {} less its usage {}", cgroup_file, *cgroup_limit, cgroup_usage.value_or(0))};
  }
  return m;
}

HostMemory available_host_memory() {
  // /proc/self/cgroup: "0::/path" (v2) or "N:memory:/path" (v1, memory controller).
  std::optional<int64_t> limit, usage;
  std::string file = "memory.max";
  std::istringstream groups(read_text("/proc/self/cgroup"));
  std::string line;
  while (std::getline(groups, line) && !limit) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1), path = line.substr(second + 1);
    // A process in a cgroup namespace sees its own group at the mount's root.
    for (const std::string& dir : {std::string("/sys/fs/cgroup"), std::string("/sys/fs/cgroup/memory")}) {
      const bool v2 = controllers.empty() && dir == "/sys/fs/cgroup";
      const bool v1 = controllers == "memory" && dir == "/sys/fs/cgroup/memory";
      if (!v2 && !v1) continue;
      const std::string limit_name = v2 ? "memory.max" : "memory.limit_in_bytes";
      const std::string usage_name = v2 ? "memory.current" : "memory.usage_in_bytes";
      for (const std::string& group : {dir + path, dir}) {
        if (read_text(group + "/" + limit_name).empty()) continue;
        limit = read_limit(group + "/" + limit_name);
        usage = read_limit(group + "/" + usage_name);
        file = limit_name;
        break;
      }
    }
  }
  return host_memory_from(read_text("/proc/meminfo"), limit, usage, file);
}

std::string format_bytes(int64_t bytes) {
  const double gib = static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0);
  if (gib >= 1.0) return fmt::format("{:.2f} GiB ({} bytes)", gib, bytes);
  return fmt::format("{:.1f} MiB ({} bytes)", static_cast<double>(bytes) / (1024.0 * 1024.0), bytes);
}

}  // namespace parity
