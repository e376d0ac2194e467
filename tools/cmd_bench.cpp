// tools/cmd_bench.cpp — `parity bench`: options of the benchmark (bench/bench.h does the work),
// `parity bench compare A.json B.json`, and the hidden --rss-worker mode the benchmark spawns to
// measure a training process's peak memory; --thread-scaling runs bench/thread_scaling.h instead
// of the cases.
#include <unistd.h>

#include <algorithm>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench/bench.h"
#include "bench/compare.h"
#include "bench/distributed.h"
#include "bench/thread_scaling.h"
#include "dist/launch_env.h"
#include "parity/parity.h"
#include "tools/commands.h"
#include "tools/threads_option.h"

namespace parity::tools {
namespace {

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// --backend's list with "all" replaced by every backend's name.
std::vector<std::string> expand_backends(const std::vector<std::string>& asked) {
  std::vector<std::string> names;
  for (const std::string& b : asked)
    if (b == "all")
      for (const BackendInfo& info : list_backends()) names.push_back(info.name);
    else
      names.push_back(b);
  return names;
}

// --precision's list: each parsed (parse_precision's error lists the spellings), none twice.
std::vector<Precision> parse_precisions(const std::vector<std::string>& names) {
  std::vector<Precision> out;
  for (const std::string& name : names) {
    const Precision p = parse_precision(name);
    if (std::find(out.begin(), out.end(), p) != out.end())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("bench --precision: {} is given twice", precision_name(p)));
    out.push_back(p);
  }
  if (out.empty()) throw Error(ErrorKind::invalid_argument, "bench --precision: give at least one of f32, bf16, fp16");
  return out;
}

}  // namespace

void add_bench_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "time ops and models (training step, inference) per backend, validated against ref first; "
               "--against torch adds the LibTorch peer");
  auto o = std::make_shared<bench::BenchOptions>();
  auto backends = std::make_shared<std::vector<std::string>>(o->backends);
  auto flags = std::make_shared<std::map<std::string, bool>>();
  auto rss = std::make_shared<int64_t>(0);
  cmd->add_option("--backend", *backends, "comma-separated: cpu, onednn, simt, gpu_emu, cuda, hip, ref, or all")
      ->delimiter(',')
      ->capture_default_str();
  CLI::Option* models =
      cmd->add_option("--models", o->models, "comma-separated models: built-in names or ONNX files (path.onnx)")
          ->delimiter(',')
          ->capture_default_str();
  cmd->add_option("--data", synthetic_data_source(),
                  "synthetic: random images of each model's geometry (the only source: no dataset needs to fit)")
      ->check(CLI::IsMember({"synthetic"}))
      ->capture_default_str();
  CLI::Option* threads = add_threads_option(*cmd, o->threads, "threads (0: every hardware thread)");
  cmd->add_option("--batch", o->batch, "training batch (op cases use its shapes)")->capture_default_str();
  cmd->add_option("--infer-batch", o->infer_batch, "inference batch")->capture_default_str();
  cmd->add_option("--validate-batch", o->validate_batch, "batch of the validation run against ref")->capture_default_str();
  cmd->add_option("--min-time", o->min_time, "seconds of timed repeats per case (per round with a peer)")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed runs first")->capture_default_str();
  CLI::Option* against = cmd->add_option("--against", o->against, "torch: run the LibTorch peer beside parity");
  cmd->add_option("--rounds", o->rounds, "parity/peer alternations per model case")->capture_default_str();
  auto precisions = std::make_shared<std::vector<std::string>>(std::vector<std::string>{"f32"});
  CLI::Option* precision =
      cmd->add_option("--precision", *precisions,
                      "comma-separated f32, bf16, fp16: time the training step under each (parity train --precision's "
                      "autocast; fp16 without loss scaling), interleaved round by round, each half one beside f32 as "
                      "a ratio; with --against torch the peer also runs CPU bf16 autocast (no fp16 peer: torch's CPU "
                      "autocast is bf16 only)")
          ->delimiter(',')
          ->capture_default_str();
  cmd->add_option("--peer", o->peer_path, "the peer executable (default: $PARITY_TORCH_PEER, else the one built)");
  cmd->add_option("--jemalloc", o->jemalloc, "libjemalloc.so.2 to try preloading into the peer");
  cmd->add_option("--json", o->json_path, "also write the results as JSON here");
  cmd->add_option("--weights-dir", o->weights_dir,
                  "keep the weights given to the peer here and print the command that runs the peer alone");
  cmd->add_option("--seed", o->seed, "seed of the weights and the synthetic batches")->capture_default_str();
  auto distributed = std::make_shared<std::string>("auto");
  auto bucket_mb = std::make_shared<double>(1.0);
  cmd->add_option("--distributed", *distributed,
                  "under mpirun: time data-parallel training steps of --models on one host --backend, split into "
                  "compute and exposed communication: mpi, off, or auto (mpi when launched as more than one process)")
      ->check(CLI::IsMember({"auto", "mpi", "off"}))
      ->capture_default_str();
  cmd->add_option("--bucket-mb", *bucket_mb, "--distributed: MiB of gradients per all-reduce (each case also runs "
                                             "one all-reduce after the backward)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--thread-scaling", o->scaling_threads,
                  fmt::format("LOW,HIGH, e.g. 1,2: instead of the cases, time whole training steps of --models "
                              "(default seed-cnn-112,seed-cnn) on LOW and on HIGH threads in --scaling-rounds "
                              "alternated rounds, and report HIGH/LOW as the median of the per-round ratios, or as "
                              "inconclusive when either count's round medians spread by more than {0:.0f}% "
                              "((max-min)/median) or other processes kept more than {0:.0f}% of the CPUs busy",
                              100 * bench::kScalingNoiseLimit))
      ->delimiter(',')
      ->excludes(threads)
      ->excludes(against);
  cmd->add_option("--scaling-rounds", o->scaling_rounds,
                  fmt::format("--thread-scaling, and the head-to-head of several backends: rounds, each timing LOW then HIGH "
                              "(or one backend then the other; at least {})",
                              bench::kMinScalingRounds))
      ->capture_default_str();
  cmd->add_flag("--no-ops", (*flags)["no-ops"], "skip the per-op cases");
  cmd->add_flag("--no-models", (*flags)["no-models"], "skip the model cases");
  cmd->add_flag("--no-scaling", (*flags)["no-scaling"], "do not also time training on 1 thread");
  cmd->add_flag("--no-rss", (*flags)["no-rss"], "do not measure a training process's peak memory");
  cmd->add_flag("--no-head-to-head", (*flags)["no-head-to-head"],
                "with several backends, skip the head-to-head at the end (the first backend's training step against "
                "each other's, alternated for --scaling-rounds rounds)");
  cmd->add_flag("--rss-worker", (*flags)["rss-worker"])->group("");  // spawned by the bench itself
  cmd->add_option("--rss-steps", *rss)->group("");

  CLI::App* compare = cmd->add_subcommand("compare", "two --json reports side by side, with B's speed over A's");
  auto paths = std::make_shared<std::vector<std::string>>();
  compare->add_option("files", *paths, "A.json B.json")->required()->expected(2);
  compare->callback([&run, paths] { run = [paths] { return bench::compare_reports((*paths)[0], (*paths)[1]); }; });

  cmd->callback([&run, o, backends, flags, rss, compare, distributed, bucket_mb, models, precisions, precision] {
    if (compare->parsed()) return;
    const bool models_given = models->count() > 0;
    const bool precision_given = precision->count() > 0;
    run = [o, backends, flags, rss, distributed, bucket_mb, models_given, precisions, precision_given] {
      o->precisions = parse_precisions(*precisions);
      const bool data_parallel = *distributed == "mpi" || (*distributed == "auto" && launch_env().size > 1);
      if (precision_given && o->precisions != std::vector<Precision>{Precision::f32} &&
          (!o->scaling_threads.empty() || data_parallel))
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("bench --precision {}: only the ordinary bench times half precisions, not {}",
                                fmt::join(*precisions, ","),
                                data_parallel ? "--distributed mpi" : "--thread-scaling"));
      if (!o->scaling_threads.empty()) {
        if (data_parallel)
          throw Error(ErrorKind::invalid_argument,
                      "bench --thread-scaling times one process: it does not run under --distributed mpi");
        bench::BenchOptions opts = *o;
        if (!models_given) opts.models = {"seed-cnn-112", "seed-cnn"};
        opts.backends = expand_backends(*backends);
        return bench::run_thread_scaling(opts);
      }
      if (data_parallel) {
        if (backends->size() != 1 || ((*backends)[0] != "cpu" && (*backends)[0] != "simt"))
          throw Error(ErrorKind::invalid_argument,
                      "bench --distributed mpi all-reduces host memory: give one --backend, cpu or simt");
        bench::DistributedBenchOptions d;
        d.models = o->models;
        d.backend = (*backends)[0];
        d.batch = o->batch;
        d.threads = o->threads;
        d.min_time = o->min_time;
        d.warmup = o->warmup;
        d.bucket_mb = *bucket_mb;
        d.seed = o->seed;
        return bench::run_distributed_bench(d);
      }
      bench::BenchOptions opts = *o;
      opts.ops = !(*flags)["no-ops"];
      opts.model_cases = !(*flags)["no-models"];
      opts.scaling = !(*flags)["no-scaling"];
      opts.measure_rss = !(*flags)["no-rss"];
      opts.head_to_head = !(*flags)["no-head-to-head"];
      opts.backends = expand_backends(*backends);
      if ((*flags)["rss-worker"])
        return bench::run_rss_worker(opts.models.at(0), opts.backends.at(0), opts.batch, opts.threads, *rss, opts.seed);
      opts.self_path = self_executable();
      return bench::run_bench(opts);
    };
  });
}

}  // namespace parity::tools
