// ops/linear.cpp — linear layer y = x w^T + b (w is [out, in] as in PyTorch), with its two
// backward ops beside it.
#include <fmt/format.h>

#include "ops/op_rule.h"

namespace parity::ops {
namespace {

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  require_rank(c, 0, 2, "input");
  require_rank(c, 1, 2, "weight");
  require_rank(c, 2, 1, "bias");
  const DType dtype = require_float_operands(c, {{0, "input"}, {1, "weight"}});
  require_dtype(c, 2, DType::f32, "bias (added in f32 before the one rounding)");
  const Shape& x = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  const Shape& b = c.inputs[2]->shape;
  if (w[1] != x[1])
    fail(c, "linear", fmt::format("weight {} expects {} input features, input {} has {}", w.str(), w[1], x.str(), x[1]));
  if (b[0] != w[0]) fail(c, "linear", fmt::format("bias {} must have {} elements (one per output)", b.str(), w[0]));
  return {{Shape{x[0], w[0]}, dtype}};
}

double flops_forward(const OpCall& c) {
  const Shape& x = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  return double(x[0]) * w[0] * (2.0 * w[1] + 1.0);
}

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  std::vector<Value> grads(3);
  if (!dL_dy[0].valid()) return grads;
  Value x{node.inputs[0]}, w{node.inputs[1]};
  if (needed[0]) grads[0] = b.node(PARITY_OP_LINEAR_BWD_DATA, node.params, {dL_dy[0], w}, node.name + ".bwd_data")[0];
  if (needed[1] || needed[2]) {
    std::vector<Value> dwdb = b.node(PARITY_OP_LINEAR_BWD_WEIGHT, node.params, {x, dL_dy[0]}, node.name + ".bwd_weight");
    grads[1] = dwdb[0];
    grads[2] = dwdb[1];
  }
  return grads;
}

std::vector<OutputSpec> infer_bwd_data(const OpCall& c) {
  require_rank(c, 0, 2, "dy");
  require_rank(c, 1, 2, "weight");
  const DType dtype = require_float_operands(c, {{0, "dy"}, {1, "weight"}});
  const Shape& dy = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  if (dy[1] != w[0]) fail(c, "linear_bwd_data", fmt::format("dy {} and weight {} disagree on outputs", dy.str(), w.str()));
  return {{Shape{dy[0], w[1]}, dtype}};
}

std::vector<OutputSpec> infer_bwd_weight(const OpCall& c) {
  require_rank(c, 0, 2, "input");
  require_rank(c, 1, 2, "dy");
  const DType dtype = require_float_operands(c, {{0, "input"}, {1, "dy"}});
  const Shape& x = c.inputs[0]->shape;
  const Shape& dy = c.inputs[1]->shape;
  if (x[0] != dy[0]) fail(c, "linear_bwd_weight", fmt::format("batch of input {} and dy {} differ", x.str(), dy.str()));
  return {{Shape{dy[1], x[1]}, dtype}, {Shape{dy[1]}, DType::f32}};  // db stays f32, as the bias
}

double flops_bwd_data(const OpCall& c) {
  const Shape& dy = c.inputs[0]->shape;
  return 2.0 * dy.numel() * c.inputs[1]->shape[1];
}

double flops_bwd_weight(const OpCall& c) {
  const Shape& dy = c.inputs[1]->shape;
  return 2.0 * dy.numel() * c.inputs[0]->shape[1] + dy.numel();
}

void linear_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], in = d[1], o = d[2];
  const std::string label = fmt::format("x[{},{}] w[{},{}]", n, in, o, in);
  Tensor x = draw.values(Shape{n, in}), w = draw.values(Shape{o, in}), b = draw.values(Shape{o});
  Tensor dy = draw.values(Shape{n, o});
  out.push_back({PARITY_OP_LINEAR, {}, {{x}, {w}, {b}}, label});
  out.push_back({PARITY_OP_LINEAR_BWD_DATA, {}, {{dy}, {w}}, label});
  out.push_back({PARITY_OP_LINEAR_BWD_WEIGHT, {}, {{x}, {dy}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const auto& l : std::vector<std::vector<int64_t>>{{1, 1, 1}, {1, 7, 3}, {5, 13, 11}, {64, 128, 10}, {3, 600, 17}, {33, 9, 128}})
    linear_cases(out, draw, l);
}

const ConformanceFamily kCases{"linear*", "N,IN,OUT", 3, 3, false, 1, builtin_cases, linear_cases};

// Half x, w (and dy): exact products summed in f32, rounded once; the bias stays f32.
const HalfSupport kForwardHalf{kHalfRoundedSupport.bf16, kHalfRoundedSupport.f16, 1u << 2};

}  // namespace

extern const OpRule linear_rule{"LINEAR", 3, 1, infer_forward, flops_forward, gradient, kDotProductTolerance, &kCases,
                                0, &kForwardHalf};
extern const OpRule linear_bwd_data_rule{"LINEAR_BWD_DATA", 2, 1, infer_bwd_data, flops_bwd_data, nullptr,
                                           kDotProductTolerance, nullptr, 0, &kHalfRoundedSupport};
extern const OpRule linear_bwd_weight_rule{"LINEAR_BWD_WEIGHT", 2, 2, infer_bwd_weight, flops_bwd_weight,
                                             nullptr, kDotProductTolerance, nullptr, 0, &kHalfRoundedSupport};

}  // namespace parity::ops
