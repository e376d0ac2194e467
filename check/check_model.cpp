// check/check_model.cpp — `parity check model` and `parity check determinism`: one training
// step of a model run on two backends (or a backend and the LibTorch peer) from the same
// weights and batch, every node's output, every gradient and every updated weight compared in
// graph order; drift over several steps.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <cstring>

#include <fmt/format.h>

#include "check/half_model_bound.h"
#include "check/torch_peer_launcher.h"
#include "graph/compiled_step.h"
#include "model/autocast.h"
#include "model/model_description.h"
#include "model/random_batch.h"
#include "ops/op_rule.h"
#include "parity/backend.h"
#include "parity/check.h"
#include "parity/error.h"
#include "parity/model.h"
#include "parity/safetensors.h"

namespace parity {
namespace {

// Integer outputs (maxpool indices, argmax) inside a step: a window whose top two values lie
// within float32 rounding of each other may pick another element; allow 1e-3 of them.
constexpr double kIndexMismatchFraction = 1e-3;

ImageBatch load_or_draw_batch(const ModelCheckOptions& o, const ModelSpec& spec) {
  if (!o.input.empty()) {
    TensorFile f = read_safetensors(o.input);
    auto x_it = f.tensors.find("x");
    auto y_it = f.tensors.find("y");
    if (x_it == f.tensors.end() || y_it == f.tensors.end())
      throw Error(ErrorKind::data, fmt::format("{}: needs tensors 'x' (f32 [N,{},{},{}]) and 'y' (i64 [N])", o.input,
                                               spec.channels, spec.height, spec.width));
    const Tensor& x = x_it->second;
    const Shape& xs = x.shape();
    if (x.dtype() != DType::f32 || xs.rank() != 4 || xs[1] != spec.channels || xs[2] != spec.height || xs[3] != spec.width || xs[0] < 1)
      throw Error(ErrorKind::data, fmt::format("{}: tensor 'x' is {} {}, model '{}' needs f32 [N,{},{},{}]", o.input,
                                               to_string(x.dtype()), xs.str(), spec.name, spec.channels, spec.height, spec.width));
    const Tensor& y = y_it->second;
    if ((y.dtype() != DType::i64 && y.dtype() != DType::i32) || y.shape() != Shape{xs[0]})
      throw Error(ErrorKind::data, fmt::format("{}: tensor 'y' is {} {}, expected i64 [{}]", o.input, to_string(y.dtype()),
                                               y.shape().str(), xs[0]));
    ImageBatch b{x, Tensor(Shape{xs[0]}, DType::i32)};
    for (int64_t i = 0; i < xs[0]; ++i) {
      const int64_t label = y.dtype() == DType::i64 ? y.i64()[i] : y.i32()[i];
      if (label < 0 || label >= spec.num_classes)
        throw Error(ErrorKind::data, fmt::format("{}: label {} at index {} is outside [0, {})", o.input, label, i, spec.num_classes));
      b.y.i32()[i] = static_cast<int32_t>(label);
    }
    return b;
  }
  if (o.batch < 1) throw Error(ErrorKind::invalid_argument, fmt::format("--batch must be >= 1, got {}", o.batch));
  return random_batch(spec, o.batch, o.seed);
}

std::map<std::string, Tensor> load_or_init_weights(const ModelCheckOptions& o, const ModelSpec& spec) {
  if (o.weights.empty()) return init_weights(spec, o.seed);
  TensorFile f = read_safetensors(o.weights);
  std::map<std::string, Tensor> w;
  for (const ParamSpec& p : spec.params) w.emplace(p.name, require_tensor(f, p.name, DType::f32, p.shape, o.weights));
  return w;
}

// A backend running the training step with chosen values kept and its outputs poisoned.
class BackendTrainingStep {
 public:
  BackendTrainingStep(const std::string& backend, int threads, const Graph& graph, const std::vector<std::string>& keep)
      : backend_(make_backend(backend, threads)), step_(*backend_, graph, keep, poisoned()) {}
  std::string name() const { return backend_->name(); }
  CompiledStep& step() { return step_; }

  // Fresh optimizer state and the given weights.
  void start(const std::map<std::string, Tensor>& weights) {
    step_.zero_params_and_state();
    for (const auto& [name, t] : weights) step_.write(name, t);
  }

  void run(const ImageBatch& b, int32_t t) {
    step_.write("x", b.x);
    step_.write("y", b.y);
    step_.write(step_.value(optimizer_step_name()), &t, sizeof t);
    step_.execute();
  }

 private:
  static std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
    BackendOptions bo;
    bo.threads = threads;
    return create_backend(name, bo);
  }
  static CompiledStepOptions poisoned() {
    CompiledStepOptions co;
    co.poison_outputs = true;
    return co;
  }
  std::unique_ptr<Backend> backend_;
  CompiledStep step_;
};

// A model's training graph (forward, backward, Adam) and the names of all its temporaries.
struct TrainingGraph {
  Graph graph;
  std::vector<std::string> temporaries;  // every value kept: what the report compares node by node
};

TrainingGraph build_training_graph(const ModelSpec& spec, int64_t batch, uint64_t seed,
                                   Precision precision = Precision::f32) {
  ForwardOptions training;
  training.training = true;  // dropout on, its masks keyed by `seed` (the peer applies the same)
  training.seed = seed;
  Graph fwd = autocast(build_forward(spec, batch, training), precision);
  OptimizerConfig adam;
  Graph g = differentiate(fwd, fwd.find("loss"), &adam);
  std::vector<std::string> keep;
  for (const ValueInfo& v : g.values())
    if (v.kind == PARITY_VALUE_TEMP) keep.push_back(v.name);
  return {std::move(g), std::move(keep)};
}

// The step tolerance of every value the graph's nodes produce (null for the others): the op's, at
// the value's dtype (a half output has its op's half tolerance, ops/op_rule.cpp). In a graph that
// holds half values (check model --precision) each value also inherits the loosest tolerance of
// its inputs: a node downstream of a half value sees inputs that differ between backends by half
// roundings, not f32 ones (a CAST adds at most one rounding, a batch norm or the loss on half
// activations is as close as those activations). An f32 graph keeps each op's own tolerance.
std::vector<const ops::Tolerance*> step_tolerances(const Graph& g) {
  bool mixed = false;
  for (const ValueInfo& v : g.values()) mixed = mixed || v.dtype == DType::bf16 || v.dtype == DType::f16;
  std::vector<const ops::Tolerance*> out(g.values().size(), nullptr);
  for (const Node& n : g.nodes()) {
    const ops::Tolerance* inherited = nullptr;
    if (mixed)
      for (int32_t in : n.inputs) {
        const ops::Tolerance* t = out[static_cast<size_t>(in)];
        if (t && (!inherited || t->step_nmse > inherited->step_nmse)) inherited = t;
      }
    for (int32_t v : n.outputs) {
      const ops::Tolerance* own = &ops::tolerance_for(ops::rule(n.op), g.values()[static_cast<size_t>(v)].dtype);
      out[static_cast<size_t>(v)] = inherited && inherited->step_nmse > own->step_nmse ? inherited : own;
    }
  }
  return out;
}

// Only the loss kept, as the Trainer compiles the step: backends may fuse nodes.
const std::vector<std::string> kTrainerKeep = {"loss", "correct"};

// What one side of the comparison recorded: every value of the first step (by name), and the
// loss and the weights after every step.
struct Recording {
  std::string name;
  std::map<std::string, Tensor> first_step;
  std::map<std::string, Tensor> trainer_step;  // loss, weights and state after step 1 compiled as the Trainer compiles it
  std::vector<double> losses;
  std::vector<std::map<std::string, Tensor>> weights;
};

Recording record_backend(const std::string& backend, const ModelCheckOptions& o, const ModelSpec& spec,
                         const TrainingGraph& tg, const ImageBatch& batch, const std::map<std::string, Tensor>& weights) {
  BackendTrainingStep side(backend, o.threads, tg.graph, tg.temporaries);
  Recording run;
  run.name = side.name();
  side.start(weights);
  for (int step = 1; step <= o.steps; ++step) {
    // Every step sees the same batch: the drift then measures how the trajectories separate.
    side.run(batch, step);
    if (step == 1)
      for (size_t i = 0; i < tg.graph.values().size(); ++i)
        run.first_step.emplace(tg.graph.values()[i].name, side.step().read(static_cast<int32_t>(i)));
    run.losses.push_back(double(side.step().read("loss").f32()[0]));
    std::map<std::string, Tensor> w;
    for (const ParamSpec& p : spec.params) w.emplace(p.name, side.step().read(p.name));
    run.weights.push_back(std::move(w));
  }
  // The same first step once more, compiled as `parity train` compiles it (only the loss kept),
  // so that the paths a backend takes when it may fuse nodes are compared too.
  BackendTrainingStep train(backend, o.threads, tg.graph, kTrainerKeep);
  train.start(weights);
  train.run(batch, 1);
  for (const parity_value_desc& v : train.step().plan().values())
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE || std::string(v.name) == "loss")
      run.trainer_step.emplace(v.name, train.step().read(v.name));
  return run;
}

// PyTorch's side: the LibTorch peer (bench/torch_peer, --mode step) runs in its own process
// from the same weights and batch, and writes its values under parity's names.
Recording record_torch_peer(const ModelCheckOptions& o, const ModelSpec& spec, const ImageBatch& batch,
                            const std::map<std::string, Tensor>& weights) {
  if (o.torch_peer.empty() || !std::filesystem::exists(o.torch_peer))
    throw Error(ErrorKind::backend, "check model --against torch: the LibTorch peer is not built in this build of "
                                    "parity (install libtorch-dev and configure again)");
  char pattern[] = "/tmp/parity-check-torch-XXXXXX";
  if (!::mkdtemp(pattern)) throw Error(ErrorKind::io, "check model --against torch: cannot create a temporary folder");
  const std::string dir = pattern;
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  TensorFile w;
  w.tensors = weights;
  write_safetensors(dir + "/weights.safetensors", w);
  TensorFile in;
  Tensor y64(batch.y.shape(), DType::i64);
  for (int64_t i = 0; i < batch.y.numel(); ++i) y64.i64()[i] = batch.y.i32()[i];
  in.tensors.emplace("x", batch.x);
  in.tensors.emplace("y", y64);
  write_safetensors(dir + "/input.safetensors", in);
  write_model_description(spec, dir + "/model.json");
  const std::string out = dir + "/out.safetensors";
  TorchPeerJob job;
  job.mode = "step";
  job.model = spec.name;
  job.weights = dir + "/weights.safetensors";
  job.model_file = dir + "/model.json";
  job.input = dir + "/input.safetensors";
  job.out = out;
  job.steps = o.steps;
  job.seed = o.seed;
  job.threads = o.threads > 0 ? o.threads : 1;
  const ProcessResult peer_run = run_process(torch_peer_arguments(o.torch_peer, job), {}, false);
  if (!peer_run.started)
    throw Error(ErrorKind::backend, fmt::format("check model --against torch: cannot start {}", o.torch_peer));
  if (peer_run.exit_status != 0)
    throw Error(ErrorKind::backend, fmt::format("check model --against torch: the LibTorch peer failed (exit status {})",
                                                peer_run.exit_status));
  TensorFile peer = read_safetensors(out);
  Recording run;
  run.name = "torch";
  for (auto& [name, t] : peer.tensors) {
    if (name.find('@') != std::string::npos || name.rfind("step", 0) == 0) continue;
    if (t.dtype() == DType::i64) {  // maxpool indices: the same h*W+w convention, as i32
      Tensor i32(t.shape(), DType::i32);
      for (int64_t i = 0; i < t.numel(); ++i) i32.i32()[i] = static_cast<int32_t>(t.i64()[i]);
      run.first_step.emplace(name, std::move(i32));
    } else {
      run.first_step.emplace(name, t);
    }
  }
  for (int step = 1; step <= o.steps; ++step) {
    run.losses.push_back(double(require_tensor(peer, fmt::format("loss@{}", step), DType::f32, Shape{1}, out).f32()[0]));
    std::map<std::string, Tensor> wk;
    for (const ParamSpec& p : spec.params)
      wk.emplace(p.name, require_tensor(peer, fmt::format("step{}/{}", step, p.name), DType::f32, p.shape, out));
    run.weights.push_back(std::move(wk));
  }
  return run;
}

double weights_nmse(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  double err = 0, norm = 0;
  for (const auto& [name, ta] : a) {
    const Tensor& tb = b.at(name);
    for (int64_t i = 0; i < ta.numel(); ++i) {
      const double d = double(ta.f32()[i]) - tb.f32()[i];
      err += d * d;
      norm += double(tb.f32()[i]) * tb.f32()[i];
    }
  }
  return norm > 0 ? err / norm : err;
}

void dump_run(const std::string& dir, const std::string& file, const Recording& run) {
  std::filesystem::create_directories(dir);
  TensorFile f;
  f.metadata["backend"] = run.name;
  f.tensors = run.first_step;
  write_safetensors(dir + "/" + file + ".safetensors", f);
}

// Sums that cancel. A batch norm's dgamma_c = sum_i dy_i * xhat_i and dbeta_c = sum_i dy_i are
// float32 sums whose rounding error is bounded by the size of their terms, sum_i |term_i|, not
// by the size of the result. Where the true sum is ~0 the relative error of any float32 backend
// is unbounded: a batch norm followed by relu6 and a depthwise convolution into another batch norm
// (mobilenet-mini's blocks) is invariant to its gamma while relu6 does not clip, so dgamma is
// rounding noise around ~0 on both sides. Those values, and the Adam moments made from them, are
// compared against the terms' size instead: per channel, S_c = sum_i |term_i| (from this side's
// float values), m's scale (1 - beta1) S_c and v's (1 - beta2) S_c^2. A well-conditioned sum has
// S_c ~ |sum|, so the measure is then the plain one. Conv and linear bias gradients are such sums
// too (below).
using TermScales = std::map<std::string, std::vector<double>>;

TermScales cancelling_sum_scales(const Graph& g, const Recording& a) {
  TermScales scales;
  auto tensor = [&](int32_t value) -> const Tensor* {
    auto it = a.first_step.find(g.values()[static_cast<size_t>(value)].name);
    return it == a.first_step.end() || it->second.dtype() != DType::f32 ? nullptr : &it->second;
  };
  for (const Node& n : g.nodes()) {
    if (n.op != PARITY_OP_BATCHNORM2D_BWD || n.inputs.size() < 5 || n.outputs.size() < 3) continue;
    const Tensor* x = tensor(n.inputs[0]);
    const Tensor* dy = tensor(n.inputs[1]);
    const Tensor* mean = tensor(n.inputs[3]);
    const Tensor* stat = tensor(n.inputs[4]);
    if (!x || !dy || !mean || !stat || x->shape().rank() != 4 || dy->shape() != x->shape()) continue;
    const int64_t batch = x->shape()[0], channels = x->shape()[1], plane = x->shape()[2] * x->shape()[3];
    if (mean->numel() != channels || stat->numel() != channels) continue;
    std::vector<double> dgamma(static_cast<size_t>(channels)), dbeta(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) {
      // training: stat is the saved 1/sqrt(var + eps); evaluation: the running variance.
      const double invstd = n.params.batchnorm2d.training
                                ? double(stat->f32()[c])
                                : 1.0 / std::sqrt(double(stat->f32()[c]) + n.params.batchnorm2d.eps);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < plane; ++i) {
          const int64_t e = (b * channels + c) * plane + i;
          const double xhat = (double(x->f32()[e]) - mean->f32()[c]) * invstd;
          dgamma[static_cast<size_t>(c)] += std::fabs(double(dy->f32()[e]) * xhat);
          dbeta[static_cast<size_t>(c)] += std::fabs(double(dy->f32()[e]));
        }
    }
    scales[g.values()[static_cast<size_t>(n.outputs[1])].name] = std::move(dgamma);
    scales[g.values()[static_cast<size_t>(n.outputs[2])].name] = std::move(dbeta);
  }
  // A conv's or linear layer's bias gradient db_k = sum of dy over every position but k's: the same
  // kind of sum, and one that cancels to ~0 when a batch norm follows (its dx sums to zero per
  // channel: PyTorch's exports keep a conv's bias before its batch norm).
  for (const Node& n : g.nodes()) {
    const bool conv = n.op == PARITY_OP_CONV2D_BWD_WEIGHT, linear = n.op == PARITY_OP_LINEAR_BWD_WEIGHT;
    if ((!conv && !linear) || n.outputs.size() < 2 || n.inputs.size() < 2) continue;
    const Tensor* dy = tensor(n.inputs[1]);
    if (!dy || dy->shape().rank() != (conv ? 4 : 2)) continue;
    const int64_t batch = dy->shape()[0], features = dy->shape()[1], plane = conv ? dy->shape()[2] * dy->shape()[3] : 1;
    std::vector<double> db(static_cast<size_t>(features));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t k = 0; k < features; ++k)
        for (int64_t i = 0; i < plane; ++i) db[static_cast<size_t>(k)] += std::fabs(double(dy->f32()[(b * features + k) * plane + i]));
    scales[g.values()[static_cast<size_t>(n.outputs[1])].name] = std::move(db);
  }
  for (const Node& n : g.nodes()) {
    if (n.op != PARITY_OP_ADAM_STEP) continue;
    auto grad = scales.find(g.values()[static_cast<size_t>(n.inputs[1])].name);
    if (grad == scales.end()) continue;
    std::vector<double> m = grad->second, v = grad->second;
    for (size_t c = 0; c < m.size(); ++c) {
      m[c] *= 1.0 - n.params.adam.beta1;
      v[c] *= v[c] * (1.0 - n.params.adam.beta2);
    }
    scales[g.values()[static_cast<size_t>(n.inputs[2])].name] = std::move(m);
    scales[g.values()[static_cast<size_t>(n.inputs[3])].name] = std::move(v);
  }
  return scales;
}

// d's NMSE measured against the terms' size (TermScales) rather than the values'.
void measure_against_terms(TensorDiff& d, const Tensor& got, const Tensor& want, const std::vector<double>& scale) {
  if (got.numel() != static_cast<int64_t>(scale.size())) return;
  double err = 0, terms = 0, values = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double a = got.f32()[i], b = want.f32()[i];
    if (std::isfinite(a) && std::isfinite(b)) err += (a - b) * (a - b);
    terms += scale[static_cast<size_t>(i)] * scale[static_cast<size_t>(i)];
    values += b * b;
  }
  if (!(terms > 0)) return;
  d.nmse = err / terms;
  d.pass = d.nonfinite_mismatch == 0 && d.nmse <= d.threshold;
  d.note = fmt::format("a sum of terms that cancel (|terms| / |sum| = {:.3g}): error measured against the terms' size",
                       values > 0 ? std::sqrt(terms / values) : INFINITY);
}

// An Adam update of a parameter whose gradient is a cancelling sum (TermScales). Where the
// reference gradient is within rounding of zero, |g| <= 1e-4 S (the error the gradient check
// itself accepts: its NMSE bound 1e-8 against the terms is an rms error of 1e-4 S), Adam's first
// step lr * m / (sqrt(v) + eps) ~ lr * sign(g) takes either sign on either side: those elements
// are set apart and need only |got - want| <= 2 lr (the step's own bound); the rest are compared
// with the op's threshold as before. In a half graph the gradient's accepted error is larger:
// `sign_noise` (the 1e-4 above) is then half_gradient_noise's.
void measure_adam_update(TensorDiff& d, const Tensor& got, const Tensor& want, const Tensor& grad,
                         const std::vector<double>& scale, double lr, double sign_noise = 1e-4) {
  if (got.numel() != static_cast<int64_t>(scale.size()) || grad.numel() != got.numel()) return;
  double err = 0, norm = 0;
  int64_t undetermined = 0, beyond = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double a = got.f32()[i], b = want.f32()[i];
    if (std::fabs(double(grad.f32()[i])) <= sign_noise * scale[static_cast<size_t>(i)]) {
      ++undetermined;
      if (!(std::fabs(a - b) <= 2.0 * lr * (1 + 1e-6))) ++beyond;
      continue;
    }
    if (std::isfinite(a) && std::isfinite(b)) err += (a - b) * (a - b);
    norm += b * b;
  }
  if (undetermined == 0) return;
  d.nmse = norm > 0 ? err / norm : err;
  d.pass = d.nonfinite_mismatch == 0 && beyond == 0 && d.nmse <= d.threshold;
  d.note = fmt::format("{} of {} elements have a gradient within rounding of zero, whose Adam step may take either "
                       "sign: set apart ({} beyond 2 lr); the rest compared",
                       undetermined, got.numel(), beyond);
}

// The `sign_noise` bound of measure_adam_update for a gradient of a half graph. The f32 rule's
// 1e-4 is the rms error, against the terms' size S, that the gradient's check accepts (NMSE 1e-8).
// Under the half model bound (check/half_model_bound.h) a gradient may differ from the other
// side's by 4 e, e its half effect, here measured against the terms as the gradient is:
// e = sum (g_half - g_f32)^2 / sum S^2, so its rms error is 2 sqrt(e) S.
double half_gradient_noise(const Tensor& grad_half, const Tensor* grad_f32, const std::vector<double>& scale) {
  if (!grad_f32 || grad_f32->numel() != grad_half.numel() || grad_half.numel() != static_cast<int64_t>(scale.size()) ||
      grad_f32->dtype() != DType::f32 || grad_half.dtype() != DType::f32)
    return 1e-4;
  double err = 0, terms = 0;
  for (int64_t i = 0; i < grad_half.numel(); ++i) {
    const double diff = double(grad_half.f32()[i]) - double(grad_f32->f32()[i]);
    err += diff * diff;
    terms += scale[static_cast<size_t>(i)] * scale[static_cast<size_t>(i)];
  }
  return terms > 0 ? std::max(1e-4, 2 * std::sqrt(err / terms)) : 1e-4;
}

}  // namespace

ModelCheckReport check_model(const ModelCheckOptions& o) {
  if (o.steps < 1) throw Error(ErrorKind::invalid_argument, fmt::format("--steps must be >= 1, got {}", o.steps));
  const ModelSpec spec = load_model(o.model);
  ImageBatch batch = load_or_draw_batch(o, spec);
  const std::map<std::string, Tensor> weights = load_or_init_weights(o, spec);
  if (o.precision != Precision::f32 && o.against == "torch")
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check model --precision {} --against torch: the LibTorch peer runs f32 only",
                            precision_name(o.precision)));
  const TrainingGraph tg = build_training_graph(spec, batch.x.shape()[0], o.seed, o.precision);
  const Graph& g = tg.graph;
  const std::vector<const ops::Tolerance*> tolerances = step_tolerances(g);
  std::map<int32_t, const ops::Tolerance*> updated;  // weights and optimizer state: their update's tolerance

  const Recording a = record_backend(o.backend, o, spec, tg, batch, weights);
  const Recording b = o.against == "torch" ? record_torch_peer(o, spec, batch, weights)
                                           : record_backend(o.against, o, spec, tg, batch, weights);
  // Under a half precision, ref's f32 step from the same weights and batch: what the half model
  // bound (apply_half_model_bound) measures half precision's own effect against.
  const TrainingGraph f32_graph = build_training_graph(spec, batch.x.shape()[0], o.seed);
  const F32Counterparts counterparts(g, f32_graph.graph);
  Recording f32_run;
  const bool half = o.precision != Precision::f32;
  if (half) {
    ModelCheckOptions one_step = o;
    one_step.steps = 1;
    f32_run = record_backend("ref", one_step, spec, f32_graph, batch, weights);
  }
  auto f32_value = [&](const std::map<std::string, Tensor>& run, const std::string& name) {
    return counterparts.find(run, name);
  };

  ModelCheckReport report;
  report.backend = a.name;
  report.against = b.name;
  const TermScales term_scales = cancelling_sum_scales(g, a);
  auto other_grad = [&](const std::string& name) -> const Tensor* {
    auto it = b.first_step.find(name);
    return it == b.first_step.end() || it->second.dtype() != DType::f32 ? nullptr : &it->second;
  };
  auto add = [&](int32_t value, const Node* node, const std::string& role, const ops::Tolerance& tol) {
    const ValueInfo& info = g.values()[static_cast<size_t>(value)];
    auto other = b.first_step.find(info.name);
    if (other == b.first_step.end()) {
      ++report.not_compared;  // the other side does not expose this value (e.g. PyTorch's dL/dL)
      return;
    }
    // bf16 and f16 values (ABI 9) are compared by NMSE as f32 ones; only integers by the fraction.
    const bool floating = info.dtype == DType::f32 || info.dtype == DType::bf16 || info.dtype == DType::f16;
    const double threshold = floating ? tol.step_nmse : kIndexMismatchFraction;
    TensorDiff d = compare_tensors(a.first_step.at(info.name), other->second, threshold);
    d.name = info.name;
    d.node = node ? node->name : info.name;
    d.op = node ? ops::rule(node->op).name : "-";
    d.role = role;
    d.note = floating ? tol.why : "integer output: fraction of elements that differ";
    if (auto scale = term_scales.find(info.name); scale != term_scales.end())
      measure_against_terms(d, a.first_step.at(info.name), other->second, scale->second);
    if (node && node->op == PARITY_OP_ADAM_STEP && role == "updated weight") {
      const std::string& grad = g.values()[static_cast<size_t>(node->inputs[1])].name;
      auto scale = term_scales.find(grad);
      auto grad_want = other_grad(grad);
      if (scale != term_scales.end() && grad_want)
        measure_adam_update(d, a.first_step.at(info.name), other->second, *grad_want, scale->second, node->params.adam.lr,
                            half ? half_gradient_noise(*grad_want, f32_value(f32_run.first_step, grad), scale->second)
                                 : 1e-4);
    }
    apply_half_model_bound(d, a.first_step.at(info.name), other->second, f32_value(f32_run.first_step, info.name));
    if (!d.pass && report.first_failure < 0) report.first_failure = static_cast<int>(report.values.size());
    report.values.push_back(std::move(d));
  };
  for (const Node& n : g.nodes()) {
    const ops::Tolerance& tol = ops::rule(n.op).tolerance;
    for (int32_t out : n.outputs) {
      const ValueInfo& info = g.values()[static_cast<size_t>(out)];
      // a bf16 or f16 output: the op's half tolerance (ops/op_rule.cpp)
      add(out, &n, info.name.rfind("grad/", 0) == 0 ? "gradient" : "output", *tolerances[static_cast<size_t>(out)]);
    }
    if (n.op == PARITY_OP_ADAM_STEP || n.op == PARITY_OP_SGD_STEP) {
      // The update's own tolerance, or (mixed precision) its gradient's where that is looser.
      const ops::Tolerance* grad_tol = tolerances[static_cast<size_t>(n.inputs[1])];
      const ops::Tolerance& update_tol = grad_tol && grad_tol->step_nmse > tol.step_nmse ? *grad_tol : tol;
      add(n.inputs[0], &n, "updated weight", update_tol);
      updated[n.inputs[0]] = &update_tol;
      for (size_t i = 2; i < n.inputs.size(); ++i)
        if (g.values()[static_cast<size_t>(n.inputs[i])].kind == PARITY_VALUE_STATE) {
          add(n.inputs[i], &n, "optimizer state", update_tol);
          updated[n.inputs[i]] = &update_tol;
        }
    }
  }
  // The step as the Trainer compiles it on this backend against the other side's (a backend's, or
  // PyTorch's only step).
  for (const auto& [name, t] : a.trainer_step) {
    const auto& other_map = b.trainer_step.empty() ? b.first_step : b.trainer_step;
    auto other = other_map.find(name);
    if (other == other_map.end()) {
      ++report.not_compared;
      continue;
    }
    const Value v = g.find(name);
    const ValueInfo& info = g.value(v);
    const ops::Tolerance& tol = info.producer >= 0   ? *tolerances[static_cast<size_t>(v.id)]
                                : updated.count(v.id) ? *updated.at(v.id)
                                                      : ops::rule(PARITY_OP_ADAM_STEP).tolerance;
    TensorDiff d = compare_tensors(t, other->second, tol.step_nmse);
    d.name = name;
    d.node = info.producer >= 0 ? g.nodes()[static_cast<size_t>(info.producer)].name : "(optimizer)";
    d.op = info.producer >= 0 ? ops::rule(g.nodes()[static_cast<size_t>(info.producer)].op).name : "ADAM_STEP";
    d.role = "train plan";
    d.note = "the step as `parity train` compiles it (only the loss kept: fusion allowed)";
    if (auto scale = term_scales.find(name); scale != term_scales.end())
      measure_against_terms(d, t, other->second, scale->second);
    for (const Node& n : g.nodes()) {
      if (n.op != PARITY_OP_ADAM_STEP || n.inputs[0] != v.id) continue;
      const std::string& grad = g.values()[static_cast<size_t>(n.inputs[1])].name;
      auto scale = term_scales.find(grad);
      if (scale != term_scales.end() && other_grad(grad))
        measure_adam_update(d, t, other->second, *other_grad(grad), scale->second, n.params.adam.lr,
                            half ? half_gradient_noise(*other_grad(grad), f32_value(f32_run.first_step, grad), scale->second)
                                 : 1e-4);
    }
    apply_half_model_bound(d, t, other->second, f32_value(f32_run.trainer_step, name));
    if (!d.pass && report.first_failure < 0) report.first_failure = static_cast<int>(report.values.size());
    report.values.push_back(std::move(d));
  }
  if (!o.dump.empty()) {
    dump_run(o.dump, a.name, a);
    dump_run(o.dump, b.name == a.name ? b.name + "-against" : b.name, b);
  }
  for (int step = 0; step < o.steps; ++step)
    report.drift.push_back({step + 1, a.losses[static_cast<size_t>(step)], b.losses[static_cast<size_t>(step)],
                            weights_nmse(a.weights[static_cast<size_t>(step)], b.weights[static_cast<size_t>(step)])});
  return report;
}

DeterminismReport check_determinism(const std::string& model, const std::string& backend, int64_t batch, int threads,
                                    uint64_t seed) {
  const ModelSpec spec = load_model(model);
  ModelCheckOptions o;
  o.batch = batch;
  o.seed = seed;
  ImageBatch b = load_or_draw_batch(o, spec);
  const std::map<std::string, Tensor> weights = init_weights(spec, seed);
  const TrainingGraph tg = build_training_graph(spec, batch, o.seed);
  BackendTrainingStep first(backend, threads, tg.graph, tg.temporaries), second(backend, threads, tg.graph, tg.temporaries);
  for (BackendTrainingStep* s : {&first, &second}) {
    s->start(weights);
    s->run(b, 1);
  }
  DeterminismReport report;
  report.backend = first.name();
  for (size_t i = 0; i < tg.graph.values().size(); ++i) {
    if (tg.graph.values()[i].kind == PARITY_VALUE_INPUT) continue;
    Tensor x = first.step().read(static_cast<int32_t>(i)), y = second.step().read(static_cast<int32_t>(i));
    ++report.values_compared;
    if (std::memcmp(x.data(), y.data(), x.nbytes()) != 0) report.differing.push_back(tg.graph.values()[i].name);
  }
  return report;
}

}  // namespace parity
