// tools/cmd_info.cpp — `parity info`: backends with their status and exactly why any is
// unavailable, where plugins are searched, threads, library versions, build options; with
// --backend onednn, what runs each op on that backend (a oneDNN primitive or cpu's kernel, and why).
#include <algorithm>
#include <thread>

#include <CLI/Version.hpp>
#include <fmt/format.h>

#include "backends/cpu/gemm_bf16.h"
#ifdef PARITY_CLI_ONEDNN
#include "backends/onednn/onednn_routes.h"
#endif
#include "parity/parity.h"
#include "tools/commands.h"

namespace parity::tools {

CLI::Option* add_backend_option(CLI::App& cmd, std::string& backend) {
  backend = default_backend_name();
  return cmd.add_option("--backend", backend,
                        "cuda, hip, cpu, simt, ref, a plugin's name, or auto = cuda, then hip, then cpu "
                        "(default: $PARITY_BACKEND, else auto)")
      ->capture_default_str();
}

namespace {

// `parity info --backend NAME`: the backend's line, then what runs each op. Only onednn hands ops
// between two sets of kernels; every other backend runs each op it supports on its own.
int print_routes(const std::string& name) {
  const std::vector<BackendInfo> backends = list_backends();
  const auto it = std::find_if(backends.begin(), backends.end(), [&](const BackendInfo& b) { return b.name == name; });
  if (it == backends.end()) {
    fmt::print(stderr, "parity info: no backend named '{}' (parity info lists them)\n", name);
    return 2;
  }
  fmt::print("{} {} {}\n", it->name, it->available ? "available" : "unavailable", it->detail);
  if (name != "onednn") {
    fmt::print("{} runs every op it supports on its own kernels (only onednn routes ops between libraries)\n", name);
    return 0;
  }
#ifdef PARITY_CLI_ONEDNN
  fmt::print("what runs each op (a node can still fall back where its line says so; PARITY_ONEDNN_LOG=1 prints "
             "each node's choice at compile):\n");
  for (const onednn::OpRoute& r : onednn::route_table()) fmt::print("  {:<19} {}\n", r.op, r.runs_on);
#endif
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand("info", "backends, threads, library versions and build options");
  static std::string routes_of;
  cmd->add_option("--backend", routes_of,
                  "only this backend: its line, then what runs each op (onednn: the oneDNN primitive, or cpu's "
                  "kernel and why)");
  cmd->callback([&run] {
    if (!routes_of.empty()) {
      run = [] { return print_routes(routes_of); };
      return;
    }
    run = [] {
      fmt::print("backends:\n");
      const std::vector<BackendInfo> backends = list_backends();
      size_t width = 5;
      for (const BackendInfo& b : backends) width = std::max(width, b.name.size());
      for (const BackendInfo& b : backends) {
        fmt::print("  {:<{}} {:<12} {}\n", b.name, width, b.available ? "available" : "unavailable", b.detail);
        if (!b.location.empty()) fmt::print("  {:<{}} {:<12} from {}\n", "", width, "", b.location);
        if (!b.capabilities.empty()) fmt::print("  {:<{}} {:<12} {}\n", "", width, "", b.capabilities);
      }
      fmt::print("plugin search path (PARITY_BACKEND_PATH, then next to libparity):\n");
      for (const std::string& folder : plugin_search_folders()) fmt::print("  {}\n", folder);
      fmt::print("default backend: {} (PARITY_BACKEND or auto; auto prefers cuda, then hip, then cpu)\n",
                 default_backend_name());
      fmt::print("hardware threads: {}\n", std::thread::hardware_concurrency());
      // The cpu backend's bf16 GEMM route (backends/cpu/gemm_bf16.h): what its bf16 conv and linear run on.
      try {
        fmt::print("cpu bf16 GEMM: {}\n", cpu::bf16_gemm_route_description());
      } catch (const Error& e) {
        fmt::print("cpu bf16 GEMM: {}\n", e.what());
      }
      fmt::print("build:\n");
      // CLI11 is the CLI's library, not libparity's, so its line is added here.
      auto info = build_info();
      info.emplace_back("CLI11", CLI11_VERSION);
      for (const auto& [name, value] : info) fmt::print("  {:<14} {}\n", name, value);
      return 0;
    };
  });
}

}  // namespace parity::tools
