// parity/backend.h — choosing a backend and running a compiled plan on it: the C++ face of
// the backend interface (the C plugin ABI of DESIGN.md is built beneath this).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parity/plugin.h"

namespace parity {

struct BackendOptions {
  int threads = 0;  // 0: every hardware thread; backends without threads ignore it
};

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
};

struct BackendInfo {
  std::string name;
  bool available = false;
  std::string detail;  // what it is when available, why not when unavailable
};

// Every backend parity knows, with its status.
std::vector<BackendInfo> list_backends();

// `name` is one of ref, cpu, auto (auto: the best available; PARITY_BACKEND is read by
// default_backend_name()). Throws Error(backend) naming the reason when it is unavailable and
// Error(invalid_argument) for an unknown name — never a silent fallback.
std::unique_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options = {});

// PARITY_BACKEND from the environment, or "auto".
std::string default_backend_name();

}  // namespace parity
