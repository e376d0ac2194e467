// backends/builtin.h — the backends compiled into libparity: their C++ constructors (used only
// by their tables) and the list of built-in tables the registry reads.
#pragma once

#include <memory>

#include "parity/backend.h"
#include "parity/plugin.h"

namespace parity {

std::unique_ptr<Backend> make_ref_backend(const BackendOptions& options);
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);
// The native GPU kernels run on the host by the fiber SIMT emulator (backends/simt).
std::unique_ptr<Backend> make_simt_backend(const BackendOptions& options);
// The cpu executable with convolutions and linear layers run by oneDNN (backends/onednn).
std::unique_ptr<Backend> make_onednn_backend(const BackendOptions& options);

struct BuiltinBackend {
  const char* name;
  const parity_backend_table* (*table)();
};

// Every built-in backend, in the order `parity info` lists them. Each is registered explicitly
// under its #ifdef in builtin_tables.cpp (no static initialisers: a linker drops those from
// static libraries).
const BuiltinBackend* builtin_backends(size_t* count);

}  // namespace parity
