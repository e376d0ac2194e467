// model/trainer.cpp — the Trainer: compiles forward and training steps per batch size on one
// backend, shares their weights, feeds batches and reads back loss, accuracy and state.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "graph/compiled_step.h"
#include "parity/error.h"
#include "parity/trainer.h"

namespace parity {

// The compiled step of one (training or evaluation, batch size) and the values the Trainer feeds and reads.
struct Trainer::BatchStep {
  CompiledStep step;
  int32_t x, y, loss, correct, optimizer_step = -1;
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

// The loss per image of a batch of n: the graph's loss, divided by n when it is a sum.
float per_image(float loss, int64_t n, const LossSpec& spec) {
  return spec.reduction == PARITY_REDUCTION_SUM ? loss / static_cast<float>(n) : loss;
}

}  // namespace

Trainer::Trainer(const ModelSpec& spec, std::unique_ptr<Backend> backend, const OptimizerConfig& optimizer,
                 int64_t batch, uint64_t seed, TrainingStepExtension extension)
    : spec_(spec),
      backend_(std::move(backend)),
      optimizer_(optimizer),
      batch_(batch),
      seed_(seed),
      extension_(std::move(extension)) {
  if (batch <= 0) throw Error(ErrorKind::invalid_argument, fmt::format("batch must be > 0, got {}", batch));
  if (!(optimizer.lr > 0.0f) || !std::isfinite(optimizer.lr))
    throw Error(ErrorKind::invalid_argument, fmt::format("learning rate must be a finite number > 0, got {}", optimizer.lr));
  if (!(optimizer.momentum >= 0.0f) || !std::isfinite(optimizer.momentum))
    throw Error(ErrorKind::invalid_argument, fmt::format("momentum must be >= 0, got {}", optimizer.momentum));
  // The full-batch training step owns the weights and optimizer state; start them at zero, and
  // the buffers (running statistics) at their initial values.
  BatchStep& main = step_for(true, batch);
  main.step.zero_params_and_state();
  for (const BufferSpec& b : spec_.buffers) {
    if (b.step_count) continue;
    Tensor t(b.shape, DType::f32);
    std::fill_n(t.f32(), t.numel(), b.initial);
    main.step.write(b.name, t);
  }
  // Pruning held: the masks the training graphs multiply the gradients by. With the pruned
  // weights zeroed as they load (load_weights, restore) and the optimizer state starting at 0,
  // a pruned element's gradient, moments or momentum buffer and weight all stay exactly 0:
  // adam's update is 0 / (sqrt(0) + eps), L2 decay adds wd * 0, adamw scales 0, sgd's velocity
  // is momentum * 0 + 0.
  for (const auto& [param, mask] : optimizer_.gradient_masks) main.step.write(gradient_mask_name(param), mask);
}

Trainer::~Trainer() = default;

Trainer::BatchStep& Trainer::step_for(bool training, int64_t n) {
  auto key = std::make_pair(training, n);
  auto it = steps_.find(key);
  if (it != steps_.end()) return *it->second;
  ForwardOptions forward_options;
  forward_options.training = training;
  forward_options.seed = seed_;
  Graph forward = build_forward(spec_, n, forward_options);
  Graph graph = training ? differentiate(forward, forward.find("loss"), &optimizer_) : std::move(forward);
  CompiledStepOptions options;
  options.share_with = weights_owner_;
  std::unique_ptr<BatchStep> s;
  try {
    std::vector<std::string> keep = {"loss", "correct"};
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
  if (training) s->optimizer_step = s->step.value(optimizer_step_name());
  return *steps_.emplace(key, std::move(s)).first->second;
}

void Trainer::load_weights(const std::map<std::string, Tensor>& weights, const std::string& source) {
  BatchStep& main = step_for(true, batch_);
  auto load = [&](const std::string& name, const Shape& shape) {
    auto it = weights.find(name);
    if (it == weights.end())
      throw Error(ErrorKind::data, fmt::format("{}: missing tensor '{}' (expected f32 {})", source, name, shape.str()));
    const Tensor& t = it->second;
    if (t.dtype() != DType::f32 || t.shape() != shape)
      throw Error(ErrorKind::data, fmt::format("{}: tensor '{}' is {} {}, the model needs f32 {}", source, name,
                                               to_string(t.dtype()), t.shape().str(), shape.str()));
    main.step.write(name, masked(optimizer_, name, t));
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
      main.step.write(b.name, file_values.at(b.name));
      continue;
    }
    load(b.name, b.shape);
  }
}

std::map<std::string, Tensor> Trainer::weights() const {
  const BatchStep& main = *steps_.at({true, batch_});
  std::map<std::string, Tensor> out;
  for (const ParamSpec& p : spec_.params) {
    out.emplace(p.name, main.step.read(p.name));
  }
  for (const BufferSpec& b : spec_.buffers) {
    if (!b.step_count) {
      out.emplace(b.name, main.step.read(b.name));
      continue;
    }
    Tensor count(Shape{}, DType::i64);  // PyTorch counts its training forwards: one per step here
    count.i64()[0] = step_;
    out.emplace(b.name, std::move(count));
  }
  return out;
}

TensorFile Trainer::checkpoint() const {
  const BatchStep& main = *steps_.at({true, batch_});
  TensorFile file;
  file.tensors = weights();
  for (const ParamSpec& p : spec_.params)
    for (const std::string& name : state_names(optimizer_, p.name)) {
      file.tensors.emplace(name, main.step.read(name));
    }
  Tensor step(Shape{}, DType::i64);
  step.i64()[0] = step_;
  file.tensors.emplace(optimizer_step_name(), std::move(step));
  return file;
}

void Trainer::restore(const TensorFile& file, const std::string& source) {
  load_weights(file.tensors, source);
  BatchStep& main = step_for(true, batch_);
  for (const ParamSpec& p : spec_.params)
    for (const std::string& name : state_names(optimizer_, p.name)) {
      const Tensor& t = require_tensor(file, name, DType::f32, p.shape, source);
      main.step.write(name, masked(optimizer_, p.name, t));
    }
  step_ = require_tensor(file, optimizer_step_name(), DType::i64, Shape{}, source).i64()[0];
  if (step_ < 0) throw Error(ErrorKind::data, fmt::format("{}: optimizer.step is negative ({})", source, step_));
}

StepResult Trainer::train_step(const Tensor& x, const Tensor& y) {
  const int64_t n = x.shape().rank() > 0 ? x.shape()[0] : 0;
  if (n < 1 || n > batch_)
    throw Error(ErrorKind::shape, fmt::format("train_step: batch of {} images, expected 1..{}", n, batch_));
  BatchStep& c = step_for(true, n);
  c.step.write(c.x, x);
  c.step.write(c.y, y);
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
