// model/trainer.cpp — the Trainer: compiles forward and training plans per batch size on one
// backend, shares their weights, feeds batches and reads back loss, accuracy and state.
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "parity/error.h"
#include "parity/trainer.h"

namespace parity {

struct Trainer::Compiled {
  Plan plan;
  std::unique_ptr<Executable> exe;
  int32_t x, y, loss, correct, step = -1;
};

namespace {

std::vector<std::string> state_names(const OptimizerConfig& opt, const std::string& param) {
  if (opt.kind == OptimizerConfig::Kind::adam) return {adam_m_name(param), adam_v_name(param)};
  return {sgd_velocity_name(param)};
}

}  // namespace

Trainer::Trainer(const ModelSpec& spec, std::unique_ptr<Backend> backend, const OptimizerConfig& optimizer,
                 int64_t batch)
    : spec_(spec), backend_(std::move(backend)), optimizer_(optimizer), batch_(batch) {
  if (batch <= 0) throw Error(ErrorKind::invalid_argument, fmt::format("batch must be > 0, got {}", batch));
  if (!(optimizer.lr > 0.0f) || !std::isfinite(optimizer.lr))
    throw Error(ErrorKind::invalid_argument, fmt::format("learning rate must be a finite number > 0, got {}", optimizer.lr));
  if (!(optimizer.momentum >= 0.0f) || !std::isfinite(optimizer.momentum))
    throw Error(ErrorKind::invalid_argument, fmt::format("momentum must be >= 0, got {}", optimizer.momentum));
  // The full-batch training plan owns the weights and optimizer state; start them at zero.
  Compiled& main = compiled(true, batch);
  for (const parity_value_desc& v : main.plan.values())
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) {
      std::vector<unsigned char> zeros(static_cast<size_t>(v.bytes), 0);
      main.exe->write(main.plan.value(v.name), zeros.data(), zeros.size());
    }
}

Trainer::~Trainer() = default;

Trainer::Compiled& Trainer::compiled(bool training, int64_t n) {
  auto key = std::make_pair(training, n);
  auto it = compiled_.find(key);
  if (it != compiled_.end()) return *it->second;
  Graph forward = build_forward(spec_, n);
  Graph graph = training ? differentiate(forward, forward.find("loss"), &optimizer_) : std::move(forward);
  auto c = std::unique_ptr<Compiled>(new Compiled{Plan(graph, {"loss", "correct"}), nullptr, 0, 0, 0, 0, -1});
  parity_plan p = c->plan.c_plan();
  for (int32_t i = 0; i < p.num_nodes; ++i) {
    std::string why;
    if (!backend_->supports(p.nodes[i], &why))
      throw Error(ErrorKind::backend, fmt::format("backend '{}' cannot run node '{}' ({}): {}", backend_->name(),
                                                  p.nodes[i].name, parity_op_name(p.nodes[i].op), why));
  }
  c->exe = backend_->compile(p, CompileOptions{}, anchor_);
  if (!anchor_) anchor_ = c->exe.get();
  c->x = c->plan.value("x");
  c->y = c->plan.value("y");
  c->loss = c->plan.value("loss");
  c->correct = c->plan.value("correct");
  if (training && optimizer_.kind == OptimizerConfig::Kind::adam) c->step = c->plan.value(optimizer_step_name());
  return *compiled_.emplace(key, std::move(c)).first->second;
}

void Trainer::load_weights(const std::map<std::string, Tensor>& weights, const std::string& source) {
  Compiled& main = compiled(true, batch_);
  for (const ParamSpec& p : spec_.params) {
    auto it = weights.find(p.name);
    if (it == weights.end())
      throw Error(ErrorKind::data, fmt::format("{}: missing tensor '{}' (expected f32 {})", source, p.name, p.shape.str()));
    const Tensor& t = it->second;
    if (t.dtype() != DType::f32 || t.shape() != p.shape)
      throw Error(ErrorKind::data, fmt::format("{}: tensor '{}' is {} {}, the model needs f32 {}", source, p.name,
                                               to_string(t.dtype()), t.shape().str(), p.shape.str()));
    main.exe->write(main.plan.value(p.name), t.data(), t.nbytes());
  }
}

std::map<std::string, Tensor> Trainer::weights() const {
  const Compiled& main = *compiled_.at({true, batch_});
  std::map<std::string, Tensor> out;
  for (const ParamSpec& p : spec_.params) {
    Tensor t(p.shape, DType::f32);
    main.exe->read(main.plan.value(p.name), t.data(), t.nbytes());
    out.emplace(p.name, std::move(t));
  }
  return out;
}

TensorFile Trainer::checkpoint() const {
  const Compiled& main = *compiled_.at({true, batch_});
  TensorFile file;
  file.tensors = weights();
  for (const ParamSpec& p : spec_.params)
    for (const std::string& name : state_names(optimizer_, p.name)) {
      Tensor t(p.shape, DType::f32);
      main.exe->read(main.plan.value(name), t.data(), t.nbytes());
      file.tensors.emplace(name, std::move(t));
    }
  Tensor step(Shape{}, DType::i64);
  step.i64()[0] = step_;
  file.tensors.emplace(optimizer_step_name(), std::move(step));
  return file;
}

void Trainer::restore(const TensorFile& file, const std::string& source) {
  load_weights(file.tensors, source);
  Compiled& main = compiled(true, batch_);
  for (const ParamSpec& p : spec_.params)
    for (const std::string& name : state_names(optimizer_, p.name)) {
      const Tensor& t = require_tensor(file, name, DType::f32, p.shape, source);
      main.exe->write(main.plan.value(name), t.data(), t.nbytes());
    }
  step_ = require_tensor(file, optimizer_step_name(), DType::i64, Shape{}, source).i64()[0];
  if (step_ < 0) throw Error(ErrorKind::data, fmt::format("{}: optimizer.step is negative ({})", source, step_));
}

StepResult Trainer::train_step(const Tensor& x, const Tensor& y) {
  const int64_t n = x.shape().rank() > 0 ? x.shape()[0] : 0;
  if (n < 1 || n > batch_)
    throw Error(ErrorKind::shape, fmt::format("train_step: batch of {} images, expected 1..{}", n, batch_));
  Compiled& c = compiled(true, n);
  c.exe->write(c.x, x.data(), x.nbytes());
  c.exe->write(c.y, y.data(), y.nbytes());
  if (c.step >= 0) {
    if (step_ + 1 > INT32_MAX) throw Error(ErrorKind::invalid_argument, "train_step: step count overflows 32 bits");
    int32_t t = static_cast<int32_t>(step_ + 1);
    c.exe->write(c.step, &t, sizeof t);
  }
  c.exe->execute();
  ++step_;
  StepResult r;
  c.exe->read(c.loss, &r.loss, sizeof r.loss);
  c.exe->read(c.correct, &r.correct, sizeof r.correct);
  r.images = n;
  return r;
}

EvalResult Trainer::evaluate(const Dataset& data) {
  const BatchGeometry& g = spec_.geometry;
  if (data.rows * g.upsample != spec_.height || data.cols * g.upsample != spec_.width)
    throw Error(ErrorKind::shape, fmt::format("evaluate: {}x{} images do not fit model '{}' ({}x{} after {}x upsampling)",
                                              data.rows, data.cols, spec_.name, spec_.height, spec_.width, g.upsample));
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
  Compiled* running = nullptr;
  int64_t running_n = 0;
  auto collect = [&] {
    float loss = 0, right = 0;
    running->exe->read(running->loss, &loss, sizeof loss);
    running->exe->read(running->correct, &right, sizeof right);
    loss_sum += double(loss) * running_n;
    correct += right;
  };
  for (int64_t first = 0; first < data.count; first += batch_) {
    const int64_t n = std::min(batch_, data.count - first);
    Compiled& c = compiled(false, n);
    fill_batch(data, order, first, n, g, x.f32(), y.i32());
    c.exe->write(c.x, x.data(), static_cast<size_t>(n * image_floats) * sizeof(float));
    c.exe->write(c.y, y.data(), static_cast<size_t>(n) * sizeof(int32_t));
    if (running) collect();
    c.exe->execute();
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
