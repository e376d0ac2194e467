// parity/backend.h — choosing a backend and running a compiled plan on it: the C++ face of
// the backend interface. Every backend, built in or plugin, is reached through the C function
// table of parity/plugin.h; this is a thin wrapper that turns its status codes into Error.
//
// Thread safety: a Backend and the Executables compiled from it are used by one thread at a
// time; separate Backend instances are independent. list_backends() and create_backend() may
// be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parity/plugin.h"

namespace parity {

struct BackendOptions {
  int threads = 0;  // 0: every hardware thread; backends without threads ignore it
  int device = 0;   // the device index of a GPU backend, in [0, its device count); host backends: 0
};

// The hardware threads this process may use: what threads = 0 means for the cpu backend
// (oneTBB's default concurrency, which honours the CPU affinity mask and cgroup limits).
int hardware_threads();

struct CompileOptions {
  // Fill every non-persistent value with NaN (f32) or 0x7fffffff (i32) before each execute,
  // so an element that an op forgets to write shows up as a mismatch.
  bool poison_outputs = false;
};

// One compiled plan on one backend, with the memory it needs. Not thread-safe: use an
// instance from one thread at a time.
class Executable {
 public:
  virtual ~Executable() = default;
  // Copies host bytes into an INPUT, PARAM or STATE value (bytes must equal its size).
  virtual void write(int32_t value, const void* host, size_t bytes) = 0;
  // Copies a value to the host: INPUT, PARAM, STATE or any value the plan marked `keep`.
  virtual void read(int32_t value, void* host, size_t bytes) const = 0;
  // Runs every node of the plan once, in order.
  virtual void execute() = 0;
  // Bytes this executable holds for its own use (arena, workspaces; persistent values included).
  virtual int64_t memory_bytes() const = 0;
  // Float64 access to an f32 value, on backends that compute in float64 (ref: the capability
  // PARITY_FEATURE_FLOAT64_VALUES); elsewhere these throw Error(backend).
  virtual void write_f64(int32_t value, const double* host, size_t count);
  virtual void read_f64(int32_t value, double* host, size_t count) const;
  // Node hooks (plugin.h, ABI 8): from the next execute on, `hook(point, stream)` is called at
  // each of `points` (plan order) with the point's index and the backend's stream (nullptr on a
  // host backend); an exception it throws stops the execute and comes out of it. Empty points
  // remove them. Backends without hooks throw Error(backend) saying so.
  using NodeHook = std::function<void(int32_t point, void* stream)>;
  virtual void set_node_hooks(const std::vector<parity_hook_point>& points, NodeHook hook);
  // Where a value lives (device memory on a GPU backend): a PARAM, a STATE, or a TEMP value the
  // plan keeps (plugin.h: value_address). Backends without hooks throw Error(backend).
  virtual void* value_address(int32_t value);
};

// The memory compiling a plan would take (Backend::memory_need).
struct MemoryNeed {
  int64_t host_bytes = 0;    // this process's memory: arena, workspaces, persistent values
  int64_t device_bytes = 0;  // the device's memory (0 on a host backend)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Whether this backend can run the node; `reason` says why not.
  virtual bool supports(const parity_node_desc& node, std::string* reason) const = 0;
  // Compiles a plan. When `share_persistent_with` is an executable of this backend, PARAM and
  // STATE values with the same name and shape are the same storage in both (a training plan,
  // its last partial batch, and an evaluation plan all update and read one set of weights).
  virtual std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                              Executable* share_persistent_with) = 0;
  virtual int threads() const = 0;
  // What compile(plan, options, share_persistent_with) would allocate, without allocating;
  // nullopt when the backend cannot tell. The plan is checked as compile checks it.
  virtual std::optional<MemoryNeed> memory_need(const parity_plan& plan, const CompileOptions& options,
                                                Executable* share_persistent_with) const;
};

struct BackendInfo {
  std::string name;
  bool available = false;
  std::string detail;        // what it is when available, exactly why not when unavailable
  std::string location;      // "built in", the plugin file, or empty when no file was found
  std::string capabilities;  // dtypes, features and device of a default instance (when available)
};

// Every backend parity knows, with its status: the built-in ones, cuda, hip and simt, and any
// other libparity-backend-<name>.so on the plugin search path (see README, "How a backend is
// found"). Plugins are searched and probed on each call.
std::vector<BackendInfo> list_backends();

// `name` is a backend of list_backends() or auto (the first usable of cuda, hip, cpu);
// PARITY_BACKEND is read by default_backend_name(), not here. Throws Error(backend) naming the
// reason when it is unavailable and Error(invalid_argument) for an unknown name — never a
// silent fallback.
std::unique_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options = {});

// What compiling `plan` on backend `name` would allocate on a default instance, from the
// backend's planner that needs no device (memory_need_without_device in plugin.h), asked even
// when the backend is unavailable here: `parity summary --backend cuda` on a machine without
// the GPU. Sizes only a device can settle are counted at their limit (an upper bound). nullopt
// when the backend has no such planner or its plugin could not be loaded. Throws
// Error(invalid_argument) for an unknown name, as create_backend() does, and the backend's
// error for a plan it would refuse.
std::optional<MemoryNeed> memory_need_without_device(const std::string& name, const parity_plan& plan,
                                                     const CompileOptions& options = {});

// For commands that take several backends (check, bench): "all" is every available backend;
// otherwise a comma-separated list of names, each resolved as create_backend() would ("auto"
// included), so an unknown or unavailable name is the same error. Duplicates are dropped.
std::vector<std::string> resolve_backend_list(const std::string& list);

// The folders searched for plugin files libparity-backend-<name>.so, in order: each folder of
// PARITY_BACKEND_PATH (':'-separated); then <folder of libparity.so>/parity in shared builds,
// or <folder of the executable>/../lib/parity in static ones; then, in an uninstalled build
// only, the folders listed in the parity-build-tree.txt that CMake writes into the build tree
// (read next to libparity or the executable, or one folder up; never installed).
std::vector<std::string> plugin_search_folders();

// PARITY_BACKEND from the environment, or "auto".
std::string default_backend_name();

}  // namespace parity
