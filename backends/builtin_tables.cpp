// backends/builtin_tables.cpp — the function tables of the built-in backends (ref, cpu; simt
// and onednn when built in), made by the C++ adapter, and the list the registry reads.
#include <cstring>
#include <thread>

#include "backends/builtin.h"
#include "backends/table_from_backend.h"
#ifdef PARITY_WITH_ONEDNN_BUILTIN
#include "backends/onednn/onednn_routes.h"
#endif

namespace parity {
namespace {

const AdaptedBackendSpec kCpuSpec{
    "cpu", "float32 on Eigen + oneTBB (a task_arena per executable)", make_cpu_backend,
    PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) | PARITY_DTYPE_BIT(PARITY_I64) |
        PARITY_DTYPE_BIT(PARITY_BF16) | PARITY_DTYPE_BIT(PARITY_F16),
    PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC | PARITY_FEATURE_THREADS};

const AdaptedBackendSpec kRefSpec{"ref", "float64 naive loops: the oracle, single-threaded", make_ref_backend,
                                  PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) |
                                      PARITY_DTYPE_BIT(PARITY_BF16) | PARITY_DTYPE_BIT(PARITY_F16),
                                  PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC |
                                      PARITY_FEATURE_FLOAT64_VALUES};

#ifdef PARITY_WITH_SIMT_BUILTIN
const AdaptedBackendSpec kSimtSpec{
    "simt", "the native GPU kernels on the host: blocks on oneTBB, threads as fibers (correctness, not speed)",
    make_simt_backend,
    PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) | PARITY_DTYPE_BIT(PARITY_BF16) |
        PARITY_DTYPE_BIT(PARITY_F16),  // half values through the f32 kernels: backends/native/cast.cuh
    PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC | PARITY_FEATURE_THREADS};
#endif

#ifdef PARITY_WITH_ONEDNN_BUILTIN
// Not DETERMINISTIC: tests/test_onednn.cpp and `parity check determinism` found it bitwise
// repeatable at a fixed thread count, but oneDNN 2.6 promises that only for "most primitives" and
// has no switch to demand it (README, "Determinism of onednn").
const AdaptedBackendSpec kOnednnSpec{
    "onednn", "float32: oneDNN primitives for conv2d, linear, activations, avg-pool, batch-norm eval and "
              "backward, softmax backward; the cpu backend's kernels for the rest (bf16/f16 CAST included)",
    make_onednn_backend,
    PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) | PARITY_DTYPE_BIT(PARITY_I64) |
        PARITY_DTYPE_BIT(PARITY_BF16) | PARITY_DTYPE_BIT(PARITY_F16),  // CAST and its values: cpu's
    PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_THREADS};
#endif

// The table of one adapted backend: its probe and create bound to its spec.
template <const AdaptedBackendSpec& spec>
parity_status probe(parity_probe_result* out, parity_error*) {
  return adapted_host_probe(spec, out);
}
#ifdef PARITY_WITH_ONEDNN_BUILTIN
// onednn's detail is made at probe: the oneDNN version and the OpenMP wait policy in effect.
parity_status probe_onednn(parity_probe_result* out, parity_error*) {
  const parity_status status = adapted_host_probe(kOnednnSpec, out);
  if (status != PARITY_OK) return status;
  const std::string detail = onednn::describe();
  std::strncpy(out->detail, detail.c_str(), sizeof out->detail - 1);
  out->detail[sizeof out->detail - 1] = '\0';
  return status;
}
#endif
template <const AdaptedBackendSpec& spec>
parity_status create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(spec, config, out, err);
}
template <const AdaptedBackendSpec& spec>
const parity_backend_table* table() {
  static const parity_backend_table t = make_adapted_table(spec, probe<spec>, create<spec>);
  return &t;
}

#ifdef PARITY_WITH_ONEDNN_BUILTIN
const parity_backend_table* onednn_table() {
  static const parity_backend_table t = make_adapted_table(kOnednnSpec, probe_onednn, create<kOnednnSpec>);
  return &t;
}
#endif

const BuiltinBackend kBuiltins[] = {
    {"cpu", table<kCpuSpec>},
    {"ref", table<kRefSpec>},
#ifdef PARITY_WITH_SIMT_BUILTIN
    {"simt", table<kSimtSpec>},
#endif
#ifdef PARITY_WITH_ONEDNN_BUILTIN
    {"onednn", onednn_table},
#endif
};

}  // namespace

const BuiltinBackend* builtin_backends(size_t* count) {
  *count = sizeof kBuiltins / sizeof kBuiltins[0];
  return kBuiltins;
}

}  // namespace parity
