// parity/trainer.h — training and evaluating a model on one backend: the Trainer (compiled
// steps sharing one set of weights), checkpoints, and the epoch loop behind `parity train`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "parity/backend.h"
#include "parity/data.h"
#include "parity/graph.h"
#include "parity/model.h"
#include "parity/safetensors.h"
#include "parity/tensor.h"

namespace parity {

class CompiledStep;

struct StepResult {
  // Mean cross-entropy per image of the batch (a model file's own loss of reduction sum is
  // divided by the batch; with ignore_index, the mean over the rows not ignored).
  float loss = 0;
  float correct = 0;    // rows whose argmax is the label
  int64_t images = 0;
  // fp16 loss scaling (LossScaling): the scale this step's loss was multiplied by (1 without
  // scaling), and whether the step was skipped (a gradient was inf or NaN: the parameters and
  // the optimizer state are untouched, and Trainer::step() did not advance).
  float loss_scale = 1.0f;
  bool skipped = false;
};

// Dynamic loss scaling as torch.cuda.amp.GradScaler (its defaults): the loss is multiplied by
// `scale` before autodiff and the gradients divided by it in f32; a step whose gradients hold
// an inf or NaN is skipped and the scale multiplied by backoff_factor; after growth_interval
// consecutive good steps it is multiplied by growth_factor. Trainers of Precision::f16 use it.
struct LossScaling {
  float initial_scale = 65536.0f;  // 2^16
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int64_t growth_interval = 2000;
  // Scale in f32 and bf16 too (GradScaler allows it; tests use it to reach the skip without
  // half ops). Precision::f16 always scales.
  bool in_every_precision = false;
};

// Where the scaling stands (the checkpoint's "grad_scaler.*" tensors).
struct LossScaleState {
  float scale = 1.0f;
  int64_t growth_tracker = 0;       // good steps since the scale last changed
  int64_t skipped_steps = 0;        // skipped steps of the whole run
  int64_t consecutive_skipped = 0;  // skipped steps since the last good one
};

struct EvalResult {
  double loss = 0;      // mean over every image
  double accuracy = 0;  // fraction in [0, 1]
  int64_t images = 0;
};

// What a data-parallel run adds to every training step a Trainer compiles (dist/ fills it in):
// the parameters' gradients kept (so that they have an address), and a call once each training
// step is compiled, with its executable, its plan and the plan indices of the gradients (in
// spec.params order; a parameter the loss does not reach has none), which sets node hooks on it
// (Executable::set_node_hooks: the gradient all-reduce).
struct TrainingStepExtension {
  bool keep_gradients = false;
  std::function<void(Executable& executable, const Plan& plan, int64_t batch, const std::vector<int32_t>& gradients)>
      compiled;
};

// A model, an optimizer and a backend. Steps are compiled per batch size on first use (the
// full batch, the last partial batch, evaluation) and share one set of weights and optimizer
// state on the backend. Not thread-safe.
class Trainer {
 public:
  // `seed` keys the dropout masks of the training steps (ForwardOptions), as TrainOptions::seed does.
  // `extension` applies to every training step (not to evaluation steps).
  // `precision` rewrites every graph the Trainer compiles (autocast, parity/model.h); f16
  // training steps use `scaling` (LossScaling), and their optimizer update is compiled apart
  // from the gradients so that a step can be skipped.
  Trainer(const ModelSpec& spec, std::unique_ptr<Backend> backend, const OptimizerConfig& optimizer, int64_t batch,
          uint64_t seed = 0, TrainingStepExtension extension = {}, Precision precision = Precision::f32,
          const LossScaling& scaling = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const ModelSpec& spec() const { return spec_; }
  Backend& backend() { return *backend_; }
  int64_t batch() const { return batch_; }
  int64_t step() const { return step_; }  // optimizer steps taken so far
  Precision precision() const { return precision_; }
  bool loss_scaled() const { return precision_ == Precision::f16 || scaling_.in_every_precision; }
  const LossScaleState& loss_scale() const { return scaler_; }

  // Every parameter must be present with its shape (errors name the tensor and both shapes).
  void load_weights(const std::map<std::string, Tensor>& weights, const std::string& source = "weights");
  std::map<std::string, Tensor> weights() const;

  // Weights, optimizer state and step count as safetensors content (PyTorch names for the
  // weights; "optimizer.<param>.<state>" and "optimizer.step" for the rest; with loss scaling
  // also "grad_scaler.scale" f32 [] and "grad_scaler.growth_tracker", ".skipped_steps",
  // ".consecutive_skipped" i64 []).
  TensorFile checkpoint() const;
  void restore(const TensorFile& file, const std::string& source);

  // One optimizer step on x f32 [n,C,H,W], y i32 [n] with 1 <= n <= batch().
  StepResult train_step(const Tensor& x, const Tensor& y);
  // Loss and accuracy over a dataset, in batches of batch().
  EvalResult evaluate(const Dataset& data);

 private:
  struct BatchStep;
  BatchStep& step_for(bool training, int64_t n);  // compiled on first use
  // The compiled step that holds every PARAM and STATE value (the others share its storage).
  CompiledStep& persistent();
  const CompiledStep& persistent() const;
  StepResult train_step_loss_scaled(BatchStep& c, int64_t n);

  ModelSpec spec_;
  std::unique_ptr<Backend> backend_;
  OptimizerConfig optimizer_;
  int64_t batch_;
  uint64_t seed_;
  int64_t step_ = 0;
  std::map<std::pair<bool, int64_t>, std::unique_ptr<BatchStep>> steps_;  // by (training, batch size)
  Executable* weights_owner_ = nullptr;  // the first executable: its PARAM/STATE storage the others share
  TrainingStepExtension extension_;
  Precision precision_;
  LossScaling scaling_;
  LossScaleState scaler_;
  std::unique_ptr<CompiledStep> update_;  // loss scaling: the optimizer update, run on clean steps
  std::vector<int32_t> update_grads_;  // update_'s INPUT grad/<p> per trained parameter
  std::vector<Tensor> grad_buffers_;   // the host copies they pass through
};

// A data-parallel run as run_training sees it: this process's place among the ranks, and what
// the run asks of the other ranks. dist/data_parallel.h makes one from a communicator (MPI);
// every call but rank() and size() is collective: every rank makes it, in the same order.
class DataParallel {
 public:
  virtual ~DataParallel() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The device index this rank's backend takes (BackendOptions::device): a rank per GPU.
  virtual int device() const { return 0; }
  // The gradient all-reduce, as an extension of the Trainer's training steps.
  virtual TrainingStepExtension step_extension(const ModelSpec& spec) = 0;
  // Before each training step: this rank trains on `images` of a global batch of
  // `global_images`, so its mean gradient counts images / global_images of the average.
  virtual void before_step(int64_t images, int64_t global_images) = 0;
  // After each training step: rank 0's buffers (batch norms' running statistics) on every rank.
  virtual void after_step(Trainer& trainer) = 0;
  // Element-wise sums over the ranks, in place (losses, counts).
  virtual void sum(double* values, int64_t count) = 0;
  // Rank `root`'s bytes copied into `data` on every other rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // Stops every rank with an Error naming what differs when `description` (lines "key=value")
  // is not the same on every rank.
  virtual void check_same_configuration(const std::string& description) = 0;
};

struct TrainOptions {
  std::string model = "seed-cnn";
  std::string backend = "auto";
  std::string data;  // empty: default_data_folder()
  int epochs = 1;
  int64_t batch = 64;
  float lr = 1e-3f;
  OptimizerConfig::Kind optimizer = OptimizerConfig::Kind::adam;
  float momentum = 0.0f;
  bool nesterov = false;      // sgd with momentum > 0
  float weight_decay = 0.0f;  // adam, sgd: L2 added to the gradient; adamw: decoupled
  // The lr per step (LrSchedule in parity/graph.h): "constant", "step" (lr * lr_gamma every
  // lr_step_epochs epochs) or "cosine" (from lr to lr_min over the run's steps after warmup);
  // warmup_steps > 0 ramps linearly from warmup_start_factor * lr first.
  std::string lr_schedule = "constant";
  int lr_step_epochs = 1;
  float lr_gamma = 0.1f;
  float lr_min = 0.0f;
  int warmup_steps = 0;
  float warmup_start_factor = 1.0f / 3.0f;
  // > 0: clip the gradients' total 2-norm to this before each step (torch.nn.utils.clip_grad_norm_);
  // 0: off.
  float clip_grad_norm = 0.0f;
  uint64_t seed = 0;
  int threads = 0;
  int64_t limit = 0;  // train on the first `limit` images; 0: all
  // Hold out this fraction of the (limited) training set, drawn by `seed` (hold_out), for a
  // validation loss and accuracy after each epoch; train on the rest. 0: off. In [0, 1).
  double val_split = 0;
  int64_t max_steps = 0;  // stop after this many optimizer steps in total; 0: no limit
  std::string init;     // start from these weights (safetensors, PyTorch names)
  // Hold a pruning: the "<weight>.mask" tensors of this file (parity prune --save writes them)
  // stay applied through training: the pruned weights, their gradients and their optimizer state
  // are kept exactly 0 (OptimizerConfig::gradient_masks). Empty: no mask.
  std::string mask;
  std::string save;     // write a checkpoint here after each epoch and when stopped
  std::string resume;   // continue from such a checkpoint
  std::string metrics;  // CSV of per-step and per-epoch figures
  // The precision policy (parity/model.h): f32 (default), bf16, or f16 with dynamic loss scaling
  // (`scaling`): a step with an inf or NaN gradient is skipped, not a failure; a non-finite loss
  // at scale <= 1, or more than max_consecutive_skipped skipped steps in a row, stops the run.
  Precision precision = Precision::f32;
  LossScaling scaling;
  int max_consecutive_skipped = 100;
  // Data-parallel training (dist/): each rank trains on its contiguous share of every global
  // batch of `batch` images; only rank 0 writes `save` and `metrics`. Null: one process.
  std::shared_ptr<DataParallel> data_parallel;
};

struct TrainProgress {
  int epoch = 0;           // 0-based
  int epochs = 0;
  int64_t batch_in_epoch = 0;  // 1-based index of the batch just done
  int64_t batches_per_epoch = 0;
  int64_t step = 0;        // optimizer steps so far
  double running_loss = 0;  // mean loss over this epoch so far
  double images_per_second = 0;
};

struct EpochReport {
  int epoch = 0;  // 0-based
  double train_loss = 0, train_accuracy = 0, images_per_second = 0;
  std::optional<EvalResult> validation;  // with TrainOptions::val_split > 0
  EvalResult test;
};

struct TrainCallbacks {
  std::function<void(const std::string&)> on_info;  // one-off messages (what was loaded)
  std::function<void(const TrainProgress&)> on_step;
  std::function<void(const EpochReport&)> on_epoch;
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT) to save and return early
};

struct TrainSummary {
  std::vector<EpochReport> epochs;
  bool stopped_early = false;
  int64_t steps = 0;
};

// The whole `parity train` job: validates options, loads data (load_idx_folder: its image size
// and class count must be the model's, or the error names both), trains, evaluates after each
// epoch, writes metrics and checkpoints atomically. An interrupted run resumed from its
// checkpoint ends with the same weights as one that was never interrupted.
TrainSummary run_training(const TrainOptions& options, const TrainCallbacks& callbacks = {});

// Loss and accuracy of saved weights on the test split (checked against the model as in run_training).
EvalResult run_evaluation(const std::string& model, const std::string& backend, int threads,
                          const std::string& weights_path, const std::string& data, int64_t batch);

}  // namespace parity
