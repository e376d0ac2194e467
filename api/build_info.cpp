// api/build_info.cpp — the library's version and what this build of libparity contains: the
// versions of the libraries it uses and the build options (the CLI adds its own CLI11 line).
#include <Eigen/Core>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/version.h>
#include <zlib.h>

#include <fmt/format.h>

#include "parity/parity.h"

namespace parity {

const char* version() { return PARITY_VERSION_STRING; }

std::vector<std::pair<std::string, std::string>> build_info() {
  return {
      {"parity", PARITY_VERSION_STRING},
      {"build type", PARITY_BUILD_TYPE},
      {"sanitizers", PARITY_SANITIZED ? "address, undefined" : "none"},
      {"compiler", fmt::format("{} {}", "g++", __VERSION__)},
      {"Eigen", fmt::format("{}.{}.{}", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION)},
      {"oneTBB", fmt::format("{} (runtime {})", TBB_VERSION_STRING, TBB_runtime_version())},
      {"zlib", zlibVersion()},
      {"fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100)},
      {"nlohmann-json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
                                    NLOHMANN_JSON_VERSION_PATCH)},
  };
}

}  // namespace parity
