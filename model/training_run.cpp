// model/training_run.cpp — the epoch loop behind `parity train` and `parity eval`: options
// checks, data, checkpoints (save / resume), metrics CSV, and evaluation after each epoch.
#include <chrono>
#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "model/pruning.h"
#include "util/atomic_file.h"
#include "parity/error.h"
#include "parity/trainer.h"

namespace parity {
namespace {

using Clock = std::chrono::steady_clock;

// Messages name the TrainOptions field ("TrainOptions::batch"), not a flag of some front end:
// the CLI spells the field as its flag (tools/cmd_train.cpp).
void check_options(const TrainOptions& o) {
  auto bad = [](const std::string& msg) { throw Error(ErrorKind::invalid_argument, msg); };
  if (o.epochs < 1) bad(fmt::format("TrainOptions::epochs must be >= 1, got {}", o.epochs));
  if (o.batch < 1) bad(fmt::format("TrainOptions::batch must be >= 1, got {}", o.batch));
  if (!(o.lr > 0.0f) || !std::isfinite(o.lr))
    bad(fmt::format("TrainOptions::lr must be a finite number > 0, got {}", o.lr));
  if (!(o.momentum >= 0.0f) || !std::isfinite(o.momentum))
    bad(fmt::format("TrainOptions::momentum must be >= 0, got {}", o.momentum));
  if (o.momentum != 0.0f && o.optimizer != OptimizerConfig::Kind::sgd)
    bad("TrainOptions::momentum applies to TrainOptions::optimizer sgd only");
  if (o.nesterov && (o.optimizer != OptimizerConfig::Kind::sgd || !(o.momentum > 0.0f)))
    bad("TrainOptions::nesterov needs TrainOptions::optimizer sgd with TrainOptions::momentum > 0");
  if (!(o.weight_decay >= 0.0f) || !std::isfinite(o.weight_decay))
    bad(fmt::format("TrainOptions::weight_decay must be a finite number >= 0, got {}", o.weight_decay));
  if (o.lr_schedule != "constant" && o.lr_schedule != "step" && o.lr_schedule != "cosine")
    bad(fmt::format("TrainOptions::lr_schedule must be constant, step or cosine, got '{}'", o.lr_schedule));
  if (o.lr_step_epochs < 1) bad(fmt::format("TrainOptions::lr_step_epochs must be >= 1, got {}", o.lr_step_epochs));
  if (!(o.lr_gamma >= 0.0f) || !std::isfinite(o.lr_gamma))
    bad(fmt::format("TrainOptions::lr_gamma must be a finite number >= 0, got {}", o.lr_gamma));
  if (!(o.lr_min >= 0.0f) || !std::isfinite(o.lr_min))
    bad(fmt::format("TrainOptions::lr_min must be a finite number >= 0, got {}", o.lr_min));
  if (o.warmup_steps < 0) bad(fmt::format("TrainOptions::warmup_steps must be >= 0, got {}", o.warmup_steps));
  if (!(o.warmup_start_factor > 0.0f && o.warmup_start_factor <= 1.0f))
    bad(fmt::format("TrainOptions::warmup_start_factor must be in (0, 1], got {}", o.warmup_start_factor));
  if (!(o.clip_grad_norm >= 0.0f) || !std::isfinite(o.clip_grad_norm))
    bad(fmt::format("TrainOptions::clip_grad_norm must be a finite number >= 0 (0: off), got {}", o.clip_grad_norm));
  if (o.limit < 0) bad(fmt::format("TrainOptions::limit must be >= 0, got {}", o.limit));
  if (o.max_steps < 0) bad(fmt::format("TrainOptions::max_steps must be >= 0, got {}", o.max_steps));
  if (o.threads < 0) bad(fmt::format("TrainOptions::threads must be >= 0, got {}", o.threads));
  if (o.max_consecutive_skipped < 0)
    bad(fmt::format("TrainOptions::max_consecutive_skipped must be >= 0, got {}", o.max_consecutive_skipped));
  if ((o.precision == Precision::f16 || o.scaling.in_every_precision) && o.data_parallel)
    bad("TrainOptions::precision fp16 (loss scaling) is not implemented for data-parallel training; use bf16 or f32");
  if (!(o.val_split >= 0.0 && o.val_split < 1.0))
    bad(fmt::format("TrainOptions::val_split must be in [0, 1) (a fraction of the training set), got {}", o.val_split));
  if (!o.init.empty() && !o.resume.empty())
    bad("TrainOptions::init and TrainOptions::resume exclude each other: a checkpoint holds its own weights");
}

// What must match between a checkpoint and the run that resumes it, so that the resumed run
// sees the same batches in the same order as an uninterrupted one.
std::map<std::string, std::string> run_identity(const TrainOptions& o) {
  return {{"model", o.model},
          {"optimizer", optimizer_name(o.optimizer)},
          {"batch", std::to_string(o.batch)},
          {"seed", std::to_string(o.seed)},
          {"limit", std::to_string(o.limit)},
          {"lr", fmt::format("{}", o.lr)},
          {"momentum", fmt::format("{}", o.momentum)},
          {"val_split", fmt::format("{}", o.val_split)},
          {"nesterov", o.nesterov ? "1" : "0"},
          {"weight_decay", fmt::format("{}", o.weight_decay)},
          {"lr_schedule", o.lr_schedule == "step"     ? fmt::format("step {} {}", o.lr_step_epochs, o.lr_gamma)
                          : o.lr_schedule == "cosine" ? fmt::format("cosine {} {}", o.lr_min, o.epochs)
                                                      : o.lr_schedule},
          {"warmup", fmt::format("{} {}", o.warmup_steps, o.warmup_start_factor)},
          {"clip_grad_norm", fmt::format("{}", o.clip_grad_norm)},
          {"ranks", std::to_string(o.data_parallel ? o.data_parallel->size() : 1)},
          {"precision", precision_name(o.precision)},
          {"loss_scaling", o.precision == Precision::f16 || o.scaling.in_every_precision
                               ? fmt::format("{} {} {} {}", o.scaling.initial_scale, o.scaling.growth_factor,
                                             o.scaling.backoff_factor, o.scaling.growth_interval)
                               : std::string("off")}};
}

// Identity keys added after checkpoints were first written, with the value older checkpoints imply.
const std::map<std::string, std::string> kIdentityDefaults = {
    {"val_split", "0"},           {"nesterov", "0"}, {"weight_decay", "0"}, {"lr_schedule", "constant"},
    {"warmup", fmt::format("0 {}", 1.0f / 3.0f)}, {"clip_grad_norm", "0"}, {"ranks", "1"},
    {"precision", "f32"}, {"loss_scaling", "off"}};

// The optimizer of a run of `steps_per_epoch` steps per epoch (the schedules count steps).
OptimizerConfig optimizer_of(const TrainOptions& o, int64_t steps_per_epoch) {
  OptimizerConfig opt;
  opt.kind = o.optimizer;
  opt.lr = o.lr;
  opt.momentum = o.momentum;
  opt.nesterov = o.nesterov;
  opt.weight_decay = o.weight_decay;
  opt.clip_grad_norm = o.clip_grad_norm;
  LrSchedule& s = opt.schedule;
  s.warmup_steps = o.warmup_steps;
  s.warmup_start_factor = o.warmup_start_factor;
  auto steps = [](int64_t n, const char* what) {
    if (n > INT32_MAX) throw Error(ErrorKind::invalid_argument, fmt::format("{}: {} steps is too many", what, n));
    return static_cast<int32_t>(n);
  };
  if (o.lr_schedule == "step") {
    s.kind = LrSchedule::Kind::step;
    s.step_size = steps(int64_t{o.lr_step_epochs} * steps_per_epoch, "TrainOptions::lr_step_epochs");
    s.gamma = o.lr_gamma;
  } else if (o.lr_schedule == "cosine") {
    s.kind = LrSchedule::Kind::cosine;
    int64_t total = int64_t{o.epochs} * steps_per_epoch;
    if (o.max_steps > 0) total = std::min(total, o.max_steps);
    if (total - o.warmup_steps < 1)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("TrainOptions::warmup_steps {} leaves no step of the run's {} for the cosine schedule",
                              o.warmup_steps, total));
    s.total_steps = steps(total - o.warmup_steps, "TrainOptions::lr_schedule cosine");
    s.min_lr = o.lr_min;
  }
  return opt;
}

// The data's image size and class count against the model's: the message names both.
void check_data_fits(const ModelSpec& spec, const std::string& folder, const Dataset& train, const Dataset& test) {
  const int classes = std::max(train.num_classes, test.num_classes);
  const BatchGeometry& g = spec.geometry;
  const bool same_size = train.rows == test.rows && train.cols == test.cols;
  if (same_size && geometry_height(g, train.rows) == spec.height && geometry_width(g, train.cols) == spec.width &&
      classes == spec.num_classes)
    return;
  const std::string data = same_size ? fmt::format("images are 1x{}x{}", train.rows, train.cols)
                                     : fmt::format("training images are 1x{}x{} but test images 1x{}x{}", train.rows,
                                                   train.cols, test.rows, test.cols);
  const bool as_is = g.upsample == 1 && g.channels == 1 && g.height == 0;
  const std::string shown = as_is ? std::string()
                                  : fmt::format(" (shown to it as {}x{}x{})", spec.channels, spec.height, spec.width);
  const std::string wants = g.height > 0 ? std::string("any size") :
                            fmt::format("1x{}x{}", spec.height / g.upsample, spec.width / g.upsample);
  throw Error(ErrorKind::shape, fmt::format("data in '{}': {} with {} classes; model {} expects {}{} and {} classes", folder,
                                            data, classes, spec.name, wants, shown, spec.num_classes));
}

// A model file that fixes its batch dimension runs at that batch only, so every batch of the run
// (the last, partial one included) must be full: refused up front, naming the numbers.
void check_fixed_batch(const ModelSpec& spec, int64_t batch, const std::vector<std::pair<const char*, int64_t>>& sets) {
  const int64_t fixed = spec.layer_graph ? spec.layer_graph->fixed_batch() : 0;
  if (fixed == 0) return;
  if (batch != fixed)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("model {} fixes its batch dimension at {}, but the batch is {}: use --batch {} (or export "
                            "the model with a dynamic batch axis)",
                            spec.name, fixed, batch, fixed));
  for (const auto& [what, count] : sets)
    if (count % fixed != 0)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("model {} fixes its batch dimension at {}: the {} {} images leave a last batch of {} it "
                              "cannot take (use --limit with a multiple of {}, or export the model with a dynamic "
                              "batch axis)",
                              spec.name, fixed, count, what, count % fixed, fixed));
}

// With validation the columns val_loss and val_accuracy follow, filled on the `test` rows; with
// loss scaling (fp16) then loss_scale (the scale the step used) and skipped_steps (the run's
// skipped steps so far), filled on every row.
struct MetricsLog {
  std::string path;
  bool validation = false;
  const Trainer* scaled = nullptr;  // the loss-scaled trainer, or null
  std::string text = std::string("split,epoch,step,loss,accuracy,images_per_s") +
                     (validation ? ",val_loss,val_accuracy" : "") + (scaled ? ",loss_scale,skipped_steps\n" : "\n");
  void row(const char* split, int epoch, int64_t step, double loss, double accuracy, double ips,
           const std::optional<EvalResult>& val = std::nullopt, std::optional<float> step_scale = std::nullopt) {
    if (path.empty()) return;
    text += fmt::format("{},{},{},{:.6g},{:.6g},{:.1f}", split, epoch + 1, step, loss, accuracy, ips);
    if (validation) text += val ? fmt::format(",{:.6g},{:.6g}", val->loss, val->accuracy) : std::string(",,");
    if (scaled)
      text += fmt::format(",{:.9g},{}", step_scale.value_or(scaled->loss_scale().scale),
                          scaled->loss_scale().skipped_steps);
    text += "\n";
  }
  void flush() const {
    if (!path.empty()) write_file_atomically(path, text);
  }
};

// This rank's share of a global batch of n images starting at `first`: contiguous, sizes
// differing by at most one (rank r takes [first + r*n/size, first + (r+1)*n/size)).
struct Share {
  int64_t first = 0, count = 0;
};
Share share_of(int64_t first, int64_t n, int rank, int size) {
  const int64_t begin = n * rank / size, end = n * (rank + 1) / size;
  return Share{first + begin, end - begin};
}

// Loss and accuracy over `data` computed once across the ranks: each evaluates its contiguous
// share, and the sums are added.
EvalResult evaluate_shared(Trainer& trainer, const Dataset& data, DataParallel* dp) {
  if (!dp) return trainer.evaluate(data);
  const Share mine = share_of(0, data.count, dp->rank(), dp->size());
  std::vector<int64_t> indices(static_cast<size_t>(mine.count));
  for (int64_t i = 0; i < mine.count; ++i) indices[static_cast<size_t>(i)] = mine.first + i;
  double sums[3] = {0, 0, 0};
  if (mine.count > 0) {
    const EvalResult part = trainer.evaluate(subset(data, indices));
    sums[0] = part.loss * static_cast<double>(part.images);
    sums[1] = part.accuracy * static_cast<double>(part.images);
    sums[2] = static_cast<double>(part.images);
  }
  dp->sum(sums, 3);
  EvalResult all;
  all.images = static_cast<int64_t>(sums[2]);
  all.loss = all.images ? sums[0] / sums[2] : 0.0;
  all.accuracy = all.images ? sums[1] / sums[2] : 0.0;
  return all;
}

// What every rank must agree on: the run's identity and what it reads.
std::string configuration_of(const TrainOptions& o) {
  std::string text;
  for (const auto& [key, value] : run_identity(o)) text += key + "=" + value + "\n";
  text += "backend=" + o.backend + "\n" + "data=" + o.data + "\n" + "epochs=" + std::to_string(o.epochs) + "\n" +
          "max_steps=" + std::to_string(o.max_steps) + "\n" + "init=" + o.init + "\n" + "resume=" + o.resume + "\n" +
          "save=" + o.save + "\n";
  return text;
}

}  // namespace

TrainSummary run_training(const TrainOptions& o, const TrainCallbacks& cb) {
  check_options(o);
  DataParallel* dp = o.data_parallel.get();
  if (dp) {
    if (o.batch % dp->size() != 0)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("TrainOptions::batch {} is the global batch and must be divisible by the {} ranks", o.batch,
                              dp->size()));
    dp->check_same_configuration(configuration_of(o));
  }
  const bool writer = !dp || dp->rank() == 0;  // the rank that writes save and metrics
  const ModelSpec spec = load_model(o.model);
  auto info = [&](const std::string& msg) { if (cb.on_info) cb.on_info(msg); };

  const std::string folder = o.data.empty() ? default_data_folder() : o.data;
  Dataset train = load_idx_folder(folder, Split::train, o.limit);
  Dataset test = load_idx_folder(folder, Split::test);
  check_data_fits(spec, folder, train, test);
  // The training order indexes `trained` (all of train when nothing is held out).
  HoldOut parts;
  try {
    parts = hold_out(train.count, o.val_split, o.seed);
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("TrainOptions::val_split: {}", e.what()));
  }
  std::optional<Dataset> validation;
  if (!parts.validation.empty()) validation = subset(train, parts.validation);
  const int64_t train_count = static_cast<int64_t>(parts.train.size());
  check_fixed_batch(spec, o.batch, {{"training", train_count}, {"test", test.count}, {"validation", static_cast<int64_t>(parts.validation.size())}});

  OptimizerConfig opt = optimizer_of(o, (train_count + o.batch - 1) / o.batch);
  if (!o.mask.empty()) opt.gradient_masks = read_gradient_masks(spec, read_safetensors(o.mask), o.mask);
  BackendOptions bo;
  bo.threads = o.threads;
  bo.device = dp ? dp->device() : 0;
  Trainer trainer = [&] {
    try {
      // Each rank compiles steps of its share of the global batch.
      const int64_t local_batch = dp ? o.batch / dp->size() : o.batch;
      std::unique_ptr<Backend> backend = create_backend(o.backend, bo);
      const std::string backend_name = backend->name();
      try {
        return Trainer(spec, std::move(backend), opt, local_batch, o.seed,
                       dp ? dp->step_extension(spec) : TrainingStepExtension{}, o.precision, o.scaling);
      } catch (const Error& e) {
        // The graph asks for half values the backend does not run: say which setting asked.
        if (e.kind() != ErrorKind::backend || o.precision == Precision::f32) throw;
        throw Error(ErrorKind::backend, fmt::format("TrainOptions::precision {} cannot run on backend '{}': {}",
                                                    precision_name(o.precision), backend_name, e.what()));
      }
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::memory) throw;
      throw Error(ErrorKind::memory, fmt::format("TrainOptions::batch {} is too large for this machine: {}", o.batch, e.what()));
    }
  }();
  info(fmt::format("model {} on backend {} ({} threads), {} training{} and {} test images", spec.name,
                   trainer.backend().name(), trainer.backend().threads(), train_count,
                   validation ? fmt::format(", {} validation", validation->count) : std::string(), test.count));
  if (o.precision == Precision::f32)
    info(fmt::format("precision f32 on backend {}: every op in f32", trainer.backend().name()));
  else
    info(fmt::format("precision {} on backend {}: conv2d and linear on {} copies of x and w (f32 master weights, f32 "
                     "bias and accumulation), relu/pools/reshape in their input's dtype, softmax, loss and optimizer "
                     "in f32{}",
                     precision_name(o.precision), trainer.backend().name(), to_string(compute_dtype(o.precision)),
                     trainer.loss_scaled()
                         ? fmt::format("; dynamic loss scaling from {} (x{} after {} good steps, x{} and the step "
                                       "skipped on an inf/NaN gradient)",
                                       trainer.loss_scale().scale, o.scaling.growth_factor, o.scaling.growth_interval,
                                       o.scaling.backoff_factor)
                         : std::string()));
  if (!o.mask.empty()) {
    int64_t pruned = 0, total = 0;
    for (const auto& entry : opt.gradient_masks) {
      total += entry.second.numel();
      pruned += std::count(entry.second.f32(), entry.second.f32() + entry.second.numel(), 0.0f);
    }
    info(fmt::format("pruning held: {} masks from {}, {} of their {} elements ({:.1f}%) kept at 0", opt.gradient_masks.size(),
                     o.mask, pruned, total, 100.0 * static_cast<double>(pruned) / static_cast<double>(total)));
  }

  const int64_t batches_per_epoch = (train_count + o.batch - 1) / o.batch;
  int start_epoch = 0;
  int64_t start_batch = 0;
  if (!o.resume.empty()) {
    TensorFile ckpt = read_safetensors(o.resume);
    for (const auto& [key, want] : run_identity(o)) {
      auto it = ckpt.metadata.find(key);
      auto implied = kIdentityDefaults.find(key);
      if (it == ckpt.metadata.end() && implied == kIdentityDefaults.end())
        throw Error(ErrorKind::data, fmt::format("{}: not a parity checkpoint (no '{}' in its metadata)", o.resume, key));
      const std::string& had = it != ckpt.metadata.end() ? it->second : implied->second;
      if (had != want)
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("{}: checkpoint was made with {} {}, this run asks for {}: resume with the same setting",
                                o.resume, key, had, want));
    }
    trainer.restore(ckpt, o.resume);
    start_epoch = std::stoi(ckpt.metadata.at("epoch"));
    start_batch = std::stoll(ckpt.metadata.at("batch_in_epoch"));
    if (start_batch >= batches_per_epoch) ++start_epoch, start_batch = 0;
    info(fmt::format("resumed from {} at epoch {}, batch {}, step {}", o.resume, start_epoch + 1, start_batch,
                     trainer.step()));
  } else if (!o.init.empty()) {
    trainer.load_weights(read_safetensors(o.init).tensors, o.init);
    info(fmt::format("weights from {}", o.init));
  } else {
    trainer.load_weights(init_weights(spec, o.seed), fmt::format("seed {}", o.seed));
  }

  auto save = [&](int epoch, int64_t batch_in_epoch) {
    if (o.save.empty() || !writer) return;
    TensorFile file = trainer.checkpoint();
    file.metadata = run_identity(o);
    file.metadata["format"] = "parity-checkpoint-1";
    file.metadata["epoch"] = std::to_string(epoch);
    file.metadata["batch_in_epoch"] = std::to_string(batch_in_epoch);
    write_safetensors(o.save, file);
  };

  MetricsLog metrics{writer ? o.metrics : std::string(), validation.has_value(),
                     trainer.loss_scaled() ? &trainer : nullptr};
  TrainSummary summary;
  Tensor x(Shape{trainer.batch(), spec.channels, spec.height, spec.width}, DType::f32);
  Tensor y(Shape{trainer.batch()}, DType::i32);
  for (int epoch = start_epoch; epoch < o.epochs; ++epoch) {
    std::vector<int64_t> order = epoch_order(train_count, o.seed, epoch, true);
    for (int64_t& at : order) at = parts.train[static_cast<size_t>(at)];
    double loss_sum = 0, correct = 0, seconds = 0;
    int64_t images = 0;
    for (int64_t b = epoch == start_epoch ? start_batch : 0; b < batches_per_epoch; ++b) {
      bool stop = cb.stop && cb.stop->load();
      if (dp) {
        // Every rank stops at the same batch, whichever of them was asked to (Ctrl-C reaches
        // the ranks at different moments).
        double asked = stop ? 1.0 : 0.0;
        dp->sum(&asked, 1);
        stop = asked > 0;
      }
      if (stop || (o.max_steps > 0 && trainer.step() >= o.max_steps)) {
        save(epoch, b);
        summary.stopped_early = true;
        summary.steps = trainer.step();
        metrics.flush();
        return summary;
      }
      const int64_t global_n = std::min(o.batch, train_count - b * o.batch);
      // A distributed rank trains on its share; a last batch with fewer images than ranks is
      // skipped by every rank alike (a rank with no images has no step to take).
      const Share share = dp ? share_of(b * o.batch, global_n, dp->rank(), dp->size()) : Share{b * o.batch, global_n};
      if (dp && global_n < dp->size()) continue;
      const int64_t n = share.count;
      const int64_t full = trainer.batch();
      Tensor xb = n == full ? Tensor() : Tensor(Shape{n, spec.channels, spec.height, spec.width}, DType::f32);
      Tensor yb = n == full ? Tensor() : Tensor(Shape{n}, DType::i32);
      Tensor& xs = n == full ? x : xb;
      Tensor& ys = n == full ? y : yb;
      fill_batch(train, order, share.first, spec.geometry, xs, ys);
      auto t0 = Clock::now();
      if (dp) dp->before_step(n, global_n);
      StepResult r = trainer.train_step(xs, ys);
      if (dp) {
        dp->after_step(trainer);
        // The figures of the whole global batch: every rank reports the same.
        double sums[2] = {double(r.loss) * double(n), double(r.correct)};
        dp->sum(sums, 2);
        r.loss = static_cast<float>(sums[0] / double(global_n));
        r.correct = static_cast<float>(sums[1]);
        r.images = global_n;
      }
      seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      if (r.skipped) {
        // fp16: an inf or NaN gradient (or loss) skips the step and halves the scale; it fails
        // the run only once the scale cannot explain it (<= 1) or it keeps happening.
        const LossScaleState& s = trainer.loss_scale();
        if (!std::isfinite(r.loss) && r.loss_scale <= 1.0f)
          throw Error(ErrorKind::numeric, fmt::format("loss became {} at loss scale {} (epoch {}, batch {}, step {}): "
                                                      "stopping; try a smaller TrainOptions::lr",
                                                      r.loss, r.loss_scale, epoch + 1, b + 1, trainer.step()));
        if (s.consecutive_skipped > o.max_consecutive_skipped)
          throw Error(ErrorKind::numeric,
                      fmt::format("{} steps in a row skipped for inf/NaN gradients (epoch {}, batch {}, loss scale now "
                                  "{}): stopping; try a smaller TrainOptions::lr or precision bf16",
                                  s.consecutive_skipped, epoch + 1, b + 1, s.scale));
        metrics.row("train", epoch, trainer.step(), r.loss, r.correct / global_n, images && seconds > 0 ? images / seconds : 0.0,
                    std::nullopt, r.loss_scale);
        continue;
      }
      if (!std::isfinite(r.loss))
        throw Error(ErrorKind::numeric, fmt::format("loss became {} at step {} (epoch {}, batch {}): stopping; try a "
                                                    "smaller TrainOptions::lr",
                                                    r.loss, trainer.step(), epoch + 1, b + 1));
      loss_sum += double(r.loss) * global_n;
      correct += r.correct;
      images += global_n;
      const double ips = seconds > 0 ? images / seconds : 0.0;
      metrics.row("train", epoch, trainer.step(), r.loss, r.correct / global_n, ips, std::nullopt, r.loss_scale);
      if (cb.on_step) cb.on_step(TrainProgress{epoch, o.epochs, b + 1, batches_per_epoch, trainer.step(), loss_sum / images, ips});
    }
    EpochReport report;
    report.epoch = epoch;
    report.train_loss = images ? loss_sum / images : 0;
    report.train_accuracy = images ? correct / images : 0;
    report.images_per_second = seconds > 0 ? images / seconds : 0;
    if (validation) report.validation = evaluate_shared(trainer, *validation, dp);
    report.test = evaluate_shared(trainer, test, dp);
    metrics.row("test", epoch, trainer.step(), report.test.loss, report.test.accuracy, 0.0, report.validation);
    metrics.flush();
    // A finite training loss can still leave weights whose test (or validation) loss is not: the
    // run failed all the same, and its weights are not saved over the last good checkpoint.
    const bool bad_validation = report.validation && !std::isfinite(report.validation->loss);
    if (!std::isfinite(report.test.loss) || bad_validation) {
      if (cb.on_epoch) cb.on_epoch(report);
      const char* which = std::isfinite(report.test.loss) ? "validation" : "test";
      const double loss = std::isfinite(report.test.loss) ? report.validation->loss : report.test.loss;
      throw Error(ErrorKind::numeric, fmt::format("{} loss became {} after epoch {} (step {}): stopping; try a "
                                                  "smaller TrainOptions::lr",
                                                  which, loss, epoch + 1, trainer.step()));
    }
    save(epoch + 1, 0);
    summary.epochs.push_back(report);
    if (cb.on_epoch) cb.on_epoch(report);
  }
  summary.steps = trainer.step();
  return summary;
}

EvalResult run_evaluation(const std::string& model, const std::string& backend, int threads,
                          const std::string& weights_path, const std::string& data, int64_t batch) {
  const ModelSpec spec = load_model(model);
  if (batch < 1) throw Error(ErrorKind::invalid_argument, fmt::format("evaluation batch must be >= 1, got {}", batch));
  if (threads < 0) throw Error(ErrorKind::invalid_argument, fmt::format("evaluation threads must be >= 0, got {}", threads));
  if (weights_path.empty() && !spec.layer_graph)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("evaluating built-in model {} needs weights (--weights W.safetensors)", spec.name));
  TensorFile weights;
  if (!weights_path.empty()) weights = read_safetensors(weights_path);
  else weights.tensors = init_weights(spec, 0);  // the model file's own
  const std::string folder = data.empty() ? default_data_folder() : data;
  Dataset test = load_idx_folder(folder, Split::test);
  check_data_fits(spec, folder, test, test);
  check_fixed_batch(spec, batch, {{"test", test.count}});
  BackendOptions bo;
  bo.threads = threads;
  Trainer trainer(spec, create_backend(backend, bo), OptimizerConfig{}, batch);  // evaluation in f32
  trainer.load_weights(weights.tensors, weights_path.empty() ? spec.name : weights_path);
  return trainer.evaluate(test);
}

}  // namespace parity
