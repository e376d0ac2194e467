// ops/add.cpp — element-wise add and mul with broadcasting (residual connections, channel scales,
// and how the autodiff sums gradients), reduce_sum (the gradient of a broadcast operand), fill
// (the autodiff seed dL/dL = 1), with their conformance cases and reshape's.
#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

// a and b of one rank, each dim the output's or 1 (plugin.h's op_list.h: "Broadcasting").
std::vector<OutputSpec> infer_broadcast(const OpCall& c) {
  const DType dtype = require_float_operands(c, {{0, "a"}, {1, "b"}});
  const ValueInfo& a = *c.inputs[0];
  const ValueInfo& b = *c.inputs[1];
  if (a.shape == b.shape) return {{a.shape, dtype}};
  if (a.shape.rank() != b.shape.rank())
    fail(c, lower_name(c.op),
         fmt::format("'{}' {} and '{}' {} must have one rank to broadcast (reshape one first)", a.name, a.shape.str(),
                     b.name, b.shape.str()));
  Shape out = a.shape;
  for (int d = 0; d < a.shape.rank(); ++d) {
    if (a.shape[d] != b.shape[d] && a.shape[d] != 1 && b.shape[d] != 1)
      fail(c, lower_name(c.op),
           fmt::format("'{}' {} and '{}' {} do not broadcast: dim {} is {} and {}; each must be the other or 1",
                       a.name, a.shape.str(), b.name, b.shape.str(), d, a.shape[d], b.shape[d]));
    out[d] = a.shape[d] == 1 ? b.shape[d] : a.shape[d];
  }
  return {{out, dtype}};
}

double flops_broadcast(const OpCall& c) {
  const std::vector<OutputSpec> out = infer_broadcast(c);
  return double(out[0].shape.numel());
}

// dL/d operand: dL/dc summed over the dims where the operand is broadcast (size 1 in it, more in c).
Value sum_to_operand(NodeEmitter& emit, Value dL_dc, const Shape& operand, const std::string& name) {
  const Shape& c = emit.value(dL_dc).shape;
  uint32_t dims = 0;
  for (int d = 0; d < c.rank(); ++d)
    if (operand[d] == 1 && c[d] != 1) dims |= 1u << d;
  if (dims == 0) return dL_dc;
  parity_op_params p{};
  p.reduce_sum.dims = dims;
  return emit.node(PARITY_OP_REDUCE_SUM, p, {dL_dc}, name)[0];
}

std::vector<Value> gradient_add(NodeEmitter& emit, const Node& node, const std::vector<Value>& dL_dc,
                                const std::vector<bool>& needed) {
  std::vector<Value> out(2);
  for (int i = 0; i < 2; ++i)
    if (needed[static_cast<size_t>(i)])
      out[static_cast<size_t>(i)] = sum_to_operand(emit, dL_dc[0], emit.value(Value{node.inputs[i]}).shape,
                                                   fmt::format("{}.bwd{}", node.name, i));
  return out;
}

// d(a*b)/da = b, d(a*b)/db = a, each summed back to its operand's shape.
std::vector<Value> gradient_mul(NodeEmitter& emit, const Node& node, const std::vector<Value>& dL_dc,
                                const std::vector<bool>& needed) {
  std::vector<Value> out(2);
  for (int i = 0; i < 2; ++i) {
    if (!needed[static_cast<size_t>(i)]) continue;
    const Value other{node.inputs[1 - i]};
    const Value product = emit.node(PARITY_OP_MUL, {}, {dL_dc[0], other}, fmt::format("{}.bwd{}", node.name, i))[0];
    out[static_cast<size_t>(i)] = sum_to_operand(emit, product, emit.value(Value{node.inputs[i]}).shape,
                                                 fmt::format("{}.bwd{}.sum", node.name, i));
  }
  return out;
}

std::vector<OutputSpec> infer_reduce_sum(const OpCall& c) {
  const DType dtype = require_float_operands(c, {{0, "x"}});
  const Shape& x = c.inputs[0]->shape;
  const uint32_t dims = c.params.reduce_sum.dims;
  if (dims == 0 || (x.rank() < 32 && (dims >> x.rank()) != 0))
    fail(c, "reduce_sum",
         fmt::format("dims mask {:#x} must name at least one dim, and only dims of '{}' {} (bits below {})", dims,
                     c.inputs[0]->name, x.str(), x.rank()));
  Shape y = x;
  for (int d = 0; d < x.rank(); ++d)
    if ((dims >> d) & 1u) y[d] = 1;
  return {{y, dtype}};
}

double flops_reduce_sum(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

std::vector<OutputSpec> infer_fill(const OpCall&) { return {{Shape{1}, DType::f32}}; }

double flops_fill(const OpCall&) { return 0.0; }

void elementwise_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& dims) {
  const Shape shape(dims);
  Tensor a = draw.values(shape), b = draw.values(shape);
  out.push_back({PARITY_OP_ADD, {}, {{a}, {b}}, shape.str()});
  out.push_back({PARITY_OP_RESHAPE, {}, {{a}}, shape.str()});
}

void builtin_elementwise(std::vector<OpCase>& out, Draw& draw) { elementwise_cases(out, draw, {3, 4, 5}); }

// Broadcast pairs: a channel scale [N,C,1,1] (squeeze-excitation), a per-sample map [1,C,H,W], a
// bias-like [1,C,1,1], both sides broadcasting at once, and equal shapes (the plain case).
void push_broadcast(std::vector<OpCase>& out, Draw& draw, const Shape& a, const Shape& b) {
  const std::string label = a.str() + " " + b.str();
  Tensor ta = draw.values(a), tb = draw.values(b);
  out.push_back({PARITY_OP_MUL, {}, {{ta}, {tb}}, label});
  out.push_back({PARITY_OP_ADD, {}, {{ta}, {tb}}, label});
}

void push_reduce_sum(std::vector<OpCase>& out, Draw& draw, const Shape& x, uint32_t dims) {
  parity_op_params p{};
  p.reduce_sum.dims = dims;
  out.push_back({PARITY_OP_REDUCE_SUM, p, {{draw.values(x)}}, fmt::format("{} dims {:#x}", x.str(), dims)});
}

void builtin_broadcast(std::vector<OpCase>& out, Draw& draw) {
  push_broadcast(out, draw, Shape{2, 3, 5, 7}, Shape{2, 3, 1, 1});
  push_broadcast(out, draw, Shape{1, 4, 3, 3}, Shape{3, 4, 3, 3});
  push_broadcast(out, draw, Shape{2, 5, 4, 4}, Shape{1, 5, 1, 1});
  push_broadcast(out, draw, Shape{3, 2, 1, 6}, Shape{1, 2, 5, 1});
  push_broadcast(out, draw, Shape{1}, Shape{9});
  push_broadcast(out, draw, Shape{4, 6}, Shape{4, 6});
  push_broadcast(out, draw, Shape{1, 1, 1, 1}, Shape{2, 3, 4, 5});  // a scalar times every element
  push_reduce_sum(out, draw, Shape{2, 3, 5, 7}, 0xdu);               // to [1,3,1,1]: a bias gradient
  push_reduce_sum(out, draw, Shape{2, 3, 5, 7}, 0xcu);               // to [2,3,1,1]: a channel scale's
  push_reduce_sum(out, draw, Shape{3, 4, 3, 3}, 0x1u);               // to [1,4,3,3]
  push_reduce_sum(out, draw, Shape{2, 3, 4, 5}, 0xfu);               // to [1,1,1,1]
  push_reduce_sum(out, draw, Shape{1, 7}, 0x1u);                     // a size-1 dim summed
  push_reduce_sum(out, draw, Shape{64, 8, 14, 14}, 0xdu);            // 12544 terms per output
}

// `--op mul --shape a0,a1,..,b0,b1,..`: the first half is a's dims, the second b's.
void user_broadcast(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& dims) {
  if (dims.size() % 2 != 0)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("--shape for mul lists a's dims then b's (an even count), got {} numbers", dims.size()));
  const size_t half = dims.size() / 2;
  const Shape a(std::vector<int64_t>(dims.begin(), dims.begin() + static_cast<std::ptrdiff_t>(half)));
  const Shape b(std::vector<int64_t>(dims.begin() + static_cast<std::ptrdiff_t>(half), dims.end()));
  for (size_t d = 0; d < half; ++d)
    if (a[static_cast<int>(d)] != b[static_cast<int>(d)] && a[static_cast<int>(d)] != 1 && b[static_cast<int>(d)] != 1)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("--shape for mul: {} and {} do not broadcast (dim {})", a.str(), b.str(), d));
  push_broadcast(out, draw, a, b);
  uint32_t summed = 0;
  for (size_t d = 0; d < half; ++d)
    if (a[static_cast<int>(d)] == 1 && b[static_cast<int>(d)] != 1) summed |= 1u << d;
  if (summed != 0) push_reduce_sum(out, draw, b, summed);
}

void builtin_fill(std::vector<OpCase>& out, Draw&) {
  parity_op_params fill{};
  fill.fill.value = 1.0f;
  out.push_back({PARITY_OP_FILL, fill, {}, "[1]"});
}

const ConformanceFamily kElementwiseCases{"add reshape", "the tensor's dims", 1, 6, false, 5, builtin_elementwise,
                                          elementwise_cases};
const ConformanceFamily kFillCases{"", "", 0, 0, false, 6, builtin_fill, nullptr};
const ConformanceFamily kBroadcastCases{"mul reduce_sum", "a's dims then b's (one rank)", 2, 12, false, 19,
                                        builtin_broadcast, user_broadcast};

// A float32 sum of K terms in any fixed order: relative error ~ sqrt(K) * 2^-24 per element for
// random signs (K = 12544 above: ~7e-6, NMSE ~5e-11 at the worst cancellation seen; typical far
// less); 1e-9 leaves margin, while one wrong term of 12544 shifts its sum by ~1/sqrt(K) ~ 1%
// and fails. Small integers sum exactly.
const Tolerance kReduceTolerance{1e-9, 1e-8, "float32 sum of the reduced terms in a backend's fixed order", true};

// Half a and b (bf16 or f16): their f32 sum or product is exact, or (a sum of values more than
// 2^15 apart) off by less than the smaller term, far below half a half ulp of the larger and never
// onto a tie: rounded once to the half dtype it is ref's bits. REDUCE_SUM on a half gradient (the
// gradient of a broadcast half operand) sums in f32 and rounds once: kHalfRoundedSupport.

}  // namespace

extern const OpRule add_rule{"ADD", 2, 1, infer_broadcast, flops_broadcast, gradient_add,
                             // a + b rounds once to float32 however precisely it is computed
                             kExactTolerance, &kElementwiseCases, 0, &kHalfExactSupport};
extern const OpRule mul_rule{"MUL", 2, 1, infer_broadcast, flops_broadcast, gradient_mul,
                             // a * b rounds once to float32: ref's product rounded is the answer
                             kExactTolerance, &kBroadcastCases, 0, &kHalfExactSupport};
extern const OpRule reduce_sum_rule{"REDUCE_SUM", 1, 1, infer_reduce_sum, flops_reduce_sum, nullptr,
                                    kReduceTolerance, nullptr, 0, &kHalfRoundedSupport};
extern const OpRule fill_rule{"FILL", 0, 1, infer_fill, flops_fill, nullptr, kExactTolerance, &kFillCases};

}  // namespace parity::ops
