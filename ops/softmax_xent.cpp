// ops/softmax_xent.cpp — softmax cross-entropy over integer labels (mean over the batch), its
// backward, and the evaluation ops that read the same logits: argmax and accuracy; their
// conformance cases.
#include <fmt/format.h>

#include "ops/op_rule.h"

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

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_logits_labels(c, "softmax_xent");
  return {{Shape{1}, DType::f32}};
}

// max, exp, sum, log and the pick per element, roughly.
double flops_forward(const OpCall& c) { return 4.0 * c.inputs[0]->shape.numel(); }

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dloss,
                            const std::vector<bool>& needed) {
  std::vector<Value> grads(2);  // labels are integers: no gradient
  if (!dL_dloss[0].valid() || !needed[0]) return grads;
  grads[0] = b.node(PARITY_OP_SOFTMAX_XENT_BWD, node.params,
                    {Value{node.inputs[0]}, Value{node.inputs[1]}, dL_dloss[0]}, node.name + ".bwd")[0];
  return grads;
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  check_logits_labels(c, "softmax_xent_bwd");
  require_rank(c, 2, 1, "dloss");
  if (c.inputs[2]->shape[0] != 1) fail(c, "softmax_xent_bwd", "dloss must have shape [1]");
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

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const auto& x : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 10}, {7, 3}, {64, 10}, {5, 1000}})
    xent_cases(out, draw, x.first, x.second, 5.0f);
  xent_cases(out, draw, 4, 10, 3e4f);  // large logits: a naive exp overflows
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  xent_cases(out, draw, shape[0], shape[1], 5.0f);
}

const ConformanceFamily kCases{"softmax_xent* argmax accuracy", "N,CLASSES", 2, 2, false, 4, builtin_cases, user_case};

}  // namespace

extern const OpRule softmax_xent_rule{"SOFTMAX_XENT", 2, 1, infer_forward, flops_forward, gradient,
                                     // exp and log in float32 carry ~1e-7 relative error; the loss is one number
                                     Tolerance{1e-12, 1e-10, "float32 exp/log: ~1e-7 relative error on one scalar", false},
                                     &kCases};
extern const OpRule softmax_xent_bwd_rule{"SOFTMAX_XENT_BWD", 3, 1, infer_backward, flops_forward, nullptr,
                                         Tolerance{1e-10, 1e-8, "float32 softmax: ~1e-7 relative error per element", false}};
extern const OpRule argmax_rule{"ARGMAX", 1, 1, infer_argmax, flops_scan, nullptr, kExactTolerance};
extern const OpRule accuracy_rule{"ACCURACY", 2, 1, infer_accuracy, flops_scan, nullptr, kExactTolerance};

}  // namespace parity::ops
