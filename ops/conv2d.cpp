// ops/conv2d.cpp — conv2d (NCHW, cross-correlation, zero padding, optional bias; groups,
// dilation, separate and asymmetric padding as PyTorch 1.13's F.conv2d after F.pad):
// validation, shapes, FLOPs, gradient and conformance cases, with its two backward ops beside it.
#include <fmt/format.h>

#include "ops/kernels/conv_geometry.h"
#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

using kernels::Conv2dWindow;
using kernels::conv2d_kernel_span;
using kernels::conv2d_output_h;
using kernels::conv2d_output_w;
using kernels::conv2d_window;

// The params alone: stride > 0, padding >= 0, and the ABI 5 fields, whose 0 reads as 1.
Conv2dWindow check_params(const OpCall& c, const char* op) {
  const parity_conv2d_params& p = c.params.conv2d;
  if (p.stride_h <= 0 || p.stride_w <= 0)
    fail(c, op, fmt::format("stride must be > 0, got {}x{}", p.stride_h, p.stride_w));
  if (p.pad_h < 0 || p.pad_w < 0) fail(c, op, fmt::format("padding must be >= 0, got {}x{}", p.pad_h, p.pad_w));
  if (p.pad_end_given && (p.pad_bottom < 0 || p.pad_right < 0))
    fail(c, op, fmt::format("end padding (bottom x right) must be >= 0, got {}x{}", p.pad_bottom, p.pad_right));
  if (p.dilation_h < 0 || p.dilation_w < 0)
    fail(c, op, fmt::format("dilation must be >= 1 (0 reads as 1), got {}x{}", p.dilation_h, p.dilation_w));
  if (p.groups < 0) fail(c, op, fmt::format("groups must be >= 1 (0 reads as 1), got {}", p.groups));
  return conv2d_window(p);
}

// groups must divide both channel counts; `what` names the second ("output channels" or "filters").
void check_groups(const OpCall& c, const char* op, const Conv2dWindow& cw, int64_t in_channels, int64_t out_channels) {
  if (in_channels % cw.groups != 0)
    fail(c, op, fmt::format("groups {} must divide the input channels {}", cw.groups, in_channels));
  if (out_channels % cw.groups != 0)
    fail(c, op, fmt::format("groups {} must divide the output channels {}", cw.groups, out_channels));
}

// The dilated kernel must fit in the padded input along both axes.
void check_fits(const OpCall& c, const char* op, const Conv2dWindow& cw, int64_t H, int64_t W, int64_t R, int64_t S) {
  const int64_t padded_h = H + cw.pad_top + cw.pad_bottom, padded_w = W + cw.pad_left + cw.pad_right;
  const int64_t span_h = conv2d_kernel_span(R, cw.dilation_h), span_w = conv2d_kernel_span(S, cw.dilation_w);
  if (padded_h < span_h || padded_w < span_w)
    fail(c, op, fmt::format("kernel {}x{} (dilation {}x{}: spans {}x{}) is larger than the padded input {}x{}", R, S,
                            cw.dilation_h, cw.dilation_w, span_h, span_w, padded_h, padded_w));
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  const Conv2dWindow cw = check_params(c, "conv2d");
  const bool has_bias = c.inputs.size() == 3;
  require_rank(c, 0, 4, "input");
  require_rank(c, 1, 4, "weight");
  if (has_bias) require_rank(c, 2, 1, "bias");
  const DType dtype = require_float_operands(c, {{0, "input"}, {1, "weight"}});
  if (has_bias) require_dtype(c, 2, DType::f32, "bias (added in f32 before the one rounding)");
  const Shape& x = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  for (int i = 0; i < 4; ++i)
    if (x[i] <= 0 || w[i] <= 0) fail(c, "conv2d", fmt::format("empty input {} or weight {}", x.str(), w.str()));
  check_groups(c, "conv2d", cw, x[1], w[0]);
  if (w[1] != x[1] / cw.groups)
    fail(c, "conv2d", fmt::format("weight {} expects {} input channels per group, input {} with groups {} has {}",
                                  w.str(), w[1], x.str(), cw.groups, x[1] / cw.groups));
  if (has_bias && c.inputs[2]->shape[0] != w[0])
    fail(c, "conv2d", fmt::format("bias {} must have {} elements (one per filter)", c.inputs[2]->shape.str(), w[0]));
  check_fits(c, "conv2d", cw, x[2], x[3], w[2], w[3]);
  return {{Shape{x[0], w[0], conv2d_output_h(cw, x[2], w[2]), conv2d_output_w(cw, x[3], w[3])}, dtype}};
}

double flops_forward(const OpCall& c) {
  const Shape& x = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  const Conv2dWindow cw = conv2d_window(c.params.conv2d);
  double outputs = double(x[0]) * w[0] * conv2d_output_h(cw, x[2], w[2]) * conv2d_output_w(cw, x[3], w[3]);
  return outputs * (2.0 * w[1] * w[2] * w[3] + (c.inputs.size() == 3 ? 1.0 : 0.0));
}

// dL/dx needs the input size: stride > 1 makes it ambiguous from dy alone, so it rides in params;
// dL/dw the kernel size, and whether there is a bias to give db for.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  std::vector<Value> grads(node.inputs.size());
  if (!dL_dy[0].valid()) return grads;
  const bool has_bias = node.inputs.size() == 3;
  Value x{node.inputs[0]}, w{node.inputs[1]};
  if (needed[0]) {
    parity_op_params p = node.params;
    p.conv2d.input_h = static_cast<int32_t>(b.value(x).shape[2]);
    p.conv2d.input_w = static_cast<int32_t>(b.value(x).shape[3]);
    grads[0] = b.node(PARITY_OP_CONV2D_BWD_DATA, p, {dL_dy[0], w}, node.name + ".bwd_data")[0];
  }
  if (needed[1] || (has_bias && needed[2])) {
    parity_op_params p = node.params;
    p.conv2d.kernel_h = static_cast<int32_t>(b.value(w).shape[2]);
    p.conv2d.kernel_w = static_cast<int32_t>(b.value(w).shape[3]);
    p.conv2d.without_bias = has_bias ? 0 : 1;
    std::vector<Value> dwdb = b.node(PARITY_OP_CONV2D_BWD_WEIGHT, p, {x, dL_dy[0]}, node.name + ".bwd_weight");
    grads[1] = dwdb[0];
    if (has_bias) grads[2] = dwdb[1];
  }
  return grads;
}

std::vector<OutputSpec> infer_bwd_data(const OpCall& c) {
  const Conv2dWindow cw = check_params(c, "conv2d_bwd_data");
  require_rank(c, 0, 4, "dy");
  require_rank(c, 1, 4, "weight");
  const DType dtype = require_float_operands(c, {{0, "dy"}, {1, "weight"}});
  const Shape& dy = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  if (dy[1] != w[0]) fail(c, "conv2d_bwd_data", fmt::format("dy {} and weight {} disagree on filters", dy.str(), w.str()));
  check_groups(c, "conv2d_bwd_data", cw, w[1] * cw.groups, w[0]);
  if (p.input_h <= 0 || p.input_w <= 0) fail(c, "conv2d_bwd_data", "params.input_h/input_w must give the forward input size");
  check_fits(c, "conv2d_bwd_data", cw, p.input_h, p.input_w, w[2], w[3]);
  if (conv2d_output_h(cw, p.input_h, w[2]) != dy[2] || conv2d_output_w(cw, p.input_w, w[3]) != dy[3])
    fail(c, "conv2d_bwd_data", fmt::format("input size {}x{} does not produce dy {}", p.input_h, p.input_w, dy.str()));
  return {{Shape{dy[0], w[1] * cw.groups, p.input_h, p.input_w}, dtype}};
}

double flops_bwd_data(const OpCall& c) {
  const Shape& dy = c.inputs[0]->shape;
  const Shape& w = c.inputs[1]->shape;
  return 2.0 * dy.numel() * w[1] * w[2] * w[3];
}

std::vector<OutputSpec> infer_bwd_weight(const OpCall& c) {
  const Conv2dWindow cw = check_params(c, "conv2d_bwd_weight");
  require_rank(c, 0, 4, "input");
  require_rank(c, 1, 4, "dy");
  const DType dtype = require_float_operands(c, {{0, "input"}, {1, "dy"}});
  const Shape& x = c.inputs[0]->shape;
  const Shape& dy = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  if (x[0] != dy[0]) fail(c, "conv2d_bwd_weight", fmt::format("batch of input {} and dy {} differ", x.str(), dy.str()));
  check_groups(c, "conv2d_bwd_weight", cw, x[1], dy[1]);
  int64_t r = p.kernel_h, s = p.kernel_w;
  if (r <= 0 || s <= 0) fail(c, "conv2d_bwd_weight", "params.kernel_h/kernel_w must give the filter size");
  check_fits(c, "conv2d_bwd_weight", cw, x[2], x[3], r, s);
  if (conv2d_output_h(cw, x[2], r) != dy[2] || conv2d_output_w(cw, x[3], s) != dy[3])
    fail(c, "conv2d_bwd_weight", fmt::format("kernel {}x{} does not map input {} to dy {}", r, s, x.str(), dy.str()));
  // dw in the operands' dtype, db (summed in f32) stays f32 as the bias it belongs to.
  std::vector<OutputSpec> out{{Shape{dy[1], x[1] / cw.groups, r, s}, dtype}};
  if (!p.without_bias) out.push_back({Shape{dy[1]}, DType::f32});
  return out;
}

double flops_bwd_weight(const OpCall& c) {
  const Shape& x = c.inputs[0]->shape;
  const Shape& dy = c.inputs[1]->shape;
  const parity_conv2d_params& p = c.params.conv2d;
  return 2.0 * dy.numel() * (x[1] / parity_conv2d_groups(&p)) * p.kernel_h * p.kernel_w +
         (p.without_bias ? 0.0 : double(dy.numel()));
}

// One conformance case: x [n,c,h,w], w [k,c/groups,r,s], its window and whether it has a bias.
struct ConvCase {
  int64_t n, c, h, w, k, r, s;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int dilation_h = 1, dilation_w = 1, groups = 1;
  bool bias = true;
};

parity_op_params conv_params(const ConvCase& cc) {
  parity_op_params p{};
  parity_conv2d_params& cp = p.conv2d;
  cp.stride_h = cc.stride_h, cp.stride_w = cc.stride_w;
  cp.pad_h = cc.pad_top, cp.pad_w = cc.pad_left;
  if (cc.pad_bottom != cc.pad_top || cc.pad_right != cc.pad_left) {
    cp.pad_end_given = 1;
    cp.pad_bottom = cc.pad_bottom, cp.pad_right = cc.pad_right;
  }
  cp.dilation_h = cc.dilation_h, cp.dilation_w = cc.dilation_w;
  cp.groups = cc.groups;
  cp.input_h = static_cast<int32_t>(cc.h), cp.input_w = static_cast<int32_t>(cc.w);
  cp.kernel_h = static_cast<int32_t>(cc.r), cp.kernel_w = static_cast<int32_t>(cc.s);
  cp.without_bias = cc.bias ? 0 : 1;
  return p;
}

// conv2d forward and both backward ops of one case (the draws in the first release's order:
// x, w, b, dy).
void add_conv_cases(std::vector<OpCase>& out, Draw& draw, const ConvCase& cc) {
  const parity_op_params p = conv_params(cc);
  const Conv2dWindow cw = conv2d_window(p.conv2d);
  const int64_t cg = cc.groups > 0 ? cc.c / cc.groups : 0;
  std::string label = fmt::format("x[{},{},{},{}] w[{},{},{},{}] stride {}", cc.n, cc.c, cc.h, cc.w, cc.k, cg, cc.r,
                                  cc.s, cc.stride_h);
  if (cc.stride_w != cc.stride_h) label += fmt::format("x{}", cc.stride_w);
  label += p.conv2d.pad_end_given
               ? fmt::format(" pad {},{},{},{} (top,left,bottom,right)", cc.pad_top, cc.pad_left, cc.pad_bottom, cc.pad_right)
               : cc.pad_left == cc.pad_top ? fmt::format(" pad {}", cc.pad_top)
                                           : fmt::format(" pad {}x{}", cc.pad_top, cc.pad_left);
  if (cc.dilation_h != 1 || cc.dilation_w != 1) label += fmt::format(" dilation {}x{}", cc.dilation_h, cc.dilation_w);
  if (cc.groups != 1) label += fmt::format(" groups {}", cc.groups);
  if (!cc.bias) label += " no bias";
  const bool valid = cc.stride_h > 0 && cc.stride_w > 0 && cc.pad_top >= 0 && cc.pad_left >= 0 && cc.pad_bottom >= 0 &&
                     cc.pad_right >= 0 && cc.dilation_h > 0 && cc.dilation_w > 0 && cc.groups > 0 &&
                     cc.c % cc.groups == 0 && cc.k % cc.groups == 0 &&
                     cc.h + cc.pad_top + cc.pad_bottom >= kernels::conv2d_kernel_span(cc.r, cc.dilation_h) &&
                     cc.w + cc.pad_left + cc.pad_right >= kernels::conv2d_kernel_span(cc.s, cc.dilation_w);
  if (!valid)
    throw Error(ErrorKind::invalid_argument, fmt::format("check ops: conv2d case {} has no output (stride and dilation "
                                                         "must be > 0, padding >= 0, groups dividing C and K)",
                                                         label));
  const int64_t P = conv2d_output_h(cw, cc.h, cc.r), Q = conv2d_output_w(cw, cc.w, cc.s);
  Tensor x = draw.values(Shape{cc.n, cc.c, cc.h, cc.w}), wt = draw.values(Shape{cc.k, cg, cc.r, cc.s});
  std::vector<Operand> forward{{x}, {wt}};
  if (cc.bias) forward.push_back({draw.values(Shape{cc.k})});
  Tensor dy = draw.values(Shape{cc.n, cc.k, P, Q});
  out.push_back({PARITY_OP_CONV2D, p, forward, label});
  out.push_back({PARITY_OP_CONV2D_BWD_DATA, p, {{dy}, {wt}}, label});
  out.push_back({PARITY_OP_CONV2D_BWD_WEIGHT, p, {{x}, {dy}}, label});
}

// --shape N,C,H,W,K,R,S[,stride[,pad[,dilation[,groups]]]]: square stride, padding and dilation.
void conv_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  ConvCase cc{d[0], d[1], d[2], d[3], d[4], d[5], d[6]};
  auto at = [&](size_t i, int fallback) { return d.size() > i ? static_cast<int>(d[i]) : fallback; };
  cc.stride_h = cc.stride_w = at(7, 1);
  cc.pad_top = cc.pad_left = cc.pad_bottom = cc.pad_right = at(8, 0);
  cc.dilation_h = cc.dilation_w = at(9, 1);
  cc.groups = at(10, 1);
  add_conv_cases(out, draw, cc);
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

  // The general form (ABI 5), drawn from a fork of its own so that the cases above and the
  // families after this one keep their values: groups (depthwise, channel multiplier 2, 4 -> 6
  // in 2 groups), dilation, separate axes, asymmetric padding (stride 2, as ONNX's SAME_UPPER
  // and SAME_LOWER), padding beyond half the kernel, no bias; batch 1 and odd sizes throughout.
  Draw general = draw.fork(0x636f6e76);  // "conv"
  auto with = [](ConvCase c, auto&& edit) {
    edit(c);
    return c;
  };
  const std::vector<ConvCase> cases = {
      with(ConvCase{1, 8, 9, 7, 8, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.groups = 8; }),
      with(ConvCase{2, 4, 6, 7, 8, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.groups = 4; }),
      with(ConvCase{2, 6, 11, 10, 6, 3, 3}, [](ConvCase& c) { c.stride_h = c.stride_w = 2, c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.groups = 6; }),
      with(ConvCase{1, 3, 12, 13, 3, 5, 5}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 4, c.dilation_h = c.dilation_w = 2, c.groups = 3; }),
      with(ConvCase{2, 16, 9, 21, 16, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.groups = 16, c.bias = false; }),
      with(ConvCase{2, 4, 7, 9, 6, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.groups = 2; }),
      with(ConvCase{1, 4, 5, 5, 6, 1, 1}, [](ConvCase& c) { c.groups = 2, c.bias = false; }),
      with(ConvCase{2, 3, 10, 9, 4, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 2, c.dilation_h = c.dilation_w = 2; }),
      with(ConvCase{1, 2, 13, 11, 3, 3, 2}, [](ConvCase& c) { c.stride_h = 2, c.stride_w = 1, c.pad_top = c.pad_bottom = 1, c.dilation_h = 2, c.dilation_w = 3; }),
      with(ConvCase{2, 3, 8, 9, 4, 3, 3}, [](ConvCase& c) { c.stride_h = c.stride_w = 2, c.pad_top = c.pad_left = 0, c.pad_bottom = c.pad_right = 1; }),
      with(ConvCase{1, 3, 8, 9, 4, 3, 3}, [](ConvCase& c) { c.stride_h = c.stride_w = 2, c.pad_top = c.pad_left = 1, c.pad_bottom = c.pad_right = 0; }),
      with(ConvCase{2, 2, 5, 6, 3, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 2; }),
      with(ConvCase{1, 2, 4, 5, 2, 3, 2}, [](ConvCase& c) { c.pad_top = 3, c.pad_left = 0, c.pad_bottom = 1, c.pad_right = 2, c.bias = false; }),
      with(ConvCase{2, 3, 7, 7, 4, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.bias = false; }),
      with(ConvCase{2, 16, 9, 12, 16, 3, 3}, [](ConvCase& c) { c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1, c.bias = false; }),
  };
  for (const ConvCase& c : cases) add_conv_cases(out, general, c);
}

const ConformanceFamily kCases{"conv2d*", "N,C,H,W,K,R,S[,stride[,pad[,dilation[,groups]]]]", 7, 11, true, 0,
                               builtin_cases, conv_cases};

// Half x, w (and dy): exact products summed in f32, rounded once (kHalfRoundedSupport's argument);
// the bias stays f32.
const HalfSupport kForwardHalf{kHalfRoundedSupport.bf16, kHalfRoundedSupport.f16, 1u << 2};

}  // namespace

extern const OpRule conv2d_rule{"CONV2D", 3, 1, infer_forward, flops_forward, gradient, kDotProductTolerance, &kCases,
                                0, &kForwardHalf};
extern const OpRule conv2d_bwd_data_rule{"CONV2D_BWD_DATA", 2, 1, infer_bwd_data, flops_bwd_data, nullptr,
                                           kDotProductTolerance, nullptr, 0, &kHalfRoundedSupport};
extern const OpRule conv2d_bwd_weight_rule{"CONV2D_BWD_WEIGHT", 2, 2, infer_bwd_weight, flops_bwd_weight,
                                             nullptr, kDotProductTolerance, nullptr, 0, &kHalfRoundedSupport};

}  // namespace parity::ops
