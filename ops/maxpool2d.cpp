// ops/maxpool2d.cpp — 2-D max pooling (no padding, floor division) with argmax indices, and
// its backward that routes each gradient to the first maximum of its window.
#include <fmt/format.h>

#include "ops/op_rule.h"

namespace parity::ops {
namespace {

void check_params(const OpCall& c, const char* op) {
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  if (p.kernel_h <= 0 || p.kernel_w <= 0)
    fail(c, op, fmt::format("kernel must be > 0, got {}x{}", p.kernel_h, p.kernel_w));
  if (p.stride_h <= 0 || p.stride_w <= 0)
    fail(c, op, fmt::format("stride must be > 0, got {}x{}", p.stride_h, p.stride_w));
}

int64_t pool_out(int64_t in, int kernel, int stride) { return (in - kernel) / stride + 1; }

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_params(c, "maxpool2d");
  require_rank(c, 0, 4, "input");
  require_dtype(c, 0, DType::f32, "input");
  const Shape& x = c.inputs[0]->shape;
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  if (x[2] < p.kernel_h || x[3] < p.kernel_w)
    fail(c, "maxpool2d", fmt::format("kernel {}x{} is larger than the input {}", p.kernel_h, p.kernel_w, x.str()));
  Shape y{x[0], x[1], pool_out(x[2], p.kernel_h, p.stride_h), pool_out(x[3], p.kernel_w, p.stride_w)};
  return {{y, DType::f32}, {y, DType::i32}};
}

double flops_forward(const OpCall& c) {
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  const Shape& x = c.inputs[0]->shape;
  return double(x[0]) * x[1] * pool_out(x[2], p.kernel_h, p.stride_h) * pool_out(x[3], p.kernel_w, p.stride_w) *
         p.kernel_h * p.kernel_w;
}

std::vector<Value> gradient(GraphBuilder& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  parity_op_params p = node.params;
  const Shape& x = b.graph().value(Value{node.inputs[0]}).shape;
  p.maxpool2d.input_h = static_cast<int32_t>(x[2]);
  p.maxpool2d.input_w = static_cast<int32_t>(x[3]);
  return {b.node(PARITY_OP_MAXPOOL2D_BWD, p, {dL_dy[0], Value{node.outputs[1]}}, node.name + ".bwd")[0]};
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  check_params(c, "maxpool2d_bwd");
  require_rank(c, 0, 4, "dy");
  require_dtype(c, 0, DType::f32, "dy");
  require_dtype(c, 1, DType::i32, "indices");
  require_same_shape(c, 0, 1);
  const Shape& dy = c.inputs[0]->shape;
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  if (p.input_h <= 0 || p.input_w <= 0 || pool_out(p.input_h, p.kernel_h, p.stride_h) != dy[2] ||
      pool_out(p.input_w, p.kernel_w, p.stride_w) != dy[3])
    fail(c, "maxpool2d_bwd", fmt::format("input size {}x{} does not pool to dy {}", p.input_h, p.input_w, dy.str()));
  return {{Shape{dy[0], dy[1], p.input_h, p.input_w}, DType::f32}};
}

double flops_backward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

}  // namespace

extern const OpRule maxpool2d_rule{"MAXPOOL2D", 1, 2, infer_forward, flops_forward, gradient, kExactTolerance};
extern const OpRule maxpool2d_bwd_rule{"MAXPOOL2D_BWD", 2, 1, infer_backward, flops_backward, nullptr,
                                         // each input element receives at most one window's gradient in a 2x2/2 pool; with
                                         // overlapping windows the sum of a few terms may round differently
                                         Tolerance{1e-12, 1e-8, "a sum of at most kernel^2 gradient terms", true}};

}  // namespace parity::ops
