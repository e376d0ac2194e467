// model/trainer.cpp — the Trainer: compiles forward and training steps per batch size on one
// backend, shares their weights, feeds batches and reads back loss, accuracy and state.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "graph/compiled_step.h"
#include "graph/loss_scale.h"
#include "model/autocast.h"
#include "parity/error.h"
#include "parity/trainer.h"

namespace parity {

// The compiled step of one (training or evaluation, batch size) and the values the Trainer feeds and reads.
struct Trainer::BatchStep {
  CompiledStep step;
  int32_t x, y, loss, correct, optimizer_step = -1;
  // Loss scaling (training steps of a loss-scaled Trainer): the INPUTs of the scale, the found_inf
  // flag, and the kept unscaled gradients in Trainer::update_grads_'s order.
  int32_t loss_scale = -1, loss_scale_inverse = -1, found_inf = -1;
  std::vector<int32_t> unscaled;
};

namespace {

std::vector<std::string> state_names(const OptimizerConfig& opt, const std::string& param) {
  if (opt.kind != OptimizerConfig::Kind::sgd) return {adam_m_name(param), adam_v_name(param)};
  return {sgd_velocity_name(param)};
}

// `t` with the elements a gradient mask prunes set to 0 (pruning held: OptimizerConfig::gradient_masks),
// or `t` itself for a parameter without one.
Tensor masked(const OptimizerConfig& opt, const std::string& param, const Tensor& t) {
  auto it = opt.gradient_masks.find(param);
  if (it == opt.gradient_masks.end() || t.dtype() != DType::f32 || t.shape() != it->second.shape()) return t;
  Tensor out = t;
  for (int64_t i = 0; i < out.numel(); ++i)
    if (it->second.f32()[i] == 0.0f) out.f32()[i] = 0.0f;
  return out;
}

// Loss scaling's state in a checkpoint (Trainer::checkpoint).
constexpr const char* kScaleName = "grad_scaler.scale";
std::vector<std::pair<const char*, int64_t LossScaleState::*>> scaler_counters() {
  return {{"grad_scaler.growth_tracker", &LossScaleState::growth_tracker},
          {"grad_scaler.skipped_steps", &LossScaleState::skipped_steps},
          {"grad_scaler.consecutive_skipped", &LossScaleState::consecutive_skipped}};
}

// The loss per image of a batch of n: the graph's loss, divided by n when it is a sum.
float per_image(float loss, int64_t n, const LossSpec& spec) {
  return spec.reduction == PARITY_REDUCTION_SUM ? loss / static_cast<float>(n) : loss;
}

}  // namespace

Trainer::Trainer(const ModelSpec& spec, std::unique_ptr<Backend> backend, const OptimizerConfig& optimizer,
                 int64_t batch, uint64_t seed, TrainingStepExtension extension, Precision precision,
                 const LossScaling& scaling)
    : spec_(spec),
      backend_(std::move(backend)),
      optimizer_(optimizer),
      batch_(batch),
      seed_(seed),
      extension_(std::move(extension)),
      precision_(precision),
      scaling_(scaling) {
  if (batch <= 0) throw Error(ErrorKind::invalid_argument, fmt::format("batch must be > 0, got {}", batch));
  if (!(optimizer.lr > 0.0f) || !std::isfinite(optimizer.lr))
    throw Error(ErrorKind::invalid_argument, fmt::format("learning rate must be a finite number > 0, got {}", optimizer.lr));
  if (!(optimizer.momentum >= 0.0f) || !std::isfinite(optimizer.momentum))
    throw Error(ErrorKind::invalid_argument, fmt::format("momentum must be >= 0, got {}", optimizer.momentum));
  if (loss_scaled()) {
    if (!(scaling.initial_scale > 0.0f) || !std::isfinite(scaling.initial_scale) || !(scaling.growth_factor > 1.0f) ||
        !std::isfinite(scaling.growth_factor) || !(scaling.backoff_factor > 0.0f && scaling.backoff_factor < 1.0f) ||
        scaling.growth_interval < 1)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("loss scaling: needs initial_scale > 0, growth_factor > 1, backoff_factor in (0, 1) and "
                              "growth_interval >= 1, got {}, {}, {}, {}",
                              scaling.initial_scale, scaling.growth_factor, scaling.backoff_factor, scaling.growth_interval));
    if (extension_.compiled || extension_.keep_gradients)
      throw Error(ErrorKind::invalid_argument,
                  "loss scaling (precision fp16) is not implemented for data-parallel training steps");
    scaler_.scale = scaling.initial_scale;
  }
  // The full-batch training step owns the weights and optimizer state; start them at zero, and
  // the buffers (running statistics) at their initial values.
  step_for(true, batch);
  CompiledStep& main = persistent();
  main.zero_params_and_state();
  for (const BufferSpec& b : spec_.buffers) {
    if (b.step_count) continue;
    Tensor t(b.shape, DType::f32);
    std::fill_n(t.f32(), t.numel(), b.initial);
    main.write(b.name, t);
  }
  // Pruning held: the masks the training graphs multiply the gradients by. With the pruned
  // weights zeroed as they load (load_weights, restore) and the optimizer state starting at 0,
  // a pruned element's gradient, moments or momentum buffer and weight all stay exactly 0:
  // adam's update is 0 / (sqrt(0) + eps), L2 decay adds wd * 0, adamw scales 0, sgd's velocity
  // is momentum * 0 + 0.
  for (const auto& [param, mask] : optimizer_.gradient_masks) main.write(gradient_mask_name(param), mask);
}

Trainer::~Trainer() = default;

CompiledStep& Trainer::persistent() { return update_ ? *update_ : steps_.at({true, batch_})->step; }
const CompiledStep& Trainer::persistent() const { return update_ ? *update_ : steps_.at({true, batch_})->step; }

Trainer::BatchStep& Trainer::step_for(bool training, int64_t n) {
  auto key = std::make_pair(training, n);
  auto it = steps_.find(key);
  if (it != steps_.end()) return *it->second;
  ForwardOptions forward_options;
  forward_options.training = training;
  forward_options.seed = seed_;
  Graph forward = autocast(build_forward(spec_, n, forward_options), precision_);
  Graph graph;
  std::vector<std::string> trained;  // loss scaling: the parameters of the update
  if (training && loss_scaled()) {
    LossScaledTraining split = differentiate_loss_scaled(forward, forward.find("loss"), optimizer_);
    if (!update_) {
      // The update graph holds every PARAM and STATE: compiled first, it owns the storage the
      // training and evaluation steps share.
      CompiledStepOptions options;
      options.share_with = weights_owner_;
      update_ = std::make_unique<CompiledStep>(*backend_, split.update, std::vector<std::string>{}, options);
      if (!weights_owner_) weights_owner_ = &update_->executable();
      for (const std::string& p : split.params) {
        update_grads_.push_back(update_->value(grad_name(p)));
        grad_buffers_.push_back(update_->read(grad_name(p)));
      }
    }
    trained = split.params;
    graph = std::move(split.gradients);
  } else {
    graph = training ? differentiate(forward, forward.find("loss"), &optimizer_) : std::move(forward);
  }
  CompiledStepOptions options;
  options.share_with = weights_owner_;
  std::unique_ptr<BatchStep> s;
  try {
    std::vector<std::string> keep = {"loss", "correct"};
    if (!trained.empty()) keep.push_back(found_inf_name());
    for (const std::string& p : trained) keep.push_back(unscaled_grad_name(p));
    // The gradients the extension needs, where this graph has them (a parameter the loss does
    // not reach has none).
    std::vector<std::string> gradients;
    if (training && extension_.keep_gradients)
      for (const ParamSpec& p : spec_.params)
        for (const ValueInfo& v : graph.values())
          if (v.name == grad_name(p.name)) {
            gradients.push_back(v.name);
            break;
          }
    keep.insert(keep.end(), gradients.begin(), gradients.end());
    s.reset(new BatchStep{CompiledStep(*backend_, graph, keep, options), 0, 0, 0, 0, -1});
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::memory) throw;
    // The backend measured the plan; what the caller chose is the batch (and the model).
    throw Error(ErrorKind::memory, fmt::format("{} step of model '{}' at batch {}: {}",
                                               training ? "the training" : "the evaluation", spec_.name, n, e.what()));
  }
  if (!weights_owner_) weights_owner_ = &s->step.executable();
  if (training && extension_.compiled) {
    std::vector<int32_t> gradients;
    if (extension_.keep_gradients)
      for (const ParamSpec& p : spec_.params)
        for (size_t v = 0; v < s->step.plan().values().size(); ++v)
          if (grad_name(p.name) == s->step.plan().values()[v].name) gradients.push_back(static_cast<int32_t>(v));
    extension_.compiled(s->step.executable(), s->step.plan(), n, gradients);
  }
  s->x = s->step.value("x");
  s->y = s->step.value("y");
  s->loss = s->step.value("loss");
  s->correct = s->step.value("correct");
  if (training && !loss_scaled()) s->optimizer_step = s->step.value(optimizer_step_name());
  if (training && loss_scaled()) {
    // A forward graph with dropout reads optimizer.step; the gradients graph has no update.
    if (graph.has(optimizer_step_name()))
      s->optimizer_step = s->step.value(optimizer_step_name());
    s->loss_scale = s->step.value(loss_scale_name());
    s->loss_scale_inverse = s->step.value(loss_scale_inverse_name());
    s->found_inf = s->step.value(found_inf_name());
    for (const std::string& p : trained) s->unscaled.push_back(s->step.value(unscaled_grad_name(p)));
    if (s->unscaled.size() != update_grads_.size())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("loss scaling: the training step of batch {} trains {} parameters, the update {}", n,
                              s->unscaled.size(), update_grads_.size()));
  }
  return *steps_.emplace(key, std::move(s)).first->second;
}

void Trainer::load_weights(const std::map<std::string, Tensor>& weights, const std::string& source) {
  step_for(true, batch_);
  CompiledStep& main = persistent();
  auto load = [&](const std::string& name, const Shape& shape) {
    auto it = weights.find(name);
    if (it == weights.end())
      throw Error(ErrorKind::data, fmt::format("{}: missing tensor '{}' (expected f32 {})", source, name, shape.str()));
    const Tensor& t = it->second;
    if (t.dtype() != DType::f32 || t.shape() != shape)
      throw Error(ErrorKind::data, fmt::format("{}: tensor '{}' is {} {}, the model needs f32 {}", source, name,
                                               to_string(t.dtype()), t.shape().str(), shape.str()));
    main.write(name, masked(optimizer_, name, t));
  };
  for (const ParamSpec& p : spec_.params) load(p.name, p.shape);
  // A step count (num_batches_tracked) is not read: parity's batch norms do not use it.
  // A model file's buffers (its running statistics and constants) that `weights` lacks keep the
  // file's own values.
  const std::map<std::string, Tensor> file_values =
      spec_.layer_graph ? spec_.layer_graph->initial_values() : std::map<std::string, Tensor>{};
  for (const BufferSpec& b : spec_.buffers) {
    if (b.step_count) continue;
    if (!weights.count(b.name) && file_values.count(b.name)) {
      main.write(b.name, file_values.at(b.name));
      continue;
    }
    load(b.name, b.shape);
  }
}

std::map<std::string, Tensor> Trainer::weights() const {
  const CompiledStep& main = persistent();
  std::map<std::string, Tensor> out;
  for (const ParamSpec& p : spec_.params) {
    out.emplace(p.name, main.read(p.name));
  }
  for (const BufferSpec& b : spec_.buffers) {
    if (!b.step_count) {
      out.emplace(b.name, main.read(b.name));
      continue;
    }
    Tensor count(Shape{}, DType::i64);  // PyTorch counts its training forwards: one per step here
    count.i64()[0] = step_;
    out.emplace(b.name, std::move(count));
  }
  return out;
}

TensorFile Trainer::checkpoint() const {
  const CompiledStep& main = persistent();
  TensorFile file;
  file.tensors = weights();
  for (const ParamSpec& p : spec_.params)
    for (const std::string& name : state_names(optimizer_, p.name)) {
      file.tensors.emplace(name, main.read(name));
    }
  Tensor step(Shape{}, DType::i64);
  step.i64()[0] = step_;
  file.tensors.emplace(optimizer_step_name(), std::move(step));
  if (loss_scaled()) {
    Tensor scale(Shape{}, DType::f32);
    scale.f32()[0] = scaler_.scale;
    file.tensors.emplace(kScaleName, std::move(scale));
    for (const auto& [name, member] : scaler_counters()) {
      Tensor count(Shape{}, DType::i64);
      count.i64()[0] = scaler_.*member;
      file.tensors.emplace(name, std::move(count));
    }
  }
  return file;
}

void Trainer::restore(const TensorFile& file, const std::string& source) {
  load_weights(file.tensors, source);
  CompiledStep& main = persistent();
  for (const ParamSpec& p : spec_.params)
    for (const std::string& name : state_names(optimizer_, p.name)) {
      const Tensor& t = require_tensor(file, name, DType::f32, p.shape, source);
      main.write(name, masked(optimizer_, p.name, t));
    }
  step_ = require_tensor(file, optimizer_step_name(), DType::i64, Shape{}, source).i64()[0];
  if (step_ < 0) throw Error(ErrorKind::data, fmt::format("{}: optimizer.step is negative ({})", source, step_));
  if (loss_scaled()) {
    LossScaleState state;
    state.scale = require_tensor(file, kScaleName, DType::f32, Shape{}, source).f32()[0];
    if (!(state.scale > 0.0f) || !std::isfinite(state.scale))
      throw Error(ErrorKind::data, fmt::format("{}: {} must be a finite number > 0, got {}", source, kScaleName, state.scale));
    for (const auto& [name, member] : scaler_counters()) {
      state.*member = require_tensor(file, name, DType::i64, Shape{}, source).i64()[0];
      if (state.*member < 0) throw Error(ErrorKind::data, fmt::format("{}: {} is negative ({})", source, name, state.*member));
    }
    scaler_ = state;
  }
}

StepResult Trainer::train_step(const Tensor& x, const Tensor& y) {
  const int64_t n = x.shape().rank() > 0 ? x.shape()[0] : 0;
  if (n < 1 || n > batch_)
    throw Error(ErrorKind::shape, fmt::format("train_step: batch of {} images, expected 1..{}", n, batch_));
  BatchStep& c = step_for(true, n);
  c.step.write(c.x, x);
  c.step.write(c.y, y);
  if (loss_scaled()) return train_step_loss_scaled(c, n);
  if (c.optimizer_step >= 0) {
    if (step_ + 1 > INT32_MAX) throw Error(ErrorKind::invalid_argument, "train_step: step count overflows 32 bits");
    int32_t t = static_cast<int32_t>(step_ + 1);
    c.step.write(c.optimizer_step, &t, sizeof t);
  }
  c.step.execute();
  ++step_;
  StepResult r;
  c.step.read(c.loss, &r.loss, sizeof r.loss);
  r.loss = per_image(r.loss, n, spec_.loss);
  c.step.read(c.correct, &r.correct, sizeof r.correct);
  r.images = n;
  return r;
}

// The gradients step with the loss times the scale; then, only when every unscaled gradient is
// finite (found_inf == 0) and so is the loss, the update step on copies of them. The scale moves
// as GradScaler.update() moves it.
StepResult Trainer::train_step_loss_scaled(BatchStep& c, int64_t n) {
  if (step_ + 1 > INT32_MAX) throw Error(ErrorKind::invalid_argument, "train_step: step count overflows 32 bits");
  const int32_t t = static_cast<int32_t>(step_ + 1);
  if (c.optimizer_step >= 0) c.step.write(c.optimizer_step, &t, sizeof t);
  const float scale = scaler_.scale, inverse = 1.0f / scaler_.scale;
  c.step.write(c.loss_scale, &scale, sizeof scale);
  c.step.write(c.loss_scale_inverse, &inverse, sizeof inverse);
  c.step.execute();
  StepResult r;
  c.step.read(c.loss, &r.loss, sizeof r.loss);
  r.loss = per_image(r.loss, n, spec_.loss);
  c.step.read(c.correct, &r.correct, sizeof r.correct);
  r.images = n;
  r.loss_scale = scale;
  float found_inf = 0;
  c.step.read(c.found_inf, &found_inf, sizeof found_inf);
  r.skipped = found_inf != 0.0f || !std::isfinite(r.loss);
  if (r.skipped) {
    scaler_.scale *= scaling_.backoff_factor;
    scaler_.growth_tracker = 0;
    ++scaler_.skipped_steps;
    ++scaler_.consecutive_skipped;
    return r;
  }
  for (size_t i = 0; i < update_grads_.size(); ++i) {
    Tensor& buffer = grad_buffers_[i];
    c.step.read(c.unscaled[i], buffer.data(), buffer.nbytes());
    update_->write(update_grads_[i], buffer);
  }
  const int32_t update_step = update_->value(optimizer_step_name());
  update_->write(update_step, &t, sizeof t);
  update_->execute();
  ++step_;
  scaler_.consecutive_skipped = 0;
  if (++scaler_.growth_tracker == scaling_.growth_interval) {
    const float grown = scaler_.scale * scaling_.growth_factor;
    if (std::isfinite(grown)) scaler_.scale = grown;  // GradScaler keeps the scale finite too
    scaler_.growth_tracker = 0;
  }
  return r;
}

EvalResult Trainer::evaluate(const Dataset& data) {
  const BatchGeometry& g = spec_.geometry;
  if (geometry_height(g, data.rows) != spec_.height || geometry_width(g, data.cols) != spec_.width)
    throw Error(ErrorKind::shape, fmt::format("evaluate: {}x{} images do not fit model '{}' ({}x{}; the geometry makes {}x{})",
                                              data.rows, data.cols, spec_.name, spec_.height, spec_.width,
                                              geometry_height(g, data.rows), geometry_width(g, data.cols)));
  std::vector<int64_t> order = epoch_order(data.count, 0, 0, false);
  EvalResult result;
  double loss_sum = 0, correct = 0;
  // One full-size batch buffer; the last, partial batch uses its front.
  const int64_t image_floats = int64_t{spec_.channels} * spec_.height * spec_.width;
  Tensor x(Shape{batch_, spec_.channels, spec_.height, spec_.width}, DType::f32);
  Tensor y(Shape{batch_}, DType::i32);
  // Pipelined by one batch: the next batch is filled and written while the step before it may
  // still run (a GPU backend queues execute and copies the write on another stream), and only
  // then are that step's results read. The sums are taken in batch order either way.
  BatchStep* running = nullptr;
  int64_t running_n = 0;
  auto collect = [&] {
    float loss = 0, right = 0;
    running->step.read(running->loss, &loss, sizeof loss);
    running->step.read(running->correct, &right, sizeof right);
    loss_sum += double(per_image(loss, running_n, spec_.loss)) * running_n;
    correct += right;
  };
  for (int64_t first = 0; first < data.count; first += batch_) {
    const int64_t n = std::min(batch_, data.count - first);
    BatchStep& c = step_for(false, n);
    fill_batch(data, order, first, n, g, x.f32(), y.i32());
    c.step.write(c.x, x.data(), static_cast<size_t>(n * image_floats) * sizeof(float));
    c.step.write(c.y, y.data(), static_cast<size_t>(n) * sizeof(int32_t));
    if (running) collect();
    c.step.execute();
    running = &c;
    running_n = n;
  }
  if (running) collect();
  result.images = data.count;
  result.loss = data.count ? loss_sum / data.count : 0.0;
  result.accuracy = data.count ? correct / data.count : 0.0;
  return result;
}

}  // namespace parity
