// backends/builtin_tables.cpp — the function tables of the built-in backends (ref, cpu; simt
// when built in), made by the C++ adapter, and the list the registry reads.
#include <thread>

#include "backends/builtin.h"
#include "backends/table_adapter.h"

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

parity_status cpu_probe(parity_probe_result* out, parity_error*) { return adapted_host_probe(kCpuSpec, out); }
parity_status cpu_create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(kCpuSpec, config, out, err);
}
const parity_backend_table* cpu_table() {
  static const parity_backend_table table = make_adapted_table(kCpuSpec, cpu_probe, cpu_create);
  return &table;
}

parity_status ref_probe(parity_probe_result* out, parity_error*) { return adapted_host_probe(kRefSpec, out); }
parity_status ref_create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(kRefSpec, config, out, err);
}
const parity_backend_table* ref_table() {
  static const parity_backend_table table = make_adapted_table(kRefSpec, ref_probe, ref_create);
  return &table;
}

#ifdef PARITY_WITH_SIMT_BUILTIN
const AdaptedBackendSpec kSimtSpec{
    "simt", "the native GPU kernels on the host: blocks on oneTBB, threads as fibers (correctness, not speed)",
    make_simt_backend, PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32),
    PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC | PARITY_FEATURE_THREADS};

parity_status simt_probe(parity_probe_result* out, parity_error*) { return adapted_host_probe(kSimtSpec, out); }
parity_status simt_create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(kSimtSpec, config, out, err);
}
const parity_backend_table* simt_table() {
  static const parity_backend_table table = make_adapted_table(kSimtSpec, simt_probe, simt_create);
  return &table;
}
#endif

const BuiltinBackend kBuiltins[] = {
    {"cpu", cpu_table},
    {"ref", ref_table},
#ifdef PARITY_WITH_SIMT_BUILTIN
    {"simt", simt_table},
#endif
};

}  // namespace

const BuiltinBackend* builtin_backends(size_t* count) {
  *count = sizeof kBuiltins / sizeof kBuiltins[0];
  return kBuiltins;
}

}  // namespace parity
