// ops/softmax.cpp — softmax and log_softmax over one dim (torch.softmax / torch.log_softmax,
// params.softmax: dim, negative from the end, 1 by default) and their backwards, which read the
// forward output: validation (the dim names one of x's dims), shapes, FLOPs, gradient, the
// argued tolerance and the conformance cases (large logits, -inf entries, lanes of one element,
// ties, batch 1, odd sizes, channels of NCHW and rows of [N,K]).
#include <cmath>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "ops/kernels/softmax.h"
#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

[[noreturn]] void refuse_param(const OpCall& c, const std::string& message) {
  throw Error(ErrorKind::invalid_argument, fmt::format("{} '{}': {}", lower_name(c.op), c.node, message));
}

// The dim of x's shape the node reduces over; refused naming the node and the param otherwise.
int checked_dim(const OpCall& c, const Shape& x) {
  const parity_softmax_params& p = c.params.softmax;
  if (x.rank() < 1) fail(c, lower_name(c.op), fmt::format("'{}' must have rank >= 1, got shape {}", c.inputs[0]->name, x.str()));
  const int dim = kernels::softmax_dim(p, x.rank());
  if (dim < 0)
    refuse_param(c, fmt::format("dim must be in [{}, {}) for '{}' {}, got {}{}", -x.rank(), x.rank(), c.inputs[0]->name,
                                x.str(), p.has_dim ? p.dim : 1, p.has_dim ? "" : " (the default)"));
  if (x.numel() == 0) fail(c, lower_name(c.op), fmt::format("'{}' {} must not be empty", c.inputs[0]->name, x.str()));
  return dim;
}

std::vector<OutputSpec> infer_forward(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "input");
  checked_dim(c, c.inputs[0]->shape);
  return {{c.inputs[0]->shape, DType::f32}};
}

std::vector<OutputSpec> infer_backward(const OpCall& c) {
  std::vector<OutputSpec> out = infer_elementwise_backward(c);  // y, dy f32 of one shape
  checked_dim(c, c.inputs[0]->shape);
  return out;
}

// max, subtract, exp, add; then the subtract and exp (softmax) or subtract (log_softmax).
double flops_forward(const OpCall& c) { return 6.0 * c.inputs[0]->shape.numel(); }
// The lane sum (a multiply-add or an add), then a subtract and a multiply (and log's exp).
double flops_backward(const OpCall& c) { return 5.0 * c.inputs[0]->shape.numel(); }

std::vector<Value> softmax_gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                                    const std::vector<bool>& needed) {
  return gradient_from_output(b, node, dL_dy, needed, PARITY_OP_SOFTMAX_BWD);
}
std::vector<Value> log_softmax_gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                                        const std::vector<bool>& needed) {
  return gradient_from_output(b, node, dL_dy, needed, PARITY_OP_LOG_SOFTMAX_BWD);
}

parity_op_params params_of(int dim) {
  parity_op_params p{};
  p.softmax.dim = dim;
  p.softmax.has_dim = 1;
  return p;
}

// softmax(x) or log_softmax(x) along `dim`, in double, rounded once: the backward cases' y.
Tensor forward_in_double(const Tensor& x, int dim, bool log) {
  const Shape& s = x.shape();
  std::vector<int64_t> dims(s.dims().begin(), s.dims().end());
  const int resolved = dim < 0 ? dim + s.rank() : dim;
  const kernels::SoftmaxLanes l = kernels::softmax_lanes(dims.data(), s.rank(), resolved);
  Tensor y(s, DType::f32);
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t j = 0; j < l.inner; ++j) {
      const float* in = x.f32() + o * l.k * l.inner + j;
      float* out = y.f32() + o * l.k * l.inner + j;
      double m = in[0];
      for (int64_t i = 1; i < l.k; ++i) m = std::max(m, double(in[i * l.inner]));
      double sum = 0;
      for (int64_t i = 0; i < l.k; ++i) sum += std::exp(double(in[i * l.inner]) - m);
      for (int64_t i = 0; i < l.k; ++i) {
        const double z = double(in[i * l.inner]) - m;
        out[i * l.inner] = static_cast<float>(log ? z - std::log(sum) : std::exp(z) / sum);
      }
    }
  return y;
}

// Both ops and both backwards on one x; the backwards read the forward output and a random dy.
void push_cases(std::vector<OpCase>& out, Draw& draw, const Tensor& x, int dim, const std::string& what) {
  const parity_op_params p = params_of(dim);
  const std::string label = fmt::format("{} dim {}{}", x.shape().str(), dim, what.empty() ? "" : " " + what);
  out.push_back({PARITY_OP_SOFTMAX, p, {{x}}, label});
  out.push_back({PARITY_OP_SOFTMAX_BWD, p, {{forward_in_double(x, dim, false)}, {draw.values(x.shape())}}, label});
  out.push_back({PARITY_OP_LOG_SOFTMAX, p, {{x}}, label});
  out.push_back({PARITY_OP_LOG_SOFTMAX_BWD, p, {{forward_in_double(x, dim, true)}, {draw.values(x.shape())}}, label});
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  // Rows of [N,K] (the classifier head): one class, batch 1, odd sizes, a long row.
  for (const Shape& s : {Shape{1, 1}, Shape{1, 10}, Shape{7, 3}, Shape{64, 10}, Shape{5, 1000}})
    push_cases(out, draw, draw.values(s, 5.0f), 1, "");
  // Channels of NCHW (lanes strided by H*W), one channel (every output 1, every gradient 0),
  // the last dim by a negative index, and the batch dim.
  push_cases(out, draw, draw.values(Shape{2, 3, 5, 7}, 5.0f), 1, "");
  push_cases(out, draw, draw.values(Shape{1, 1, 3, 3}, 5.0f), 1, "(lanes of one element)");
  push_cases(out, draw, draw.values(Shape{2, 16, 4, 4}, 5.0f), -1, "");
  push_cases(out, draw, draw.values(Shape{3, 5}, 5.0f), 0, "");
  // Logits of 1e4 scale: exp(x) overflows without the maximum subtracted.
  push_cases(out, draw, draw.values(Shape{4, 10}, 1e4f), 1, "scaled 1e4");
  // Ties: lanes whose elements are all equal, and a repeated maximum.
  Tensor ties = draw.values(Shape{3, 6}, 5.0f);
  for (int64_t i = 0; i < 6; ++i) ties.f32()[i] = 2.5f;
  ties.f32()[6] = ties.f32()[9] = 7.0f;
  push_cases(out, draw, ties, 1, "with ties");
  // -inf and very negative entries (softmax 0, log_softmax -inf or about -1e30); not in
  // gradient mode, where a finite difference of an infinite output means nothing.
  if (!draw.smooth()) {
    Tensor x = draw.values(Shape{3, 9}, 5.0f);
    const float neg_inf = -std::numeric_limits<float>::infinity();
    x.f32()[0] = x.f32()[4] = neg_inf;
    x.f32()[10] = -1e30f;
    for (int64_t i = 18; i < 27; ++i) x.f32()[i] = i == 22 ? 1.0f : neg_inf;  // one finite entry in its row
    push_cases(out, draw, x, 1, "with -inf and -1e30");
  }
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  push_cases(out, draw, draw.values(Shape(shape), 5.0f), shape.size() >= 2 ? 1 : 0, "");
}

const ConformanceFamily kCases{"softmax softmax_bwd log_softmax log_softmax_bwd", "the tensor's dims (dim 1)", 1, 6,
                               false, 17, builtin_cases, user_case};

// Forward: x - max is exact wherever an output is not negligible (Sterbenz: the two within a
// factor 2, or both small), expf and logf are within 2 ulp (glibc, CUDA, HIP, cuDNN), the lane
// sum of K positive terms has relative error <= K 2^-24 but enters softmax only through lse,
// whose absolute error (~log K * 2^-24 plus the sum's, ~2^-24 per term added in a tree or
// ~sqrt(K) 2^-24 in a row at random rounding) is a relative error of y of the same size: for K
// up to a few thousand, ~1e-6 at worst and ~1e-7 typically, so the NMSE is ~1e-13 and 1e-11
// keeps margin, while one output in a thousand off by 1e-3 (~1e-9) fails. log_softmax's output
// carries the same absolute error on values of size ~|x - max| + log K. Backward: the lane sum
// is a dot product (sqrt(K) 2^-24 relative), then a subtract and a multiply (and an expf for
// log_softmax): the dot product bound, 1e-10 with the cancellation of dy - sum absorbed by the
// whole tensor's norm. Not exact on small integers (exp of an integer is irrational).
const Tolerance kForwardTolerance{1e-11, 1e-8, "float32 expf/logf (2 ulp) and a lane sum: ~1e-7 relative per element",
                                  false};
const Tolerance kBackwardTolerance{1e-10, 1e-8, "a float32 lane sum (dot product) then dy - sum: sqrt(K) 2^-24", false};

}  // namespace

extern const OpRule softmax_rule{"SOFTMAX", 1, 1, infer_forward, flops_forward, softmax_gradient, kForwardTolerance,
                                 &kCases};
extern const OpRule softmax_bwd_rule{"SOFTMAX_BWD", 2, 1, infer_backward, flops_backward, nullptr, kBackwardTolerance};
extern const OpRule log_softmax_rule{"LOG_SOFTMAX", 1, 1, infer_forward, flops_forward, log_softmax_gradient,
                                     kForwardTolerance};
extern const OpRule log_softmax_bwd_rule{"LOG_SOFTMAX_BWD", 2, 1, infer_backward, flops_backward, nullptr,
                                         kBackwardTolerance};

}  // namespace parity::ops
