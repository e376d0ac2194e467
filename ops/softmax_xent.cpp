// ops/softmax_xent.cpp — softmax cross-entropy over integer labels (torch's cross_entropy: mean,
// sum or none over the batch, an optional ignore_index; ABI 7), its backward, and the evaluation
// ops that read the same logits: argmax and accuracy; their conformance cases.
#include <limits>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

void check_logits_labels(const OpCall& c, const char* op) {
  require_rank(c, 0, 2, "logits");
  require_dtype(c, 0, DType::f32, "logits");
  require_rank(c, 1, 1, "labels");
  require_dtype(c, 1, DType::i32, "labels");
  const Shape& logits = c.inputs[0]->shape;
  const Shape& labels = c.inputs[1]->shape;
  if (labels[0] != logits[0])
    fail(c, op, fmt::format("labels {} must have one entry per row of logits {}", labels.str(), logits.str()));
  if (logits[0] <= 0 || logits[1] <= 0) fail(c, op, fmt::format("logits {} must not be empty", logits.str()));
}

const char* reduction_name(int32_t reduction) {
  switch (reduction) {
    case PARITY_REDUCTION_MEAN: return "mean";
    case PARITY_REDUCTION_SUM: return "sum";
    case PARITY_REDUCTION_NONE: return "none";
    default: return "unknown";
  }
}

// parity_softmax_xent_params: the reduction is one of the three (ignore_index may be any int32,
// as torch's); returns the loss's shape, [1] or [N] for none.
Shape loss_shape(const OpCall& c, const char* op) {
  const int32_t reduction = c.params.softmax_xent.reduction;
  if (reduction != PARITY_REDUCTION_MEAN && reduction != PARITY_REDUCTION_SUM && reduction != PARITY_REDUCTION_NONE)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("{} '{}': reduction must be {} (mean), {} (sum) or {} (none), got {}", op, c.node,
                            int(PARITY_REDUCTION_MEAN), int(PARITY_REDUCTION_SUM), int(PARITY_REDUCTION_NONE),
                            reduction));
  return reduction == PARITY_REDUCTION_NONE ? Shape{c.inputs[0]->shape[0]} : Shape{1};
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_logits_labels(c, "softmax_xent");
  return {{loss_shape(c, "softmax_xent"), DType::f32}};
}

// max, exp, sum, log and the pick per element, roughly.
double flops_forward(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dloss,
                            const std::vector<bool>& needed) {
  std::vector<Value> grads(2);  // labels are integers: no gradient
  if (!dL_dloss[0].valid() || !needed[0]) return grads;
  // The same params: the backward reduces (and ignores) as its forward did.
  grads[0] = b.node(PARITY_OP_SOFTMAX_XENT_BWD, node.params,
                    {Value{node.inputs[0]}, Value{node.inputs[1]}, dL_dloss[0]}, node.name + ".bwd")[0];
  return grads;
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  check_logits_labels(c, "softmax_xent_bwd");
  require_rank(c, 2, 1, "dloss");
  const Shape want = loss_shape(c, "softmax_xent_bwd");
  if (c.inputs[2]->shape != want)
    fail(c, "softmax_xent_bwd",
         fmt::format("dloss '{}' must have the loss's shape {} (reduction {}), got {}", c.inputs[2]->name, want.str(),
                     reduction_name(c.params.softmax_xent.reduction), c.inputs[2]->shape.str()));
  return {{c.inputs[0]->shape, DType::f32}};
}

std::vector<OutputSpec> infer_argmax(const OpCall& c) {
  require_rank(c, 0, 2, "input");
  require_dtype(c, 0, DType::f32, "input");
  return {{Shape{c.inputs[0]->shape[0]}, DType::i32}};
}

std::vector<OutputSpec> infer_accuracy(const OpCall& c) {
  check_logits_labels(c, "accuracy");
  return {{Shape{1}, DType::f32}};
}

double flops_scan(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

void xent_cases(std::vector<OpCase>& out, Draw& draw, int64_t n, int64_t k, float scale) {
  const std::string label = fmt::format("logits[{},{}]{}", n, k, scale > 1 ? fmt::format(" scaled {:g}", scale) : "");
  Tensor logits = draw.values(Shape{n, k}, scale);
  Tensor labels = draw.labels(n, k);
  out.push_back({PARITY_OP_SOFTMAX_XENT, {}, {{logits}, {labels}}, label});
  out.push_back({PARITY_OP_SOFTMAX_XENT_BWD, {}, {{logits}, {labels}, {Tensor::from_f32(Shape{1}, {0.75f})}}, label});
  out.push_back({PARITY_OP_ARGMAX, {}, {{logits}}, label});
  out.push_back({PARITY_OP_ACCURACY, {}, {{logits}, {labels}}, label});
}

// A case of torch's reduction and ignore_index (ABI 7). Rows whose index is a multiple of
// `ignore_every` get the label ignore_index (1: every row; 0: none set, though the index may
// still equal drawn labels when it is a class).
struct ReductionCase {
  int64_t n, k;
  float scale;
  parity_reduction reduction;
  bool has_ignore_index;
  int32_t ignore_index;
  int64_t ignore_every;
  bool nan_in_ignored_row;  // logits of the first ignored row NaN: its term is still 0, its gradient NaN
  const char* why;
};

void reduction_case(std::vector<OpCase>& out, Draw& draw, const ReductionCase& r) {
  parity_op_params p{};
  p.softmax_xent.reduction = r.reduction;
  p.softmax_xent.has_ignore_index = r.has_ignore_index ? 1 : 0;
  p.softmax_xent.ignore_index = r.ignore_index;
  std::string label = fmt::format("logits[{},{}]{} {}", r.n, r.k, r.scale > 1 ? fmt::format(" scaled {:g}", r.scale) : "",
                                  reduction_name(r.reduction));
  if (r.has_ignore_index) label += fmt::format(", ignore_index {}", r.ignore_index);
  label += fmt::format(" ({})", r.why);
  Tensor logits = draw.values(Shape{r.n, r.k}, r.scale);
  Tensor labels = draw.labels(r.n, r.k);
  if (r.ignore_every > 0)
    for (int64_t i = 0; i < r.n; i += r.ignore_every) labels.i32()[i] = r.ignore_index;
  if (r.nan_in_ignored_row) logits.f32()[0] = std::numeric_limits<float>::quiet_NaN();
  const Tensor dloss = r.reduction == PARITY_REDUCTION_NONE ? draw.values(Shape{r.n}) : Tensor::from_f32(Shape{1}, {0.75f});
  out.push_back({PARITY_OP_SOFTMAX_XENT, p, {{logits}, {labels}}, label});
  out.push_back({PARITY_OP_SOFTMAX_XENT_BWD, p, {{logits}, {labels}, {dloss}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const auto& x : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 10}, {7, 3}, {64, 10}, {5, 1000}})
    xent_cases(out, draw, x.first, x.second, 5.0f);
  xent_cases(out, draw, 4, 10, 3e4f);  // large logits: a naive exp overflows

  // Reduction and ignore_index (ABI 7), drawn from a fork of their own so that the cases above
  // and the families after this one keep their values.
  Draw reductions = draw.fork(0x78656e74);  // "xent"
  const std::vector<ReductionCase> cases = {
      {7, 3, 5.0f, PARITY_REDUCTION_SUM, false, 0, 0, false, "every row counts"},
      {7, 3, 5.0f, PARITY_REDUCTION_NONE, false, 0, 0, false, "one term per row"},
      {1, 1, 5.0f, PARITY_REDUCTION_NONE, false, 0, 0, false, "one row, one class"},
      {64, 10, 5.0f, PARITY_REDUCTION_MEAN, true, -100, 3, false, "every 3rd row ignored: the mean of the others"},
      {64, 10, 5.0f, PARITY_REDUCTION_SUM, true, -100, 3, false, "every 3rd row ignored"},
      {64, 10, 5.0f, PARITY_REDUCTION_NONE, true, -100, 3, false, "every 3rd row ignored: 0"},
      {7, 3, 5.0f, PARITY_REDUCTION_MEAN, true, 1, 0, false, "the index a class: its rows ignored"},
      {5, 1000, 5.0f, PARITY_REDUCTION_NONE, true, 999, 2, false, "the last class ignored, wide rows"},
      {4, 10, 3e4f, PARITY_REDUCTION_SUM, true, -1, 2, false, "large logits"},
      {6, 4, 5.0f, PARITY_REDUCTION_SUM, true, -100, 1, false, "every row ignored: 0"},
      {6, 4, 5.0f, PARITY_REDUCTION_NONE, true, -100, 1, false, "every row ignored: all 0"},
  };
  for (const ReductionCase& r : cases) reduction_case(out, reductions, r);
  // Not for finite differences (`--gradient`), whose objective would be NaN: the mean over no
  // row (NaN as torch's 0/0, with a gradient of 0), and an ignored row of NaN logits (a loss
  // that stays finite, a gradient row that is NaN as torch's).
  if (!draw.smooth()) {
    reduction_case(out, reductions, {6, 4, 5.0f, PARITY_REDUCTION_MEAN, true, -100, 1, false, "every row ignored: NaN"});
    reduction_case(out, reductions, {8, 5, 5.0f, PARITY_REDUCTION_MEAN, true, -100, 4, true, "an ignored row of NaN logits"});
  }
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  xent_cases(out, draw, shape[0], shape[1], 5.0f);
}

const ConformanceFamily kCases{"softmax_xent* argmax accuracy", "N,CLASSES", 2, 2, false, 4, builtin_cases, user_case};

}  // namespace

// Each row term is a float32 log-sum-exp minus a logit: ~1e-7 relative error (of the row's
// magnitude), so NMSE ~1e-14 whether the loss is one number or N (reduction none). The mean and
// the sum add non-negative terms (no cancellation): in double on cpu, in a float32 tree on the
// native kernels (~log2 N * 6e-8 relative more, 4e-7 at N = 64, NMSE ~2e-13). 1e-12 holds both,
// while one row term wrong by 1e-5 of the loss, or one ignored row counted, fails it.
extern const OpRule softmax_xent_rule{"SOFTMAX_XENT", 2, 1, infer_forward, flops_forward, gradient,
                                     Tolerance{1e-12, 1e-10, "float32 exp/log: ~1e-7 relative error per row term", false},
                                     &kCases};
extern const OpRule softmax_xent_bwd_rule{"SOFTMAX_XENT_BWD", 3, 1, infer_backward, flops_forward, nullptr,
                                         Tolerance{1e-10, 1e-8, "float32 softmax: ~1e-7 relative error per element", false}};
extern const OpRule argmax_rule{"ARGMAX", 1, 1, infer_argmax, flops_scan, nullptr, kExactTolerance};
extern const OpRule accuracy_rule{"ACCURACY", 2, 1, infer_accuracy, flops_scan, nullptr, kExactTolerance};

}  // namespace parity::ops
