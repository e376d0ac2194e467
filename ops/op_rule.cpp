// ops/op_rule.cpp — the op table, generated from PARITY_OP_LIST (a missing rule is a link
// error, a missing list entry a static_assert), and the shared validation and element-wise helpers.
#include "ops/op_rule.h"

#include <fmt/format.h>

#include "parity/error.h"

namespace parity::ops {

// In a training step every node's inputs differ from ref's by the float32 rounding of up to a
// dozen nodes before it, each adding NMSE ~1e-12..1e-11; 1e-8 keeps two orders of margin.
const Tolerance kDotProductTolerance{1e-9, 1e-8, "float32 dot products: sqrt(K) * 2^-24 relative error per element",
                                     true};
// Inside a step, the inputs of a copy/select op already differ from ref's (see above); a
// maxpool window whose top two values are within that error may pick another element, so
// index outputs may differ in a small fraction (1e-3) of elements.
const Tolerance kExactTolerance{0.0, 1e-8, "no arithmetic on values: bit equality with ref rounded to float32", true};

// Half outputs (bf16, f16) are compared with ref's float64 result rounded once to the dtype. A
// backend accumulating in f32 (relative error ~sqrt(K) 2^-24 on terms of size t, with results of
// size ~sqrt(K) t) lands on the other side of a half rounding boundary for a fraction
// ~2^-24 / ulp of its elements (ulp = 2^-8 relative for bf16, 2^-11 for f16), and each such
// element is one ulp (at most 2^-7 resp. 2^-10 relative) off: NMSE ~ 2^-24 * 2^-7 ~ 5e-10 for
// bf16, ~1e-11 for f16. Small tensors make one unlucky element weigh more: one flip among 25
// elements (conformance outputs hold as few as 9 to 50) is up to 2^-14 / 25 ~ 2.4e-6 (bf16) and
// 2^-20 / 25 ~ 3.8e-8 (f16; seen: 2.8e-8 on a 50-element avgpool2d_bwd). The bounds, 3e-6 and
// 5e-8, pass that while a truncating rounding (every element off by about half an ulp:
// (2^-7.5)^2 / 3 ~ 1e-5 for bf16, 1.6e-7 for f16) or one element in 100 wrong by 3% (9e-6) fails.
// Inside a step the inputs already carry the flips of the half nodes before (about one ulp on
// a small fraction of elements, spread by each node); 1e-5 and 2e-7 allow a dozen such nodes.
// Small-integer inputs keep every f32 sum exact, so both sides round the same integer once:
// bit equality in exact mode.
const HalfSupport kHalfRoundedSupport{
    {3e-6, 1e-5, "bf16 output of an f32 computation: ref rounded once to bf16, one ulp (2^-8) near a boundary", true},
    {5e-8, 2e-7, "f16 output of an f32 computation: ref rounded once to f16, one ulp (2^-11) near a boundary", true}};
// One f32 multiply or divide by a non-integer (leaky_relu's slope, dropout's scale, avgpool's
// divisor) is rounded to f32 and then to the half dtype: a double rounding that differs from ref's
// one rounding where the f32 result lands on a half tie (a fraction ~2^-16 of elements, one ulp
// each): the same bounds, but not exact on small integers.
const HalfSupport kHalfScaledSupport{
    {3e-6, 1e-5, "bf16 output of one f32 multiply or divide rounded again to bf16: one ulp on rare ties", false},
    {5e-8, 2e-7, "f16 output of one f32 multiply or divide rounded again to f16: one ulp on rare ties", false}};
// Selections and copies commute with rounding: widen (exact), select, round (exact) is ref's bits.
const HalfSupport kHalfExactSupport{
    {0.0, 1e-5, "no arithmetic on values: bit equality with ref rounded to bf16", true},
    {0.0, 2e-7, "no arithmetic on values: bit equality with ref rounded to f16", true}};

bool is_half(DType dtype) { return dtype == DType::bf16 || dtype == DType::f16; }

const Tolerance& tolerance_for(const OpRule& r, DType dtype) {
  if (!is_half(dtype) || !r.half) return r.tolerance;  // CAST: one tolerance (bit equality) for every dtype
  return dtype == DType::bf16 ? r.half->bf16 : r.half->f16;
}

// Each op's rule is `<name>_rule`, defined in its ops/<file>.cpp.
#define PARITY_DECLARE_RULE(id, name, inputs, outputs, builder) extern const OpRule name##_rule;
PARITY_OP_LIST(PARITY_DECLARE_RULE)
#undef PARITY_DECLARE_RULE

namespace {

#define PARITY_RULE_ENTRY(id, name, inputs, outputs, builder) &name##_rule,
const OpRule* const kRules[] = {PARITY_OP_LIST(PARITY_RULE_ENTRY)};
#undef PARITY_RULE_ENTRY
static_assert(sizeof(kRules) / sizeof(kRules[0]) == PARITY_OP_COUNT, "one rule per op of PARITY_OP_LIST");

#define PARITY_LOWER_NAME(id, name, inputs, outputs, builder) #name,
const char* const kLowerNames[] = {PARITY_OP_LIST(PARITY_LOWER_NAME)};
#undef PARITY_LOWER_NAME
static_assert(sizeof(kLowerNames) / sizeof(kLowerNames[0]) == PARITY_OP_COUNT, "one name per op of PARITY_OP_LIST");

// A node descriptor holds at most PARITY_MAX_NODE_INPUTS / _OUTPUTS values.
#define PARITY_CHECK_ARITY(id, name, inputs, outputs, builder)                                     \
  static_assert(inputs <= PARITY_MAX_NODE_INPUTS && outputs <= PARITY_MAX_NODE_OUTPUTS,            \
                #id " has more inputs or outputs than parity_node_desc holds");
PARITY_OP_LIST(PARITY_CHECK_ARITY)
#undef PARITY_CHECK_ARITY

bool known(parity_op op) { return op >= 0 && op < PARITY_OP_COUNT; }

}  // namespace

const OpRule& rule(parity_op op) {
  if (!known(op)) throw Error(ErrorKind::invalid_argument, fmt::format("unknown op {}", static_cast<int>(op)));
  return *kRules[op];
}

const char* lower_name(parity_op op) { return known(op) ? kLowerNames[op] : "unknown"; }

std::vector<OutputSpec> infer_elementwise_forward(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "input");
  return {{c.inputs[0]->shape, DType::f32}};
}

std::vector<OutputSpec> infer_elementwise_backward(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "y");
  require_dtype(c, 1, DType::f32, "dy");
  require_same_shape(c, 0, 1);
  return {{c.inputs[0]->shape, DType::f32}};
}

std::vector<Value> gradient_from_output(NodeEmitter& emit, const Node& node, const std::vector<Value>& dL_dy,
                                        const std::vector<bool>& needed, parity_op backward) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  return {emit.node(backward, node.params, {Value{node.outputs[0]}, dL_dy[0]}, node.name + ".bwd")[0]};
}

void fail(const OpCall& call, const char* op, const std::string& message) {
  throw Error(ErrorKind::shape, fmt::format("{} '{}': {}", op, call.node, message));
}

void require_rank(const OpCall& call, int input, int rank, const char* what) {
  const ValueInfo& v = *call.inputs[static_cast<size_t>(input)];
  if (v.shape.rank() != rank)
    fail(call, lower_name(call.op), fmt::format("{} '{}' must have rank {}, got shape {}", what, v.name, rank, v.shape.str()));
}

void require_dtype(const OpCall& call, int input, DType dtype, const char* what) {
  const ValueInfo& v = *call.inputs[static_cast<size_t>(input)];
  if (v.dtype != dtype)
    fail(call, lower_name(call.op),
         fmt::format("{} '{}' must be {}, got {}", what, v.name, to_string(dtype), to_string(v.dtype)));
}

void require_same_shape(const OpCall& call, int a, int b) {
  const ValueInfo& va = *call.inputs[static_cast<size_t>(a)];
  const ValueInfo& vb = *call.inputs[static_cast<size_t>(b)];
  if (va.shape != vb.shape)
    fail(call, lower_name(call.op), fmt::format("'{}' {} and '{}' {} must have the same shape", va.name,
                                                va.shape.str(), vb.name, vb.shape.str()));
}

DType require_float_operands(const OpCall& call, std::initializer_list<std::pair<int, const char*>> operands) {
  const auto first = *operands.begin();
  const ValueInfo& v0 = *call.inputs[static_cast<size_t>(first.first)];
  if (v0.dtype != DType::f32 && !is_half(v0.dtype))
    fail(call, lower_name(call.op),
         fmt::format("{} '{}' must be f32, bf16 or f16, got {}", first.second, v0.name, to_string(v0.dtype)));
  for (const auto& o : operands) {
    const ValueInfo& v = *call.inputs[static_cast<size_t>(o.first)];
    if (v.dtype != v0.dtype)
      fail(call, lower_name(call.op),
           fmt::format("{} '{}' is {} but {} '{}' is {}: the operands must share one dtype (cast one first)", o.second,
                       v.name, to_string(v.dtype), first.second, v0.name, to_string(v0.dtype)));
  }
  return v0.dtype;
}

}  // namespace parity::ops
