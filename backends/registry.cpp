// backends/registry.cpp — the list of backends parity knows, their status, and creation by
// name (ref, cpu, auto); an unavailable backend is an error with its reason, never a fallback.
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "backends/builtin.h"
#include "parity/error.h"

namespace parity {
namespace {

// Backends DESIGN.md names that this build does not contain yet, with the reason.
struct MissingBackend {
  const char* name;
  const char* reason;
};
constexpr MissingBackend kNotBuilt[] = {
    {"cuda", "not built: this build of parity has no CUDA plugin"},
    {"hip", "not built: this build of parity has no HIP plugin"},
};

}  // namespace

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> list;
  list.push_back({"cpu", true,
                  fmt::format("Eigen + oneTBB, float32, up to {} threads", std::thread::hardware_concurrency())});
  list.push_back({"ref", true, "float64 naive loops: the oracle, single-threaded"});
  list.push_back({"simt", true, "the native GPU kernels on the host: fibers per block, oneTBB over blocks, warp "
                                "PARITY_SIMT_WARP (32 or 64)"});
  for (const MissingBackend& m : kNotBuilt) list.push_back({m.name, false, m.reason});
  return list;
}

std::string default_backend_name() {
  const char* env = std::getenv("PARITY_BACKEND");
  return env && *env ? std::string(env) : std::string("auto");
}

std::unique_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options) {
  if (options.threads < 0)
    throw Error(ErrorKind::invalid_argument, fmt::format("threads must be >= 0 (0 = all), got {}", options.threads));
  // auto prefers cuda, then hip, then cpu: only cpu is built here.
  if (name == "auto" || name == "cpu") return make_cpu_backend(options);
  if (name == "ref") return make_ref_backend(options);
  if (name == "simt") return make_simt_backend(options);
  for (const MissingBackend& m : kNotBuilt)
    if (name == m.name) throw Error(ErrorKind::backend, fmt::format("backend '{}' is unavailable: {}", name, m.reason));
  throw Error(ErrorKind::invalid_argument,
              fmt::format("unknown backend '{}': choose one of cpu, ref, cuda, hip, simt, auto", name));
}

}  // namespace parity
