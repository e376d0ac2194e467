// ops/conv2d.cpp — conv2d (NCHW, cross-correlation, zero padding, bias): validation, shapes,
// FLOPs, gradient and conformance cases, with its two backward ops beside it.
#include <fmt/format.h>

#include "ops/kernels/conv_geometry.h"
#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

using kernels::conv2d_output_size;

void check_params(const OpCall& c, const char* op) {
  const parity_conv2d_params& p = c.params.conv2d;
  if (p.stride_h <= 0 || p.stride_w <= 0)
    fail(c, op, fmt::format("stride must be > 0, got {}x{}", p.stride_h, p.stride_w));
  if (p.pad_h < 0 || p.pad_w < 0) fail(c, op, fmt::format("padding must be >= 0, got {}x{}", p.pad_h, p.pad_w));
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  check_params(c, "conv2d");
  require_rank(c, 0, 4, "input");
  require_rank(c, 1, 4, "weight");
  require_rank(c, 2, 1, "bias");
  for (int i = 0; i < 3; ++i) require_dtype(c, i, DType::f32, "operand");
  const Shape& x = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  const Shape& b = c.inputs[2]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  if (w[1] != x[1])
    fail(c, "conv2d", fmt::format("weight {} expects {} input channels, input {} has {}", w.str(), w[1], x.str(), x[1]));
  if (b[0] != w[0]) fail(c, "conv2d", fmt::format("bias {} must have {} elements (one per filter)", b.str(), w[0]));
  if (x[2] + 2 * p.pad_h < w[2] || x[3] + 2 * p.pad_w < w[3])
    fail(c, "conv2d", fmt::format("kernel {}x{} is larger than the padded input {}x{}", w[2], w[3],
                                  x[2] + 2 * p.pad_h, x[3] + 2 * p.pad_w));
  for (int i = 0; i < 4; ++i)
    if (x[i] <= 0 || w[i] <= 0) fail(c, "conv2d", fmt::format("empty input {} or weight {}", x.str(), w.str()));
  return {{Shape{x[0], w[0], conv2d_output_size(x[2], w[2], p.stride_h, p.pad_h), conv2d_output_size(x[3], w[3], p.stride_w, p.pad_w)},
           DType::f32}};
}

double flops_forward(const OpCall& c) {
  const Shape& x = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  double outputs = double(x[0]) * w[0] * conv2d_output_size(x[2], w[2], p.stride_h, p.pad_h) * conv2d_output_size(x[3], w[3], p.stride_w, p.pad_w);
  return outputs * (2.0 * w[1] * w[2] * w[3] + 1.0);
}

// dL/dx needs the input size: stride > 1 makes it ambiguous from dy alone, so it rides in params.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  std::vector<Value> grads(3);
  if (!dL_dy[0].valid()) return grads;
  Value x{node.inputs[0]}, w{node.inputs[1]};
  if (needed[0]) {
    parity_op_params p = node.params;
    p.conv2d.input_h = static_cast<int32_t>(b.value(x).shape[2]);
    p.conv2d.input_w = static_cast<int32_t>(b.value(x).shape[3]);
    grads[0] = b.node(PARITY_OP_CONV2D_BWD_DATA, p, {dL_dy[0], w}, node.name + ".bwd_data")[0];
  }
  if (needed[1] || needed[2]) {
    parity_op_params p = node.params;
    p.conv2d.kernel_h = static_cast<int32_t>(b.value(w).shape[2]);
    p.conv2d.kernel_w = static_cast<int32_t>(b.value(w).shape[3]);
    std::vector<Value> dwdb = b.node(PARITY_OP_CONV2D_BWD_WEIGHT, p, {x, dL_dy[0]}, node.name + ".bwd_weight");
    grads[1] = dwdb[0];
    grads[2] = dwdb[1];
  }
  return grads;
}

std::vector<OutputSpec> infer_bwd_data(const OpCall& c) {
  check_params(c, "conv2d_bwd_data");
  require_rank(c, 0, 4, "dy");
  require_rank(c, 1, 4, "weight");
  const Shape& dy = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  if (dy[1] != w[0]) fail(c, "conv2d_bwd_data", fmt::format("dy {} and weight {} disagree on filters", dy.str(), w.str()));
  if (p.input_h <= 0 || p.input_w <= 0) fail(c, "conv2d_bwd_data", "params.input_h/input_w must give the forward input size");
  if (conv2d_output_size(p.input_h, w[2], p.stride_h, p.pad_h) != dy[2] || conv2d_output_size(p.input_w, w[3], p.stride_w, p.pad_w) != dy[3])
    fail(c, "conv2d_bwd_data", fmt::format("input size {}x{} does not produce dy {}", p.input_h, p.input_w, dy.str()));
  return {{Shape{dy[0], w[1], p.input_h, p.input_w}, DType::f32}};
}

double flops_bwd_data(const OpCall& c) {
  const Shape& dy = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  return 2.0 * dy.numel() * w[1] * w[2] * w[3];
}

std::vector<OutputSpec> infer_bwd_weight(const OpCall& c) {
  check_params(c, "conv2d_bwd_weight");
  require_rank(c, 0, 4, "input");
  require_rank(c, 1, 4, "dy");
  const Shape& x = c.inputs[0]->shape;
  const Shape& dy = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  if (x[0] != dy[0]) fail(c, "conv2d_bwd_weight", fmt::format("batch of input {} and dy {} differ", x.str(), dy.str()));
  int64_t r = p.kernel_h, s = p.kernel_w;
  if (r <= 0 || s <= 0) fail(c, "conv2d_bwd_weight", "params.kernel_h/kernel_w must give the filter size");
  if (conv2d_output_size(x[2], r, p.stride_h, p.pad_h) != dy[2] || conv2d_output_size(x[3], s, p.stride_w, p.pad_w) != dy[3])
    fail(c, "conv2d_bwd_weight", fmt::format("kernel {}x{} does not map input {} to dy {}", r, s, x.str(), dy.str()));
  return {{Shape{dy[1], x[1], r, s}, DType::f32}, {Shape{dy[1]}, DType::f32}};
}

double flops_bwd_weight(const OpCall& c) {
  const Shape& x = c.inputs[0]->shape;
  const Shape& dy = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  return 2.0 * dy.numel() * x[1] * p.kernel_h * p.kernel_w + dy.numel();
}

parity_op_params conv_params(int64_t h, int64_t w, int64_t r, int64_t s, int stride, int pad) {
  parity_op_params p{};
  p.conv2d.stride_h = p.conv2d.stride_w = stride;
  p.conv2d.pad_h = p.conv2d.pad_w = pad;
  p.conv2d.input_h = static_cast<int32_t>(h);
  p.conv2d.input_w = static_cast<int32_t>(w);
  p.conv2d.kernel_h = static_cast<int32_t>(r);
  p.conv2d.kernel_w = static_cast<int32_t>(s);
  return p;
}

// conv2d forward and both backward ops on x [n,c,h,w], w [k,c,r,s].
void conv_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3], k = d[4], r = d[5], s = d[6];
  const int stride = d.size() > 7 ? static_cast<int>(d[7]) : 1, pad = d.size() > 8 ? static_cast<int>(d[8]) : 0;
  const parity_op_params p = conv_params(h, w, r, s, stride, pad);
  if (stride <= 0 || pad < 0 || h + 2 * pad < r || w + 2 * pad < s)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check ops: conv2d case x[{},{},{},{}] w[{},{},{},{}] stride {} pad {} has no output", n, c, h, w,
                            k, c, r, s, stride, pad));
  const int64_t P = conv2d_output_size(h, r, stride, pad), Q = conv2d_output_size(w, s, stride, pad);
  const std::string label = fmt::format("x[{},{},{},{}] w[{},{},{},{}] stride {} pad {}", n, c, h, w, k, c, r, s, stride, pad);
  Tensor x = draw.values(Shape{n, c, h, w}), wt = draw.values(Shape{k, c, r, s}), b = draw.values(Shape{k});
  Tensor dy = draw.values(Shape{n, k, P, Q});
  out.push_back({PARITY_OP_CONV2D, p, {{x}, {wt}, {b}}, label});
  out.push_back({PARITY_OP_CONV2D_BWD_DATA, p, {{dy}, {wt}}, label});
  out.push_back({PARITY_OP_CONV2D_BWD_WEIGHT, p, {{x}, {dy}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  // Batch 1, odd sizes, kernels larger than 3, non-square kernels, stride 2 and 3 with and
  // without padding, padding as large as the kernel allows, 1x1 kernels, the seed CNN's layers.
  const std::vector<std::vector<int64_t>> convs = {
      {1, 1, 5, 5, 1, 3, 3, 1, 0},   {2, 3, 7, 9, 4, 3, 3, 1, 1},  {1, 2, 8, 8, 3, 3, 3, 2, 1},
      {3, 4, 9, 7, 5, 5, 5, 1, 2},   {2, 3, 11, 6, 2, 3, 1, 2, 0}, {1, 16, 14, 14, 32, 3, 3, 1, 1},
      {2, 2, 10, 10, 3, 4, 2, 3, 1}, {4, 5, 3, 3, 6, 1, 1, 1, 0},  {1, 1, 4, 4, 2, 4, 4, 1, 2},
      {2, 1, 28, 28, 16, 3, 3, 1, 1},
      // The cpu backend's forward panels: several small images per GEMM with a shorter last group,
      // and a large image cut into row tiles with a shorter last tile (stride 1 and 2).
      {19, 3, 6, 6, 4, 3, 3, 1, 1}, {2, 2, 40, 37, 3, 3, 3, 1, 1}, {1, 2, 70, 65, 3, 3, 3, 2, 1},
      // The cpu backend's direct kernel (stride 1, output channels a multiple of 16; backward-data
      // too when the input channels are): rows longer than one vector with a partial last one, no
      // padding, non-square kernels with padding 2, and 16 input channels with 32 outputs.
      {2, 16, 9, 21, 16, 5, 3, 1, 2}, {3, 32, 7, 40, 16, 3, 3, 1, 0}, {2, 3, 20, 35, 32, 3, 3, 1, 1}};
  for (const auto& c : convs) conv_cases(out, draw, c);
}

const ConformanceFamily kCases{"conv2d*", "N,C,H,W,K,R,S[,stride[,pad]]", 7, 9, true, 0, builtin_cases, conv_cases};

}  // namespace

extern const OpRule conv2d_rule{"CONV2D", 3, 1, infer_forward, flops_forward, gradient, kDotProductTolerance, &kCases};
extern const OpRule conv2d_bwd_data_rule{"CONV2D_BWD_DATA", 2, 1, infer_bwd_data, flops_bwd_data, nullptr,
                                           kDotProductTolerance};
extern const OpRule conv2d_bwd_weight_rule{"CONV2D_BWD_WEIGHT", 2, 2, infer_bwd_weight, flops_bwd_weight,
                                             nullptr, kDotProductTolerance};

}  // namespace parity::ops
