// ops/maxpool2d.cpp — 2-D max pooling (no padding, floor division) with argmax indices, and
// its backward that routes each gradient to the first maximum of its window.
#include <limits>

#include <fmt/format.h>

#include "ops/kernels/conv_geometry.h"
#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

void check_params(const OpCall& c, const char* op) {
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  if (p.kernel_h <= 0 || p.kernel_w <= 0)
    fail(c, op, fmt::format("kernel must be > 0, got {}x{}", p.kernel_h, p.kernel_w));
  if (p.stride_h <= 0 || p.stride_w <= 0)
    fail(c, op, fmt::format("stride must be > 0, got {}x{}", p.stride_h, p.stride_w));
}

using kernels::pool2d_output_size;

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_params(c, "maxpool2d");
  require_rank(c, 0, 4, "input");
  require_dtype(c, 0, DType::f32, "input");
  const Shape& x = c.inputs[0]->shape;
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  if (x[2] < p.kernel_h || x[3] < p.kernel_w)
    fail(c, "maxpool2d", fmt::format("kernel {}x{} is larger than the input {}", p.kernel_h, p.kernel_w, x.str()));
  Shape y{x[0], x[1], pool2d_output_size(x[2], p.kernel_h, p.stride_h), pool2d_output_size(x[3], p.kernel_w, p.stride_w)};
  return {{y, DType::f32}, {y, DType::i32}};
}

double flops_forward(const OpCall& c) {
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  const Shape& x = c.inputs[0]->shape;
  return double(x[0]) * x[1] * pool2d_output_size(x[2], p.kernel_h, p.stride_h) * pool2d_output_size(x[3], p.kernel_w, p.stride_w) *
         p.kernel_h * p.kernel_w;
}

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  parity_op_params p = node.params;
  const Shape& x = b.value(Value{node.inputs[0]}).shape;
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
  if (p.input_h <= 0 || p.input_w <= 0 || pool2d_output_size(p.input_h, p.kernel_h, p.stride_h) != dy[2] ||
      pool2d_output_size(p.input_w, p.kernel_w, p.stride_w) != dy[3])
    fail(c, "maxpool2d_bwd", fmt::format("input size {}x{} does not pool to dy {}", p.input_h, p.input_w, dy.str()));
  return {{Shape{dy[0], dy[1], p.input_h, p.input_w}, DType::f32}};
}

double flops_backward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

// maxpool's backward takes indices; they are drawn inside each window so that ties and
// overlapping windows (stride < kernel) route several gradients to one element.
void maxpool_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
  const int kernel = static_cast<int>(d[4]), stride = static_cast<int>(d[5]);
  if (kernel <= 0 || stride <= 0 || kernel > h || kernel > w)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check ops: maxpool2d case [{},{},{},{}] kernel {} stride {} has no output", n, c, h, w, kernel, stride));
  parity_op_params p{};
  p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = kernel;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = stride;
  p.maxpool2d.input_h = static_cast<int32_t>(h);
  p.maxpool2d.input_w = static_cast<int32_t>(w);
  const std::string label = fmt::format("x[{},{},{},{}] kernel {} stride {} {}", n, c, h, w, kernel, stride,
                                        draw.smooth() ? "distinct values" : "with ties");
  Tensor x = draw.values(Shape{n, c, h, w});
  draw.add_kinks(x);
  out.push_back({PARITY_OP_MAXPOOL2D, p, {{x}}, label});
  const int64_t P = pool2d_output_size(h, kernel, stride), Q = pool2d_output_size(w, kernel, stride);
  Tensor idx(Shape{n, c, P, Q}, DType::i32);
  std::mt19937 rng(static_cast<uint32_t>(n * 131 + h));
  std::uniform_int_distribution<int> pick(0, kernel - 1);
  for (int64_t plane = 0; plane < n * c; ++plane)
    for (int64_t i = 0; i < P; ++i)
      for (int64_t j = 0; j < Q; ++j)
        idx.i32()[(plane * P + i) * Q + j] = static_cast<int32_t>((i * stride + pick(rng)) * w + j * stride + pick(rng));
  out.push_back({PARITY_OP_MAXPOOL2D_BWD, p, {{draw.values(Shape{n, c, P, Q})}, {idx}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const auto& m : std::vector<std::vector<int64_t>>{{1, 1, 2, 2, 2, 2}, {2, 3, 7, 9, 2, 2}, {1, 2, 9, 9, 3, 2},
                                                          {3, 1, 5, 6, 3, 1}, {2, 4, 28, 28, 2, 2}})
    maxpool_cases(out, draw, m);
  // Rows wider than the cpu backend's 16-output vectors, with a NaN, which wins its window.
  maxpool_cases(out, draw, {2, 2, 6, 71, 2, 2});
  if (!draw.smooth()) {
    OpCase& forward = out[out.size() - 2];
    forward.operands[0].tensor.f32()[71 + 40] = std::numeric_limits<float>::quiet_NaN();
    forward.label += " and a NaN";
  }
}

const ConformanceFamily kCases{"maxpool2d*", "N,C,H,W,KERNEL,STRIDE", 6, 6, false, 3, builtin_cases, maxpool_cases};

}  // namespace

extern const OpRule maxpool2d_rule{"MAXPOOL2D", 1, 2, infer_forward, flops_forward, gradient, kExactTolerance, &kCases};
extern const OpRule maxpool2d_bwd_rule{"MAXPOOL2D_BWD", 2, 1, infer_backward, flops_backward, nullptr,
                                         // each input element receives at most one window's gradient in a 2x2/2 pool; with
                                         // overlapping windows the sum of a few terms may round differently
                                         Tolerance{1e-12, 1e-8, "a sum of at most kernel^2 gradient terms", true}};

}  // namespace parity::ops
