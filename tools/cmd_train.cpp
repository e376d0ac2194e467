// tools/cmd_train.cpp — `parity train` and `parity eval`: options, progress output (a bar on a
// terminal, a line per epoch otherwise), and Ctrl-C that saves a checkpoint before leaving.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>

#include <fmt/format.h>

#include "parity/parity.h"
#include "dist/data_parallel.h"
#include "dist/launch_env.h"
#include "model/file_model.h"
#include "tools/commands.h"
#include "tools/threads_option.h"

namespace parity::tools {
namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void request_stop(int) { g_stop_requested.store(true); }

void print_epoch(const EpochReport& r, int epochs) {
  const std::string validation =
      r.validation ? fmt::format(" | val loss {:.4f} accuracy {:.2f}%", r.validation->loss, 100 * r.validation->accuracy)
                   : std::string();
  fmt::print("epoch {}/{}: train loss {:.4f} accuracy {:.2f}% ({:.0f} images/s){} | test loss {:.4f} accuracy {:.2f}%\n",
             r.epoch + 1, epochs, r.train_loss, 100 * r.train_accuracy, r.images_per_second, validation, r.test.loss,
             100 * r.test.accuracy);
  std::fflush(stdout);
}

void print_bar(const TrainProgress& p) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * p.batch_in_epoch / std::max<int64_t>(p.batches_per_epoch, 1));
  fmt::print("\r\x1b[2Kepoch {}/{} [{:=<{}}{:<{}}] {}/{} loss {:.4f} {:.0f} img/s", p.epoch + 1, p.epochs, "", filled,
             "", kWidth - filled, p.batch_in_epoch, p.batches_per_epoch, p.running_loss, p.images_per_second);
  std::fflush(stdout);
}

// run_training names the TrainOptions field it rejects ("TrainOptions::max_steps must be >= 0");
// here the user set it as a flag, so the message names the flag ("--max-steps must be >= 0").
std::string with_flag_names(std::string message) {
  static const std::string kField = "TrainOptions::";
  for (size_t at = message.find(kField); at != std::string::npos; at = message.find(kField, at)) {
    size_t end = at + kField.size();
    while (end < message.size() && (std::isalnum(static_cast<unsigned char>(message[end])) || message[end] == '_')) ++end;
    std::string flag = "--" + message.substr(at + kField.size(), end - at - kField.size());
    std::replace(flag.begin(), flag.end(), '_', '-');
    message.replace(at, end - at, flag);
    at += flag.size();
  }
  return message;
}

}  // namespace

// The data-parallel run `--distributed` asks for, or null for one process. auto is mpi when a
// launcher started more than one process (launch_env), else off.
std::shared_ptr<CommunicatorDataParallel> data_parallel_for(const std::string& kind, const std::string& backend,
                                                            double bucket_mb) {
  const LaunchEnv env = launch_env();
  const std::string chosen = kind == "auto" ? (env.size > 1 ? "mpi" : "off") : kind;
  if (chosen == "off") return nullptr;
  DataParallelOptions options;
  options.bucket_bytes = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  if (chosen == "nccl") {
    if (backend != "cuda")
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("--distributed nccl reduces CUDA device memory: it needs --backend cuda, not {}", backend));
    // The module first, so that a parity without NCCL says so before MPI starts; then MPI, which
    // bootstraps NCCL and carries the host-side sums.
    const parity_nccl_api& api = load_nccl_api();
    std::unique_ptr<Communicator> host = make_communicator("mpi");
    auto device = std::make_unique<DeviceCollectives>(api, *host, env);
    return std::make_shared<CommunicatorDataParallel>(std::move(host), options, std::move(device));
  }
  if (backend != "cpu" && backend != "simt" && backend != "auto")
    throw Error(ErrorKind::invalid_argument,
                fmt::format("--distributed mpi all-reduces host memory: use --backend cpu or simt, not {}", backend));
  return std::make_shared<CommunicatorDataParallel>(make_communicator("mpi"), options);
}

int64_t default_batch_of(const std::string& model, int64_t fallback) {
  if (!is_model_file(model)) return fallback;
  const ModelSpec spec = load_model(model);
  return spec.layer_graph->fixed_batch() > 0 ? spec.layer_graph->fixed_batch() : fallback;
}

CLI::Option* add_model_option(CLI::App& cmd, std::string& model) {
  return cmd.add_option("--model", model,
                        fmt::format("{}, or an ONNX file (path ending in .onnx)", fmt::join(model_names(), ", ")))
      ->capture_default_str();
}

void add_train_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand("train", "train a model on Fashion-MNIST and report test accuracy");
  auto o = std::make_shared<TrainOptions>();
  auto optimizer = std::make_shared<std::string>("adam");
  add_backend_option(*cmd, o->backend);
  add_model_option(*cmd, o->model);
  cmd->add_option("--data", o->data,
                  "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] of any image size and class count "
                  "(default: Fashion-MNIST in " + default_data_folder() + ")");
  cmd->add_option("--epochs", o->epochs, "passes over the training set")->capture_default_str();
  CLI::Option* batch = cmd->add_option("--batch", o->batch, "images per step (a model file that fixes its batch "
                                                             "dimension: that size by default)")
                           ->capture_default_str();
  cmd->add_option("--lr", o->lr, "learning rate")->capture_default_str();
  cmd->add_option("--optimizer", *optimizer, "adam, adamw (decoupled weight decay) or sgd")
      ->capture_default_str()
      ->check(CLI::IsMember({"adam", "adamw", "sgd"}));
  cmd->add_option("--momentum", o->momentum, "SGD momentum")->capture_default_str();
  cmd->add_flag("--nesterov", o->nesterov, "SGD: Nesterov momentum (needs --momentum > 0)");
  cmd->add_option("--weight-decay", o->weight_decay,
                  "adam, sgd: L2 penalty added to the gradient; adamw: decoupled decay (torch's AdamW default is 0.01)")
      ->capture_default_str();
  cmd->add_option("--lr-schedule", o->lr_schedule,
                  "constant; step (lr * --lr-gamma every --lr-step-epochs epochs, StepLR); cosine (to --lr-min over "
                  "the run's steps after warmup, CosineAnnealingLR); stepped once per optimizer step")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "cosine"}));
  cmd->add_option("--lr-step-epochs", o->lr_step_epochs, "step schedule: epochs between decays")->capture_default_str();
  cmd->add_option("--lr-gamma", o->lr_gamma, "step schedule: decay factor")->capture_default_str();
  cmd->add_option("--lr-min", o->lr_min, "cosine schedule: the final lr (eta_min)")->capture_default_str();
  cmd->add_option("--warmup-steps", o->warmup_steps,
                  "linear warmup over the first N optimizer steps (LinearLR), then the schedule")
      ->capture_default_str();
  cmd->add_option("--warmup-start-factor", o->warmup_start_factor, "the warmup's first lr as a fraction of --lr")
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", o->clip_grad_norm,
                  "scale the gradients so their total 2-norm is at most this before each step "
                  "(torch.nn.utils.clip_grad_norm_; 0: off)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the initial weights and the shuffling")->capture_default_str();
  add_threads_option(*cmd, o->threads, "threads for the cpu backend (0: all)");
  cmd->add_option("--limit", o->limit, "train on the first N images only (0: all)")->capture_default_str();
  cmd->add_option("--val-split", o->val_split,
                  "hold out this fraction of the training images (drawn by --seed) for a validation loss and "
                  "accuracy after each epoch (0: off)")
      ->capture_default_str();
  cmd->add_option("--max-steps", o->max_steps, "stop (and save) after N optimizer steps in total (0: no limit)");
  cmd->add_option("--init", o->init, "start from weights in safetensors with PyTorch's names");
  cmd->add_option("--mask", o->mask,
                  "hold the pruning of this file (the <weight>.mask tensors parity prune --save writes): pruned "
                  "weights and their optimizer state stay exactly 0");
  cmd->add_option("--save", o->save, "write weights, optimizer state and position here after each epoch and on Ctrl-C");
  cmd->add_option("--resume", o->resume, "continue from a checkpoint written by --save");
  cmd->add_option("--metrics", o->metrics, "CSV of per-step and per-epoch loss, accuracy and images/s");
  auto precision = std::make_shared<std::string>("f32");
  cmd->add_option("--precision", *precision,
                  "f32, or mixed precision as PyTorch's autocast: bf16, or fp16 with dynamic loss scaling (conv and "
                  "linear in the half dtype with f32 accumulation and f32 master weights; README \"--precision\")")
      ->check(CLI::IsMember({"f32", "bf16", "fp16"}))
      ->capture_default_str();
  auto distributed = std::make_shared<std::string>("auto");
  auto bucket_mb = std::make_shared<double>(1.0);
  cmd->add_option("--distributed", *distributed,
                  "data-parallel training across the processes of mpirun or srun: mpi, nccl, off, or auto (mpi when "
                  "launched as more than one process)")
      ->check(CLI::IsMember({"auto", "mpi", "nccl", "off"}))
      ->capture_default_str();
  cmd->add_option("--bucket-mb", *bucket_mb,
                  "distributed: MiB of gradients per all-reduce, each started as soon as the backward has made them "
                  "(0: one all-reduce after the whole backward)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->callback([&run, o, optimizer, batch, distributed, bucket_mb, precision] {
    run = [o, optimizer, batch_given = batch->count() > 0, distributed, bucket_mb, precision] {
      o->precision = parse_precision(*precision);
      CommunicatorDataParallel* dp = nullptr;
      if (auto made = data_parallel_for(*distributed, o->backend, *bucket_mb)) {
        dp = made.get();
        o->data_parallel = std::move(made);
      }
      const bool rank0 = !dp || dp->rank() == 0;
      if (!batch_given) o->batch = default_batch_of(o->model, o->batch);
      o->optimizer = *optimizer == "sgd"     ? OptimizerConfig::Kind::sgd
                     : *optimizer == "adamw" ? OptimizerConfig::Kind::adamw
                                             : OptimizerConfig::Kind::adam;
      const bool tty = ::isatty(STDOUT_FILENO) != 0;
      TrainCallbacks cb;
      cb.stop = &g_stop_requested;
      // A distributed run prints from rank 0 alone: every rank reports the same figures.
      if (rank0) {
        cb.on_info = [](const std::string& msg) { fmt::print("{}\n", msg); };
        if (tty) cb.on_step = print_bar;
        cb.on_epoch = [tty, epochs = o->epochs](const EpochReport& r) {
          if (tty) fmt::print("\r\x1b[2K");
          print_epoch(r, epochs);
        };
      }
      // (A batch the ranks cannot share is refused by run_training; no banner for it.)
      if (dp && rank0 && o->batch % dp->size() == 0)
        fmt::print("data parallel over {}: {} ranks, global batch {} ({} per rank), gradients all-reduced in buckets "
                   "of {}\n",
                   dp->communicator().name(), dp->size(), o->batch, o->batch / std::max(dp->size(), 1),
                   *bucket_mb > 0 ? fmt::format("{} MiB", *bucket_mb) : std::string("one, after the whole backward"));
      std::signal(SIGINT, request_stop);
      std::signal(SIGTERM, request_stop);
      TrainSummary summary;
      try {
        summary = run_training(*o, cb);
      } catch (const Error& e) {
        if (!dp) throw Error(e.kind(), with_flag_names(e.what()));
        // The other ranks would wait for this one in their next collective: end them all.
        fmt::print(stderr, "parity train: rank {} of {}: error: {}\n", dp->rank(), dp->size(), with_flag_names(e.what()));
        std::fflush(stderr);
        dp->communicator().abort(1);
      }
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      if (!rank0) return summary.stopped_early && g_stop_requested.load() ? 130 : 0;
      if (summary.stopped_early) {
        if (tty) fmt::print("\n");
        fmt::print("stopped after step {}{}\n", summary.steps,
                   o->save.empty() ? "" : fmt::format("; checkpoint saved to {} (continue with --resume)", o->save));
        return g_stop_requested.load() ? 130 : 0;
      }
      if (!o->save.empty()) fmt::print("saved {}\n", o->save);
      return 0;
    };
  });
}

void add_eval_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand("eval", "test loss and accuracy of saved weights");
  struct EvalOptions {
    std::string backend, model = "seed-cnn", weights, data;
    int threads = 0;
    int64_t batch = 64;
  };
  auto o = std::make_shared<EvalOptions>();
  add_backend_option(*cmd, o->backend);
  add_model_option(*cmd, o->model);
  cmd->add_option("--weights", o->weights,
                  "safetensors file with PyTorch's names (or a checkpoint); required but for an ONNX model, which "
                  "has its own");
  cmd->add_option("--data", o->data, "folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]");
  CLI::Option* batch = cmd->add_option("--batch", o->batch, "images per batch (a model file that fixes its batch "
                                                             "dimension: that size by default)")
                           ->capture_default_str();
  add_threads_option(*cmd, o->threads, "threads for the cpu backend (0: all)");
  cmd->callback([&run, o, batch] {
    run = [o, batch_given = batch->count() > 0] {
      if (!batch_given) o->batch = default_batch_of(o->model, o->batch);
      EvalResult r = run_evaluation(o->model, o->backend, o->threads, o->weights, o->data, o->batch);
      fmt::print("test loss {:.4f} accuracy {:.2f}% ({} images)\n", r.loss, 100 * r.accuracy, r.images);
      return 0;
    };
  });
}

}  // namespace parity::tools
