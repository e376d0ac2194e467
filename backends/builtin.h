// backends/builtin.h — constructors of the backends compiled into libparity (ref, cpu, simt),
// called only by the registry.
#pragma once

#include <memory>

#include "parity/backend.h"

namespace parity {

std::unique_ptr<Backend> make_ref_backend(const BackendOptions& options);
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);
// The native GPU kernels run on the host by the fiber SIMT emulator (backends/simt).
std::unique_ptr<Backend> make_simt_backend(const BackendOptions& options);

}  // namespace parity
