// backends/loader.cpp — finding, opening and checking backends. A plugin that cannot be used is
// reported with the exact reason (not built, file not found, dlopen's message, missing entry
// point, ABI mismatch with both versions, missing functions, the probe's reason) and never used.
#include "backends/loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "backends/builtin.h"

// Set by CMake for this file: whether each GPU backend was configured, and why (not paths).
#ifndef PARITY_CUDA_BUILD_NOTE
#define PARITY_CUDA_BUILD_NOTE "not built: PARITY_WITH_CUDA is OFF"
#endif
#ifndef PARITY_HIP_BUILD_NOTE
#define PARITY_HIP_BUILD_NOTE "not built: PARITY_WITH_HIP is OFF"
#endif
#ifndef PARITY_EXE_TO_PLUGINS
#define PARITY_EXE_TO_PLUGINS "../lib/parity"
#endif
#ifndef PARITY_SIMT_BUILD_NOTE
#define PARITY_SIMT_BUILD_NOTE "not built: this tree has no backends/simt yet"
#endif
#ifndef PARITY_ONEDNN_BUILD_NOTE
#define PARITY_ONEDNN_BUILD_NOTE "not built: this tree has no backends/onednn yet"
#endif
#ifndef PARITY_GPU_EMU_BUILD_NOTE
#define PARITY_GPU_EMU_BUILD_NOTE "not built"
#endif

namespace parity {
namespace {

constexpr const char* kPrefix = "libparity-backend-";
constexpr const char* kSuffix = ".so";

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string folder_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// The file libparity's code lives in: libparity.so in shared builds, the executable in static ones.
std::string own_object_path() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&plugin_search_folders), &info) && info.dli_fname && info.dli_fname[0]) {
    std::string path = info.dli_fname;
    if (path.find('/') != std::string::npos) {
      std::error_code ec;
      const std::filesystem::path canonical = std::filesystem::weakly_canonical(path, ec);
      return ec ? path : canonical.string();
    }
  }
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

const char* build_note(const std::string& name) {
  if (name == "cuda") return PARITY_CUDA_BUILD_NOTE;
  if (name == "hip") return PARITY_HIP_BUILD_NOTE;
  if (name == "simt") return PARITY_SIMT_BUILD_NOTE;
  if (name == "onednn") return PARITY_ONEDNN_BUILD_NOTE;
  if (name == "gpu_emu") return PARITY_GPU_EMU_BUILD_NOTE;
  return nullptr;
}

const char* reason_words(parity_unavailable_reason r) {
  switch (r) {
    case PARITY_AVAILABLE: return "available";
    case PARITY_UNAVAILABLE_NO_DRIVER: return "no driver";
    case PARITY_UNAVAILABLE_DRIVER_TOO_OLD: return "driver too old";
    case PARITY_UNAVAILABLE_NO_DEVICE: return "no device";
    case PARITY_UNAVAILABLE_DEVICE_TOO_OLD: return "device too old";
    case PARITY_UNAVAILABLE_OTHER: break;
  }
  return "unavailable";
}

std::string c_string(const char* s, size_t capacity) { return std::string(s, strnlen(s, capacity)); }

// The required functions a table lacks, by name.
std::string missing_functions(const parity_backend_table& t) {
  std::string missing;
  auto need = [&missing](const void* fn, const char* name) {
    if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
  need(reinterpret_cast<const void*>(t.probe), "probe");
  need(reinterpret_cast<const void*>(t.create), "create");
  need(reinterpret_cast<const void*>(t.destroy), "destroy");
  need(reinterpret_cast<const void*>(t.get_capabilities), "get_capabilities");
  need(reinterpret_cast<const void*>(t.supports), "supports");
  need(reinterpret_cast<const void*>(t.buffer_alloc), "buffer_alloc");
  need(reinterpret_cast<const void*>(t.buffer_free), "buffer_free");
  need(reinterpret_cast<const void*>(t.copy_host_to_device), "copy_host_to_device");
  need(reinterpret_cast<const void*>(t.copy_device_to_host), "copy_device_to_host");
  need(reinterpret_cast<const void*>(t.copy_device_to_device), "copy_device_to_device");
  need(reinterpret_cast<const void*>(t.compile), "compile");
  need(reinterpret_cast<const void*>(t.executable_destroy), "executable_destroy");
  need(reinterpret_cast<const void*>(t.write_value), "write_value");
  need(reinterpret_cast<const void*>(t.read_value), "read_value");
  need(reinterpret_cast<const void*>(t.execute), "execute");
  need(reinterpret_cast<const void*>(t.synchronize), "synchronize");
  need(reinterpret_cast<const void*>(t.memory_bytes), "memory_bytes");
  return missing;
}

// Probes a table; fills `found` as usable or with the probe's reason.
void probe_into(const parity_backend_table* table, FoundBackend& found) {
  found.checked_table = table;
  parity_probe_result probe{};
  parity_error err{};
  const parity_status status = table->probe(&probe, &err);
  if (status != PARITY_OK) {
    found.detail = fmt::format("probe failed: {}", c_string(err.message, sizeof err.message));
    return;
  }
  const std::string detail = c_string(probe.detail, sizeof probe.detail);
  if (probe.device_count <= 0 || probe.reason != PARITY_AVAILABLE) {
    found.detail = fmt::format("{}: {}", probe.reason == PARITY_AVAILABLE ? "no device" : reason_words(probe.reason),
                               detail.empty() ? "(the probe gave no detail)" : detail);
    return;
  }
  found.table = table;
  found.detail = probe.device_count == 1 ? detail : fmt::format("{} ({} devices)", detail, probe.device_count);
}

// Opens a plugin file and checks it; never throws.
void open_plugin(const std::string& path, FoundBackend& found) {
  found.location = path;
  ::dlerror();
  void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* msg = ::dlerror();
    found.detail = fmt::format("cannot load: {}", msg ? msg : "dlopen failed without a message");
    return;
  }
  auto entry = reinterpret_cast<parity_backend_entry_fn>(::dlsym(lib, PARITY_BACKEND_ENTRY_SYMBOL));
  if (!entry) {
    found.detail = fmt::format("{} does not export {}(): not a parity backend plugin", path,
                               PARITY_BACKEND_ENTRY_SYMBOL);
    ::dlclose(lib);
    return;
  }
  const parity_backend_table* table = entry();
  if (!table) {
    found.detail = fmt::format("{}() of {} returned no table", PARITY_BACKEND_ENTRY_SYMBOL, path);
    ::dlclose(lib);
    return;
  }
  // abi_version is the first field of every version of the table, so it is safe to read.
  if (table->abi_version != PARITY_ABI_VERSION) {
    found.detail = fmt::format("ABI mismatch: {} was built for plugin ABI version {}, this libparity uses version {}",
                               path, table->abi_version, PARITY_ABI_VERSION);
    ::dlclose(lib);
    return;
  }
  if (table->struct_size < sizeof(parity_backend_table)) {
    found.detail = fmt::format("{}: its table is {} bytes, ABI version {} needs {}", path, table->struct_size,
                               PARITY_ABI_VERSION, sizeof(parity_backend_table));
    ::dlclose(lib);
    return;
  }
  if (!table->name || found.name != table->name) {
    found.detail = fmt::format("{} holds backend '{}', its file name says '{}'", path,
                               table->name ? table->name : "(no name)", found.name);
    ::dlclose(lib);
    return;
  }
  const std::string missing = missing_functions(*table);
  if (!missing.empty()) {
    found.detail = fmt::format("{}: its table lacks required functions: {}", path, missing);
    ::dlclose(lib);
    return;
  }
  // From here on the library stays loaded for the life of the process (its table is in use,
  // and unloading libraries that start threads, as GPU runtimes do, is unsafe).
  probe_into(table, found);
}

bool valid_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

const std::vector<std::string>& known_plugin_names() {
  static const std::vector<std::string> names = {"cuda", "hip", "simt", "onednn", "gpu_emu"};
  return names;
}

std::vector<std::string> plugin_search_folders() {
  std::vector<std::string> folders;
  auto add = [&folders](const std::string& f) {
    if (!f.empty() && std::find(folders.begin(), folders.end(), f) == folders.end()) folders.push_back(f);
  };
  if (const char* env = std::getenv("PARITY_BACKEND_PATH")) {
    std::string all = env;
    size_t start = 0;
    while (start <= all.size()) {
      const size_t colon = std::min(all.find(':', start), all.size());
      add(all.substr(start, colon - start));
      start = colon + 1;
    }
  }
  const std::string own = own_object_path();
  if (!own.empty()) {
    const std::string dir = folder_of(own);
#ifdef PARITY_SHARED_BUILD
    add(dir + "/parity");
#else
    const std::filesystem::path installed = std::filesystem::path(dir) / PARITY_EXE_TO_PLUGINS;
    const std::filesystem::path normal = installed.lexically_normal();
    add(normal.empty() ? installed.string() : normal.string());
#endif
    for (const std::string& marker : {dir + "/parity-build-tree.txt", dir + "/../parity-build-tree.txt"}) {
      std::ifstream in(marker);
      for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#') add(line);
    }
  }
  return folders;
}

FoundBackend find_backend(const std::string& name) {
  FoundBackend found;
  found.name = name;
  size_t count = 0;
  const BuiltinBackend* builtins = builtin_backends(&count);
  for (size_t i = 0; i < count; ++i) {
    if (name != builtins[i].name) continue;
    found.known = true;
    found.location = "built in";
    probe_into(builtins[i].table(), found);
    return found;
  }
  const char* note = build_note(name);
  found.known = note != nullptr;
  if (!valid_name(name)) {
    found.detail = fmt::format("'{}' is not a backend name: lowercase letters, digits and '_' only", name);
    return found;
  }
  const std::string file = kPrefix + name + kSuffix;
  const std::vector<std::string> folders = plugin_search_folders();
  for (const std::string& folder : folders) {
    const std::string path = folder + "/" + file;
    if (!is_file(path)) continue;
    found.known = true;
    open_plugin(path, found);
    return found;
  }
  std::string searched;
  for (const std::string& f : folders) searched += (searched.empty() ? "" : ", ") + f;
  if (searched.empty()) searched = "(no folder: PARITY_BACKEND_PATH is unset and libparity's folder is unknown)";
  const std::string not_found = fmt::format("file not found: {} is in none of {}", file, searched);
  found.detail = note && std::strncmp(note, "not built", 9) == 0 ? fmt::format("{}; {}", note, not_found) : not_found;
  return found;
}

std::vector<std::string> extra_plugin_names() {
  std::vector<std::string> names;
  size_t count = 0;
  const BuiltinBackend* builtins = builtin_backends(&count);
  auto listed = [&](const std::string& n) {
    for (size_t i = 0; i < count; ++i)
      if (n == builtins[i].name) return true;
    const auto& known = known_plugin_names();
    return std::find(known.begin(), known.end(), n) != known.end() ||
           std::find(names.begin(), names.end(), n) != names.end();
  };
  const std::string prefix = kPrefix, suffix = kSuffix;
  for (const std::string& folder : plugin_search_folders()) {
    DIR* dir = ::opendir(folder.c_str());
    if (!dir) continue;
    while (const dirent* e = ::readdir(dir)) {
      const std::string f = e->d_name;
      if (f.size() <= prefix.size() + suffix.size() || f.compare(0, prefix.size(), prefix) != 0 ||
          f.compare(f.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string n = f.substr(prefix.size(), f.size() - prefix.size() - suffix.size());
      if (valid_name(n) && !listed(n)) names.push_back(n);
    }
    ::closedir(dir);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace parity
