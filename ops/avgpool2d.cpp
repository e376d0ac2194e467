// ops/avgpool2d.cpp — average pooling with PyTorch's semantics: avgpool2d (avg_pool2d: padding,
// ceil_mode, count_include_pad both ways; padding beyond half the kernel accepted as ONNX does: a
// window holding no input element gives 0) and global_avgpool (adaptive_avg_pool2d to 1x1), each
// with its backward that spreads dy / divisor over the window.
#include <fmt/format.h>

#include "ops/pool_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

static_assert(sizeof(parity_op_params) == 64, "the params union is part of the ABI: 64 bytes");
static_assert(sizeof(parity_avgpool2d_params) <= 64 && sizeof(parity_maxpool2d_params) <= 64, "params fit the union");

namespace avgpool {

kernels::PoolWindow window_of(const OpCall& c, const char* op) {
  return checked_pool_window(c, op, kernels::pool_window(c.params.avgpool2d), 1, 1);
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  const kernels::PoolWindow win = window_of(c, "avgpool2d");
  require_rank(c, 0, 4, "input");
  const DType dtype = require_float_operands(c, {{0, "input"}});
  const Shape& x = c.inputs[0]->shape;
  return {{pooled_shape(c, "avgpool2d", x[0], x[1], x[2], x[3], win), dtype}};
}

// One add per window tap and a division per output (padding taps counted: a bound).
double flops_forward(const OpCall& c) {
  const parity_avgpool2d_params& p = c.params.avgpool2d;
  const Shape& x = c.inputs[0]->shape;
  const kernels::PoolWindow win = kernels::pool_window(p);
  return double(x[0]) * x[1] * kernels::pool_output_size(x[2], win.h) * kernels::pool_output_size(x[3], win.w) *
         (double(p.kernel_h) * p.kernel_w + 1);
}

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  parity_op_params p = node.params;
  const Shape& x = b.value(Value{node.inputs[0]}).shape;
  p.avgpool2d.input_h = static_cast<int32_t>(x[2]);
  p.avgpool2d.input_w = static_cast<int32_t>(x[3]);
  return {b.node(PARITY_OP_AVGPOOL2D_BWD, p, {dL_dy[0]}, node.name + ".bwd")[0]};
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  const kernels::PoolWindow win = window_of(c, "avgpool2d_bwd");
  require_rank(c, 0, 4, "dy");
  const DType dtype = require_float_operands(c, {{0, "dy"}});
  const Shape& dy = c.inputs[0]->shape;
  const parity_avgpool2d_params& p = c.params.avgpool2d;
  if (p.input_h <= 0 || p.input_w <= 0)
    fail(c, "avgpool2d_bwd", fmt::format("input size must be > 0, got {}x{}", p.input_h, p.input_w));
  const Shape pooled = pooled_shape(c, "avgpool2d_bwd", dy[0], dy[1], p.input_h, p.input_w, win);
  if (pooled != dy)
    fail(c, "avgpool2d_bwd", fmt::format("input size {}x{} pools to {}, not dy {}", p.input_h, p.input_w, pooled.str(), dy.str()));
  return {{Shape{dy[0], dy[1], p.input_h, p.input_w}, dtype}};
}

// A division and an add per window tap.
double flops_backward(const OpCall& c) {
  const parity_avgpool2d_params& p = c.params.avgpool2d;
  return 2.0 * double(c.inputs[0]->shape.numel()) * p.kernel_h * p.kernel_w;
}

std::string geometry_label(const parity_avgpool2d_params& p) {
  std::string s = p.kernel_h == p.kernel_w ? fmt::format("kernel {}", p.kernel_h) : fmt::format("kernel {}x{}", p.kernel_h, p.kernel_w);
  s += p.stride_h == p.stride_w ? fmt::format(" stride {}", p.stride_h) : fmt::format(" stride {}x{}", p.stride_h, p.stride_w);
  if (p.pad_h || p.pad_w) s += p.pad_h == p.pad_w ? fmt::format(" pad {}", p.pad_h) : fmt::format(" pad {}x{}", p.pad_h, p.pad_w);
  if (p.ceil_mode) s += " ceil_mode";
  s += p.count_include_pad ? " count_include_pad" : " excluding padding";
  return s;
}

void push_cases(std::vector<OpCase>& out, Draw& draw, int64_t n, int64_t c, int64_t h, int64_t w,
                const parity_avgpool2d_params& ap, const std::string& why) {
  parity_op_params p{};
  p.avgpool2d = ap;
  p.avgpool2d.input_h = static_cast<int32_t>(h);
  p.avgpool2d.input_w = static_cast<int32_t>(w);
  const kernels::PoolWindow win = kernels::pool_window(ap);
  const std::string label = fmt::format("x[{},{},{},{}] {}{}", n, c, h, w, geometry_label(ap), why);
  out.push_back({PARITY_OP_AVGPOOL2D, p, {{draw.values(Shape{n, c, h, w})}}, label});
  const Shape dy{n, c, kernels::pool_output_size(h, win.h), kernels::pool_output_size(w, win.w)};
  out.push_back({PARITY_OP_AVGPOOL2D_BWD, p, {{draw.values(dy)}}, label});
}

parity_avgpool2d_params window(int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw, bool ceil_mode,
                               bool count_include_pad) {
  parity_avgpool2d_params p{};
  p.kernel_h = kh, p.kernel_w = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.ceil_mode = ceil_mode, p.count_include_pad = count_include_pad;
  return p;
}

// --shape N,C,H,W,KERNEL,STRIDE[,PAD[,CEIL[,COUNT_INCLUDE_PAD]]]: square windows; torch's
// default count_include_pad (1).
void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) {
  const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
  const int32_t k = static_cast<int32_t>(d[4]), s = static_cast<int32_t>(d[5]);
  const int32_t pad = d.size() > 6 ? static_cast<int32_t>(d[6]) : 0;
  const parity_avgpool2d_params p = window(k, k, s, s, pad, pad, d.size() > 7 && d[7] != 0, d.size() <= 8 || d[8] != 0);
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || k <= 0 || s <= 0 || k > h + 2 * pad || k > w + 2 * pad)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check ops: avgpool2d case [{},{},{},{}] {} has no output", n, c, h, w, geometry_label(p)));
  push_cases(out, draw, n, c, h, w, p, "");
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  struct Case {
    int64_t n, c, h, w;
    int32_t kh, kw, sh, sw, ph, pw;
    bool ceil_mode;
    const char* why;
  };
  for (const Case& k : std::vector<Case>{
           {1, 1, 2, 2, 2, 2, 2, 2, 0, 0, false, " (batch 1, one window)"},
           {2, 3, 7, 9, 2, 2, 2, 2, 0, 0, false, " (odd sizes)"},
           {1, 2, 5, 5, 3, 3, 2, 2, 1, 1, true, " (ceil_mode window over the padded edge)"},
           {2, 1, 4, 4, 3, 3, 2, 2, 1, 1, true, " (ceil_mode overhang past the padding)"},
           {1, 3, 7, 7, 2, 2, 2, 2, 0, 0, true, " (ceil_mode, no padding: overhang past the input)"},
           {2, 2, 4, 5, 2, 2, 1, 1, 2, 2, false, " (padding above the kernel: windows entirely in padding)"},
           {1, 1, 3, 3, 1, 1, 2, 2, 2, 2, true, " (kernel 1, padding 2, ceil_mode: empty windows)"},
           {1, 2, 6, 7, 3, 3, 1, 1, 1, 1, false, " (stride 1, overlapping windows)"},
           {2, 1, 5, 8, 2, 3, 1, 2, 0, 1, true, " (rectangular window)"},
           {2, 4, 16, 16, 4, 4, 4, 4, 0, 0, false, " (16 terms per window)"}})
    for (bool include : {true, false})
      push_cases(out, draw, k.n, k.c, k.h, k.w, window(k.kh, k.kw, k.sh, k.sw, k.ph, k.pw, k.ceil_mode, include), k.why);
}

const ConformanceFamily kCases{"avgpool2d*", "N,C,H,W,KERNEL,STRIDE[,PAD[,CEIL[,COUNT_INCLUDE_PAD]]]", 6, 9, true, 13,
                               builtin_cases, user_case};

// A float32 sum of K terms of either sign has an error of about sqrt(K) * 2^-24 times the
// typical partial sum, sqrt(K) terms' size, so NMSE ~ K * 2^-48 = K * 3.6e-15 against a signal of
// the same size; the one division adds 2^-48 relative. For windows up to 100 taps (and each dx
// element summing at most that many dy / divisor terms) that is 3.6e-13: 1e-11 leaves a 28x
// margin, while one element in a thousand off by 1% gives ~1e-7 and fails. With small integers
// the forward's sum is exact and its one division correctly rounded (double then float rounds
// the same: 53 >= 2 * 24 + 2), so it is bit-exact; the backward sums rounded quotients: not.
const Tolerance kForwardTolerance{1e-11, 1e-8, "float32 sum of at most ~100 window taps and one division", true};
const Tolerance kBackwardTolerance{1e-11, 1e-8, "float32 sum of dy / divisor over the windows holding an element", false};

}  // namespace avgpool

namespace global {

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  require_rank(c, 0, 4, "input");
  require_dtype(c, 0, DType::f32, "input");
  const Shape& x = c.inputs[0]->shape;
  return {{Shape{x[0], x[1], 1, 1}, DType::f32}};
}

double flops_forward(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  parity_op_params p{};
  const Shape& x = b.value(Value{node.inputs[0]}).shape;
  p.avgpool2d.input_h = static_cast<int32_t>(x[2]);
  p.avgpool2d.input_w = static_cast<int32_t>(x[3]);
  return {b.node(PARITY_OP_GLOBAL_AVGPOOL_BWD, p, {dL_dy[0]}, node.name + ".bwd")[0]};
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  require_rank(c, 0, 4, "dy");
  require_dtype(c, 0, DType::f32, "dy");
  const Shape& dy = c.inputs[0]->shape;
  const parity_avgpool2d_params& p = c.params.avgpool2d;
  if (dy[2] != 1 || dy[3] != 1)
    fail(c, "global_avgpool_bwd", fmt::format("dy must be [N,C,1,1], got {}", dy.str()));
  if (p.input_h <= 0 || p.input_w <= 0)
    fail(c, "global_avgpool_bwd", fmt::format("input size must be > 0, got {}x{}", p.input_h, p.input_w));
  return {{Shape{dy[0], dy[1], p.input_h, p.input_w}, DType::f32}};
}

double flops_backward(const OpCall& c) {
  return double(c.inputs[0]->shape.numel()) * c.params.avgpool2d.input_h * c.params.avgpool2d.input_w;
}

void push_cases(std::vector<OpCase>& out, Draw& draw, const Shape& x) {
  parity_op_params p{};
  p.avgpool2d.input_h = static_cast<int32_t>(x[2]);
  p.avgpool2d.input_w = static_cast<int32_t>(x[3]);
  out.push_back({PARITY_OP_GLOBAL_AVGPOOL, p, {{draw.values(x)}}, x.str()});
  out.push_back({PARITY_OP_GLOBAL_AVGPOOL_BWD, p, {{draw.values(Shape{x[0], x[1], 1, 1})}}, x.str()});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  for (const Shape& x : {Shape{1, 1, 1, 1}, Shape{1, 3, 5, 7}, Shape{2, 4, 7, 7}, Shape{3, 2, 1, 9}, Shape{2, 8, 32, 32}})
    push_cases(out, draw, x);
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& d) { push_cases(out, draw, Shape(d)); }

const ConformanceFamily kCases{"global_avgpool*", "N,C,H,W", 4, 4, false, 14, builtin_cases, user_case};

// The forward sums H*W terms: NMSE ~ H*W * 3.6e-15 (as avgpool's), 3.7e-12 for the 32x32
// plane above: 1e-10 allows planes up to ~28000 elements. Bit-exact on small integers (an exact
// sum, one correctly rounded division). The backward is one division per element: within half
// an ulp, NMSE <= 2^-48; exact on integers.
const Tolerance kForwardTolerance{1e-10, 1e-8, "float32 sum of the H*W plane and one division", true};
const Tolerance kBackwardTolerance{1e-12, 1e-8, "one correctly rounded division per element", true};

}  // namespace global
}  // namespace

extern const OpRule avgpool2d_rule{"AVGPOOL2D", 1, 1, avgpool::infer_forward, avgpool::flops_forward,
                                   avgpool::gradient, avgpool::kForwardTolerance, &avgpool::kCases, 0, &kHalfScaledSupport};
extern const OpRule avgpool2d_bwd_rule{"AVGPOOL2D_BWD", 1, 1, avgpool::infer_backward, avgpool::flops_backward, nullptr,
                                       avgpool::kBackwardTolerance, nullptr, 0, &kHalfScaledSupport};
extern const OpRule global_avgpool_rule{"GLOBAL_AVGPOOL", 1, 1, global::infer_forward, global::flops_forward,
                                        global::gradient, global::kForwardTolerance, &global::kCases};
extern const OpRule global_avgpool_bwd_rule{"GLOBAL_AVGPOOL_BWD", 1, 1, global::infer_backward, global::flops_backward,
                                            nullptr, global::kBackwardTolerance};

}  // namespace parity::ops
