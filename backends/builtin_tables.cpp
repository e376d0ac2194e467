// backends/builtin_tables.cpp — the function tables of the built-in backends (ref, cpu; simt
// when built in), made by the C++ adapter, and the list the registry reads.
#include <thread>

#include "backends/builtin.h"
#include "backends/table_from_backend.h"

namespace parity {
namespace {

const AdaptedBackendSpec kCpuSpec{
    "cpu", "float32 on Eigen + oneTBB (a task_arena per executable)", make_cpu_backend,
    PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) | PARITY_DTYPE_BIT(PARITY_I64),
    PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC | PARITY_FEATURE_THREADS};

const AdaptedBackendSpec kRefSpec{"ref", "float64 naive loops: the oracle, single-threaded", make_ref_backend,
                                  PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32),
                                  PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC |
                                      PARITY_FEATURE_FLOAT64_VALUES};

#ifdef PARITY_WITH_SIMT_BUILTIN
const AdaptedBackendSpec kSimtSpec{
    "simt", "the native GPU kernels on the host: blocks on oneTBB, threads as fibers (correctness, not speed)",
    make_simt_backend, PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32),
    PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC | PARITY_FEATURE_THREADS};
#endif

// The table of one adapted backend: its probe and create bound to its spec.
template <const AdaptedBackendSpec& spec>
parity_status probe(parity_probe_result* out, parity_error*) {
  return adapted_host_probe(spec, out);
}
template <const AdaptedBackendSpec& spec>
parity_status create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(spec, config, out, err);
}
template <const AdaptedBackendSpec& spec>
const parity_backend_table* table() {
  static const parity_backend_table t = make_adapted_table(spec, probe<spec>, create<spec>);
  return &t;
}

const BuiltinBackend kBuiltins[] = {
    {"cpu", table<kCpuSpec>},
    {"ref", table<kRefSpec>},
#ifdef PARITY_WITH_SIMT_BUILTIN
    {"simt", table<kSimtSpec>},
#endif
};

}  // namespace

const BuiltinBackend* builtin_backends(size_t* count) {
  *count = sizeof kBuiltins / sizeof kBuiltins[0];
  return kBuiltins;
}

}  // namespace parity
