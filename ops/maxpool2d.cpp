// ops/maxpool2d.cpp — 2-D max pooling with argmax indices (PyTorch's max_pool2d: padding,
// dilation, ceil_mode; padding beyond half the kernel accepted as ONNX does: a window holding no
// input element gives 0 and index -1), and its backward that routes each gradient to the first
// maximum of its window (nowhere for index -1).
#include <limits>

#include <fmt/format.h>

#include "ops/pool_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

kernels::PoolWindow window_of(const OpCall& c, const char* op) {
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  return checked_pool_window(c, op, kernels::pool_window(p), p.dilation_h, p.dilation_w);
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  const kernels::PoolWindow win = window_of(c, "maxpool2d");
  require_rank(c, 0, 4, "input");
  const DType dtype = require_float_operands(c, {{0, "input"}});
  const Shape& x = c.inputs[0]->shape;
  const Shape y = pooled_shape(c, "maxpool2d", x[0], x[1], x[2], x[3], win);
  return {{y, dtype}, {y, DType::i32}};
}

// One comparison per window tap (padding taps included: a bound, as for a dense scan).
double flops_forward(const OpCall& c) {
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  const Shape& x = c.inputs[0]->shape;
  const kernels::PoolWindow win = kernels::pool_window(p);
  return double(x[0]) * x[1] * kernels::pool_output_size(x[2], win.h) * kernels::pool_output_size(x[3], win.w) *
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
  const kernels::PoolWindow win = window_of(c, "maxpool2d_bwd");
  require_rank(c, 0, 4, "dy");
  const DType dtype = require_float_operands(c, {{0, "dy"}});
  require_dtype(c, 1, DType::i32, "indices");
  require_same_shape(c, 0, 1);
  const Shape& dy = c.inputs[0]->shape;
  const parity_maxpool2d_params& p = c.params.maxpool2d;
  if (p.input_h <= 0 || p.input_w <= 0)
    fail(c, "maxpool2d_bwd", fmt::format("input size must be > 0, got {}x{}", p.input_h, p.input_w));
  const Shape pooled = pooled_shape(c, "maxpool2d_bwd", dy[0], dy[1], p.input_h, p.input_w, win);
  if (pooled != dy)
    fail(c, "maxpool2d_bwd", fmt::format("input size {}x{} pools to {}, not dy {}", p.input_h, p.input_w, pooled.str(), dy.str()));
  return {{Shape{dy[0], dy[1], p.input_h, p.input_w}, dtype}};
}

double flops_backward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

// maxpool's backward takes indices; they are drawn among each window's taps inside the input
// (-1 for a window with none), so that ties and overlapping windows (stride < kernel) route
// several gradients to one element.
void push_cases(std::vector<OpCase>& out, Draw& draw, int64_t n, int64_t c, int64_t h, int64_t w,
                const parity_maxpool2d_params& mp, const std::string& geometry) {
  parity_op_params p{};
  p.maxpool2d = mp;
  p.maxpool2d.input_h = static_cast<int32_t>(h);
  p.maxpool2d.input_w = static_cast<int32_t>(w);
  const kernels::PoolWindow win = kernels::pool_window(p.maxpool2d);
  const std::string label = fmt::format("x[{},{},{},{}] {} {}", n, c, h, w, geometry,
                                        draw.smooth() ? "distinct values" : "with ties");
  Tensor x = draw.values(Shape{n, c, h, w});
  draw.add_kinks(x);
  out.push_back({PARITY_OP_MAXPOOL2D, p, {{x}}, label});
  const int64_t P = kernels::pool_output_size(h, win.h), Q = kernels::pool_output_size(w, win.w);
  Tensor idx(Shape{n, c, P, Q}, DType::i32);
  std::mt19937 rng(static_cast<uint32_t>(n * 131 + h));
  for (int64_t plane = 0; plane < n * c; ++plane)
    for (int64_t i = 0; i < P; ++i)
      for (int64_t j = 0; j < Q; ++j) {
        int64_t rb, re, sb, se;
        kernels::pool_taps_inside(h, i, win.h, &rb, &re);
        kernels::pool_taps_inside(w, j, win.w, &sb, &se);
        int32_t& at = idx.i32()[(plane * P + i) * Q + j];
        if (rb == re || sb == se) {
          at = -1;
          continue;
        }
        const int64_t r = std::uniform_int_distribution<int64_t>(rb, re - 1)(rng);
        const int64_t s = std::uniform_int_distribution<int64_t>(sb, se - 1)(rng);
        at = static_cast<int32_t>((i * win.h.stride - win.h.pad + r * win.h.dilation) * w + j * win.w.stride -
                                  win.w.pad + s * win.w.dilation);
      }
  out.push_back({PARITY_OP_MAXPOOL2D_BWD, p, {{draw.values(Shape{n, c, P, Q})}, {idx}}, label});
}

std::string geometry_label(const parity_maxpool2d_params& p) {
  std::string s = p.kernel_h == p.kernel_w ? fmt::format("kernel {}", p.kernel_h) : fmt::format("kernel {}x{}", p.kernel_h, p.kernel_w);
  s += p.stride_h == p.stride_w ? fmt::format(" stride {}", p.stride_h) : fmt::format(" stride {}x{}", p.stride_h, p.stride_w);
  if (p.pad_h || p.pad_w) s += p.pad_h == p.pad_w ? fmt::format(" pad {}", p.pad_h) : fmt::format(" pad {}x{}", p.pad_h, p.pad_w);
  if (p.dilation_h > 1 || p.dilation_w > 1) s += fmt::format(" dilation {}x{}", p.dilation_h, p.dilation_w);
  if (p.ceil_mode) s += " ceil_mode";
  return s;
}

// --shape N,C,H,W,KERNEL,STRIDE[,PAD[,DILATION[,CEIL]]]: square windows.
void maxpool_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
  parity_maxpool2d_params p{};
  p.kernel_h = p.kernel_w = static_cast<int32_t>(d[4]);
  p.stride_h = p.stride_w = static_cast<int32_t>(d[5]);
  p.pad_h = p.pad_w = d.size() > 6 ? static_cast<int32_t>(d[6]) : 0;
  p.dilation_h = p.dilation_w = d.size() > 7 ? static_cast<int32_t>(d[7]) : 1;
  p.ceil_mode = d.size() > 8 ? static_cast<int32_t>(d[8] != 0) : 0;
  const kernels::PoolWindow win = kernels::pool_window(p);
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || p.kernel_h <= 0 || p.stride_h <= 0 || p.dilation_h <= 0 ||
      kernels::pool_span(win.h) > h + 2 * p.pad_h || kernels::pool_span(win.w) > w + 2 * p.pad_w)
    throw Error(ErrorKind::invalid_argument, fmt::format("check ops: maxpool2d case [{},{},{},{}] {} has no output", n,
                                                         c, h, w, geometry_label(p)));
  push_cases(out, draw, n, c, h, w, p, geometry_label(p));
}

parity_maxpool2d_params window(int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw, int32_t dh,
                               int32_t dw, bool ceil_mode) {
  parity_maxpool2d_params p{};
  p.kernel_h = kh, p.kernel_w = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.dilation_h = dh, p.dilation_w = dw, p.ceil_mode = ceil_mode;
  return p;
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
  // The general form (ABI 5), from a draw of its own so the cases above keep their values.
  Draw general = draw.fork(1);
  struct Case {
    int64_t n, c, h, w;
    parity_maxpool2d_params p;
    const char* why;
  };
  for (const Case& k : std::vector<Case>{
           {1, 1, 5, 5, window(3, 3, 2, 2, 1, 1, 1, 1, true), "padding, ceil_mode"},
           {1, 3, 7, 7, window(2, 2, 2, 2, 0, 0, 1, 1, true), "ceil_mode windows hanging over the edge"},
           {2, 2, 4, 5, window(2, 2, 1, 1, 2, 2, 1, 1, false), "padding above the kernel: windows entirely in padding"},
           {1, 1, 3, 3, window(1, 1, 2, 2, 2, 2, 1, 1, true), "kernel 1, padding 2, ceil_mode: empty windows"},
           {1, 1, 6, 7, window(3, 3, 1, 1, 1, 1, 1, 1, false), "stride 1, overlapping windows"},
           {2, 3, 9, 8, window(3, 3, 2, 2, 1, 1, 2, 2, true), "dilation 2, padding, ceil_mode"},
           {1, 2, 2, 9, window(2, 3, 1, 2, 1, 0, 3, 2, false), "dilated taps that skip the input"},
           {2, 1, 5, 8, window(2, 3, 1, 2, 0, 1, 2, 1, true), "rectangular window"},
           {1, 2, 8, 40, window(2, 2, 2, 2, 1, 1, 1, 1, false), "2x2 stride 2 with padding"}})
    push_cases(out, general, k.n, k.c, k.h, k.w, k.p, geometry_label(k.p) + " (" + k.why + ")");
}

const ConformanceFamily kCases{"maxpool2d*", "N,C,H,W,KERNEL,STRIDE[,PAD[,DILATION[,CEIL]]]", 6, 9, true, 3,
                               builtin_cases, maxpool_cases};

}  // namespace

extern const OpRule maxpool2d_rule{"MAXPOOL2D", 1, 2, infer_forward, flops_forward, gradient, kExactTolerance, &kCases,
                                   0, &kHalfExactSupport};
extern const OpRule maxpool2d_bwd_rule{"MAXPOOL2D_BWD", 2, 1, infer_backward, flops_backward, nullptr,
                                         // each input element receives at most one window's gradient in a 2x2/2 pool; with
                                         // overlapping windows the sum of a few terms may round differently
                                         Tolerance{1e-12, 1e-8, "a sum of at most kernel^2 gradient terms", true},
                                         nullptr, 0, &kHalfRoundedSupport};

}  // namespace parity::ops
