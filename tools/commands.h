// tools/commands.h — each subcommand adds its options to the CLI11 app and sets `run` when chosen.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace parity::tools {

void add_info_command(CLI::App& app, std::function<int()>& run);
void add_train_command(CLI::App& app, std::function<int()>& run);
void add_eval_command(CLI::App& app, std::function<int()>& run);
void add_check_command(CLI::App& app, std::function<int()>& run);
void add_sweep_command(CLI::App& app, std::function<int()>& run);
void add_bench_command(CLI::App& app, std::function<int()>& run);  // when PARITY_BUILD_BENCH
void add_summary_command(CLI::App& app, std::function<int()>& run);
void add_plot_command(CLI::App& app, std::function<int()>& run);
void add_export_command(CLI::App& app, std::function<int()>& run);  // when PARITY_WITH_ONNX

// --backend, with PARITY_BACKEND (or auto) as its default and the known names listed.
CLI::Option* add_backend_option(CLI::App& cmd, std::string& backend);
// --model, its help listing the zoo's models (model_names()).
CLI::Option* add_model_option(CLI::App& cmd, std::string& model);

}  // namespace parity::tools
