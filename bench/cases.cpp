// bench/cases.cpp — building, compiling and validating the op and model cases of `parity bench`.
#include "bench/cases.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "model/autocast.h"
#include "ops/op_rule.h"
#include "parity/check.h"
#include "util/synthetic_batch.h"

namespace parity::bench {
namespace {

// Model cases, float32 results against ref's float64 (as in tests/test_model.cpp): NMSE 1e-9 for
// logits and loss; 1e-7 for weights after one Adam step. Adam's first step moves each weight by
// about lr times the sign of its gradient, so a gradient within rounding of zero may flip sign
// and move that weight by up to 2 lr: in a small tensor one such flip alone exceeds any NMSE
// bound that would still catch a wrong gradient (conv2 of seed-cnn-4conv, 4608 weights: 4e-6 /
// 10.7 = 3.7e-7 per flip). Such elements (|got - want| within 2 lr) are counted apart: at most
// one per thousand elements of a tensor (and at least one) may flip; the rest must meet 1e-7.
constexpr double kLogitsNmse = 1e-9;
constexpr double kWeightNmse = 1e-7;
constexpr double kFlipsPerElement = 1e-3;

double graph_flops(const Graph& g) {
  double total = 0;
  for (const Node& node : g.nodes()) {
    std::vector<const ValueInfo*> inputs;
    for (int32_t v : node.inputs) inputs.push_back(&g.values()[static_cast<size_t>(v)]);
    total += ops::rule(node.op).flops(ops::OpCall{node.name, node.params, inputs});
  }
  return total;
}

bool is_timed_op(parity_op op) {
  switch (op) {
    case PARITY_OP_CONV2D: case PARITY_OP_CONV2D_BWD_DATA: case PARITY_OP_CONV2D_BWD_WEIGHT:
    case PARITY_OP_LINEAR: case PARITY_OP_LINEAR_BWD_DATA: case PARITY_OP_LINEAR_BWD_WEIGHT:
    case PARITY_OP_RELU: case PARITY_OP_RELU_BWD: case PARITY_OP_MAXPOOL2D: case PARITY_OP_MAXPOOL2D_BWD:
      return true;
    default: return false;
  }
}

// Inputs of an op case: floats in [-1, 1); maxpool indices pointing inside their windows.
std::vector<Tensor> op_inputs(const OpCase& c, uint64_t seed) {
  const Node& node = c.graph.nodes()[0];
  std::vector<Tensor> tensors;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const ValueInfo& vi = c.graph.values()[static_cast<size_t>(node.inputs[i])];
    Tensor t(vi.shape, vi.dtype);
    if (vi.dtype == DType::f32) {
      for (int64_t k = 0; k < t.numel(); ++k)
        t.f32()[k] = static_cast<float>(synthetic_bits(seed, 100 + i, static_cast<uint64_t>(k)) >> 40) * 0x1p-23f - 1.0f;
    } else if (node.op == PARITY_OP_MAXPOOL2D_BWD) {
      const parity_maxpool2d_params& mp = node.params.maxpool2d;
      const int64_t P = vi.shape[2], Q = vi.shape[3];
      for (int64_t k = 0; k < t.numel(); ++k) {
        const int64_t p = (k / Q) % P, q = k % Q;
        const uint64_t bits = synthetic_bits(seed, 100 + i, static_cast<uint64_t>(k));
        const int64_t r = static_cast<int64_t>(bits % static_cast<uint64_t>(mp.kernel_h));
        const int64_t s = static_cast<int64_t>((bits >> 32) % static_cast<uint64_t>(mp.kernel_w));
        t.i32()[k] = static_cast<int32_t>((p * mp.stride_h + r) * mp.input_w + q * mp.stride_w + s);
      }
    }
    tensors.push_back(std::move(t));
  }
  return tensors;
}

// `got` against ref's `want` by compare_tensors (threshold 0: bit equality); empty when they
// agree, else why not. `worst` keeps the largest NMSE of the float values.
std::string disagreement(const std::string& name, const Tensor& got, const Tensor& want, double threshold,
                         double* worst) {
  const TensorDiff d = compare_tensors(got, want, threshold);
  if (got.dtype() != DType::f32) return d.pass ? "" : name + ": indices differ from ref";
  *worst = std::max(*worst, d.nmse);
  if (d.nonfinite_mismatch) return name + ": NaN/Inf where ref has none (or the reverse)";
  if (d.pass) return "";
  if (threshold == 0) return fmt::format("{}: not bit-equal to ref (NMSE {:.3g})", name, d.nmse);
  return fmt::format("{}: NMSE {:.3g} > {:.0e}", name, d.nmse, threshold);
}

// Weights after one Adam step (lr): the flips of gradients within rounding of zero set apart
// (kFlipsPerElement), then disagreement() on the rest at `threshold`.
std::string weight_disagreement(const std::string& name, const Tensor& got, const Tensor& want, float lr,
                                double threshold, double* worst) {
  if (got.dtype() != DType::f32 || got.shape() != want.shape()) return disagreement(name, got, want, threshold, worst);
  Tensor rest_got = got, rest_want = want;
  int64_t flips = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double diff = std::fabs(double(got.f32()[i]) - want.f32()[i]);
    if (diff > 0.5 * lr && diff <= 2.0 * lr * (1.0 + 1e-3)) {
      ++flips;
      rest_got.f32()[i] = rest_want.f32()[i];
    }
  }
  const int64_t allowed = std::max<int64_t>(1, static_cast<int64_t>(kFlipsPerElement * double(got.numel())));
  if (flips > allowed)
    return fmt::format("{}: {} of {} weights moved by about 2 lr against ref (at most {} gradient sign flips allowed)",
                       name, flips, got.numel(), allowed);
  return disagreement(name, rest_got, rest_want, threshold, worst);
}

// The training (or inference) graph of a model case under `precision`.
Graph model_case_graph(const ModelSpec& spec, bool train, int64_t n, uint64_t seed, Precision precision) {
  ForwardOptions forward_options;
  forward_options.training = train;  // dropout draws by (seed, step) as in parity train
  forward_options.seed = seed;
  Graph fwd = autocast(build_forward(spec, n, forward_options), precision);
  OptimizerConfig adam;
  return train ? differentiate(fwd, fwd.find("loss"), &adam) : fwd;
}

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  BackendOptions bo;
  bo.threads = threads;
  return create_backend(name, bo);
}

std::vector<OpCase> op_cases(const ModelSpec& spec, int64_t batch) {
  ForwardOptions training;
  training.training = true;
  Graph fwd = build_forward(spec, batch, training);
  OptimizerConfig adam;
  Graph train = differentiate(fwd, fwd.find("loss"), &adam);
  std::vector<OpCase> cases;
  for (const Node& node : train.nodes()) {
    if (!is_timed_op(node.op)) continue;
    GraphBuilder b;
    std::vector<Value> ins;
    std::vector<const ValueInfo*> infos;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const ValueInfo& vi = train.values()[static_cast<size_t>(node.inputs[i])];
      infos.push_back(&vi);
      ins.push_back(b.input(fmt::format("in{}", i), vi.shape, vi.dtype));
    }
    OpCase c;
    c.label = fmt::format("{} ({})", node.name, ops::rule(node.op).name);
    c.op = node.op;
    c.flops = ops::rule(node.op).flops(ops::OpCall{node.name, node.params, infos});
    for (Value v : b.node(node.op, node.params, ins, "op")) c.outputs.push_back(b.graph().value(v).name);
    c.graph = b.take();
    cases.push_back(std::move(c));
  }
  return cases;
}

CompiledStep compile_op_case(const OpCase& c, Backend& backend, uint64_t seed) {
  CompiledStep step(backend, c.graph, c.outputs);
  const std::vector<Tensor> inputs = op_inputs(c, seed);
  for (size_t i = 0; i < inputs.size(); ++i) step.write(fmt::format("in{}", i), inputs[i]);
  return step;
}

std::string validate_op(const OpCase& c, Backend& backend, Backend& ref, uint64_t seed, double* worst) {
  CompiledStep got = compile_op_case(c, backend, seed), want = compile_op_case(c, ref, seed);
  got.execute();
  want.execute();
  *worst = 0;
  const double threshold = ops::rule(c.op).tolerance.op_nmse;
  for (const std::string& out : c.outputs) {
    const std::string why = disagreement(out, got.read(out), want.read(out), threshold, worst);
    if (!why.empty()) return why;
  }
  return "";
}

double half_step_nmse(const Graph& g) {
  double loosest = 0;
  for (const Node& node : g.nodes())
    for (int32_t v : node.outputs) {
      const DType dtype = g.values()[static_cast<size_t>(v)].dtype;
      if (dtype == DType::bf16 || dtype == DType::f16)
        loosest = std::max(loosest, ops::tolerance_for(ops::rule(node.op), dtype).step_nmse);
    }
  return loosest;
}

ModelCaseStep::ModelCaseStep(const ModelSpec& spec, Backend& backend, bool train, int64_t n, uint64_t seed,
                             const std::map<std::string, Tensor>& weights, Precision precision)
    : train_(train),
      n_(n),
      graph_(model_case_graph(spec, train, n, seed, precision)),
      step_(backend, graph_, {"loss", "logits"}),
      weights_(weights) {
  restart();
  for (int64_t b = 0; b < kSyntheticBatches; ++b) batches_.push_back(random_batch(spec, n, seed, b));
  x_ = step_.value("x");
  y_ = step_.value("y");
  loss_ = step_.value("loss");
  if (train) optimizer_step_ = step_.value(optimizer_step_name());
  flops_ = graph_flops(graph_);
}

void ModelCaseStep::restart() {
  step_.zero_params_and_state();
  for (const auto& [name, t] : weights_) step_.write(name, t);
  steps_ = 0;
}

float ModelCaseStep::run(int64_t i) {
  const ImageBatch& b = batches_[static_cast<size_t>(i % kSyntheticBatches)];
  step_.write(x_, b.x);
  step_.write(y_, b.y);
  if (train_) {
    const int32_t t = ++steps_;
    step_.write(optimizer_step_, &t, sizeof t);
  }
  step_.execute();
  float loss = 0;
  step_.read(loss_, &loss, sizeof loss);
  return loss;
}

std::string validate_model(const ModelSpec& spec, Backend& backend, Backend& ref, bool train, int64_t n,
                           uint64_t seed, const std::map<std::string, Tensor>& weights, double* worst,
                           Precision precision) {
  ModelCaseStep got(spec, backend, train, n, seed, weights, precision),
      want(spec, ref, train, n, seed, weights, precision);
  got.run(0);
  want.run(0);
  *worst = 0;
  const double half = half_step_nmse(got.graph());
  for (const char* name : {"logits", "loss"}) {
    const std::string why = disagreement(name, got.value(name), want.value(name), std::max(kLogitsNmse, half), worst);
    if (!why.empty()) return why;
  }
  if (train)
    for (const ParamSpec& p : spec.params) {
      const std::string why = weight_disagreement(p.name, got.value(p.name), want.value(p.name), OptimizerConfig{}.lr,
                                                  std::max(kWeightNmse, half), worst);
      if (!why.empty()) return why;
    }
  return "";
}

}  // namespace parity::bench
