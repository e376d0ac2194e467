// backends/table_from_backend.h — exposes a backend written as a C++ parity::Backend (ref, cpu) as a
// parity_backend_table, catching every exception so that only status + message crosses the ABI.
#pragma once

#include <memory>

#include "backends/kit/abi_guard.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/plugin.h"

namespace parity {

struct AdaptedBackendSpec {
  const char* name;
  const char* description;
  std::unique_ptr<Backend> (*make)(const BackendOptions& options);
  uint32_t dtypes;    // PARITY_DTYPE_BIT of each dtype
  uint64_t features;  // PARITY_FEATURE_*
};

// The table of one adapted backend. `probe` and `create` are per backend (a C function
// pointer cannot carry the spec); the rest is shared. Each create should call adapted_create.
parity_backend_table make_adapted_table(const AdaptedBackendSpec& spec,
                                        parity_status (*probe)(parity_probe_result*, parity_error*),
                                        parity_status (*create)(const parity_backend_config*, parity_backend_t*,
                                                                parity_error*));
parity_status adapted_create(const AdaptedBackendSpec& spec, const parity_backend_config* config,
                             parity_backend_t* out, parity_error* err);

// A probe for host backends: always one device, described by the spec.
parity_status adapted_host_probe(const AdaptedBackendSpec& spec, parity_probe_result* out);

// The status a parity::Error of this kind crosses the ABI as (kind_of in backend_from_table.cpp
// is its inverse).
parity_status status_of_error_kind(ErrorKind kind);

using kit::copy_message;

}  // namespace parity
