// backends/registry.cpp — the backends parity knows (built in, known plugin names, and plugin
// files found on the search path), their status, and creation by name or `auto`. Every backend
// is created through its C table; an unavailable backend is an error with its reason, never a
// fallback.
#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>
#include <oneapi/tbb/info.h>

#include "backends/builtin.h"
#include "backends/loader.h"
#include "backends/backend_from_table.h"
#include "parity/error.h"

namespace parity {

void Executable::write_f64(int32_t, const double*, size_t) {
  throw Error(ErrorKind::backend, "this backend does not hold float64 values (only ref does)");
}
void Executable::read_f64(int32_t, double*, size_t) const {
  throw Error(ErrorKind::backend, "this backend does not hold float64 values (only ref does)");
}

void Executable::set_node_hooks(const std::vector<parity_hook_point>&, NodeHook) {
  throw Error(ErrorKind::backend, "this backend has no node hooks (plugin ABI 8: set_node_hooks, value_address)");
}
void* Executable::value_address(int32_t) {
  throw Error(ErrorKind::backend, "this backend has no node hooks (plugin ABI 8: set_node_hooks, value_address)");
}

std::optional<MemoryNeed> Backend::memory_need(const parity_plan&, const CompileOptions&, Executable*) const {
  return std::nullopt;
}

int hardware_threads() { return tbb::info::default_concurrency(); }

namespace {

// What `auto` tries, in order.
constexpr const char* kAutoOrder[] = {"cuda", "hip", "cpu"};

std::vector<std::string> all_names() {
  std::vector<std::string> names;
  size_t count = 0;
  const BuiltinBackend* builtins = builtin_backends(&count);
  for (size_t i = 0; i < count; ++i) names.emplace_back(builtins[i].name);
  for (const std::string& n : known_plugin_names())
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  for (const std::string& n : extra_plugin_names()) names.push_back(n);
  return names;
}

}  // namespace

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> list;
  for (const std::string& name : all_names()) {
    FoundBackend f = find_backend(name);
    BackendInfo info;
    info.name = name;
    info.available = f.table != nullptr;
    info.detail = f.detail;
    info.location = f.location;
    if (f.table) {
      try {
        info.capabilities = describe_capabilities(f.table);
      } catch (const Error& e) {
        info.available = false;
        info.detail = fmt::format("probe found a device but creating an instance failed: {}", e.what());
      }
    }
    list.push_back(std::move(info));
  }
  return list;
}

std::string default_backend_name() {
  const char* env = std::getenv("PARITY_BACKEND");
  return env && *env ? std::string(env) : std::string("auto");
}

namespace {
// An unknown name is the caller's mistake: the list of names, and how a plugin is found.
[[noreturn]] void unknown_backend(const std::string& name) {
  std::string names;
  for (const std::string& n : all_names()) names += n + ", ";
  throw Error(ErrorKind::invalid_argument,
              fmt::format("unknown backend '{}': choose one of {}auto (a plugin is found as libparity-backend-{}.so "
                          "on PARITY_BACKEND_PATH)",
                          name, names, name));
}
}  // namespace

std::optional<MemoryNeed> memory_need_without_device(const std::string& name, const parity_plan& plan,
                                                     const CompileOptions& options) {
  const FoundBackend f = find_backend(name);
  if (!f.known) unknown_backend(name);
  return memory_need_from_table_without_device(f.checked_table, plan, options);
}

std::unique_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options) {
  if (options.threads < 0)
    throw Error(ErrorKind::invalid_argument, fmt::format("threads must be >= 0 (0 = all), got {}", options.threads));
  if (options.device < 0)
    throw Error(ErrorKind::invalid_argument, fmt::format("device must be >= 0, got {}", options.device));
  if (name == "auto") {
    std::string why;
    for (const char* candidate : kAutoOrder) {
      FoundBackend f = find_backend(candidate);
      if (f.table) return make_backend_from_table(f.table, options);
      why += fmt::format("{}{}: {}", why.empty() ? "" : "; ", candidate, f.detail);
    }
    throw Error(ErrorKind::backend, fmt::format("backend 'auto' found none of cuda, hip, cpu usable: {}", why));
  }
  FoundBackend f = find_backend(name);
  if (!f.known) unknown_backend(name);
  if (!f.table) throw Error(ErrorKind::backend, fmt::format("backend '{}' is unavailable: {}", name, f.detail));
  return make_backend_from_table(f.table, options);
}

std::vector<std::string> resolve_backend_list(const std::string& list) {
  std::vector<std::string> names;
  if (list == "all") {
    for (const BackendInfo& b : list_backends())
      if (b.available) names.push_back(b.name);
    return names;
  }
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    start = comma + 1;
    if (name.empty())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("backend list '{}' has an empty name: write names separated by single commas, or all", list));
    const std::string resolved = create_backend(name)->name();  // the same errors as a single --backend
    if (std::find(names.begin(), names.end(), resolved) == names.end()) names.push_back(resolved);
  }
  return names;
}

}  // namespace parity
