// tools/commands.h — each subcommand adds its options to the CLI11 app and sets `run` when chosen.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "dist/data_parallel.h"

namespace parity::tools {

void add_info_command(CLI::App& app, std::function<int()>& run);
void add_train_command(CLI::App& app, std::function<int()>& run);
void add_eval_command(CLI::App& app, std::function<int()>& run);
void add_prune_command(CLI::App& app, std::function<int()>& run);
void add_infer_command(CLI::App& app, std::function<int()>& run);
void add_check_command(CLI::App& app, std::function<int()>& run);
void add_sweep_command(CLI::App& app, std::function<int()>& run);
void add_bench_command(CLI::App& app, std::function<int()>& run);  // when PARITY_BUILD_BENCH
void add_summary_command(CLI::App& app, std::function<int()>& run);
void add_plot_command(CLI::App& app, std::function<int()>& run);
void add_export_command(CLI::App& app, std::function<int()>& run);  // when PARITY_WITH_ONNX

// The data-parallel run `--distributed` (auto, mpi, nccl, off) asks for, or null for one
// process: auto is mpi when a launcher started more than one process. nccl needs --backend cuda
// and libparity-nccl.so, and takes the device of its local rank (BackendOptions::device); mpi a
// backend whose memory is the host's (cpu, simt). Errors name what is missing.
std::shared_ptr<CommunicatorDataParallel> data_parallel_for(const std::string& kind, const std::string& backend,
                                                            double bucket_mb);

// --backend, with PARITY_BACKEND (or auto) as its default and the known names listed.
CLI::Option* add_backend_option(CLI::App& cmd, std::string& backend);
// The --batch a command uses when none is given: a model file's fixed batch, else `fallback`.
int64_t default_batch_of(const std::string& model, int64_t fallback);
// --model, its help listing the zoo's models (model_names()).
CLI::Option* add_model_option(CLI::App& cmd, std::string& model);

// The value of `check model --data` and `bench --data`: "synthetic" (random batches of each
// model's geometry) is the one source they have; the option states it and refuses any other.
std::string& synthetic_data_source();

}  // namespace parity::tools
