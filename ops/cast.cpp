// ops/cast.cpp — cast (ABI 9): a value converted between f32, bf16 and f16 (the dtype in
// params.cast), its gradient (the incoming gradient cast back to the input's dtype) and its
// conformance cases, special values included (NaN payloads, infinities, subnormals, ties).
#include <cstring>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

bool castable(DType d) { return d == DType::f32 || d == DType::bf16 || d == DType::f16; }

std::vector<OutputSpec> infer(const OpCall& c) {
  const ValueInfo& x = *c.inputs[0];
  if (!castable(x.dtype))
    fail(c, "cast", fmt::format("x '{}' must be f32, bf16 or f16, got {}", x.name, to_string(x.dtype)));
  const int32_t to = c.params.cast.dtype;
  if (to != PARITY_F32 && to != PARITY_BF16 && to != PARITY_F16)
    fail(c, "cast", fmt::format("the target dtype (params.cast.dtype) must be f32 ({}), bf16 ({}) or f16 ({}), got {}",
                                static_cast<int>(PARITY_F32), static_cast<int>(PARITY_BF16),
                                static_cast<int>(PARITY_F16), to));
  return {{x.shape, static_cast<DType>(to)}};
}

double flops(const OpCall&) { return 0.0; }  // a conversion, no arithmetic

// The gradient of a cast is PyTorch's (`x.to(dtype)` under autograd): dL/dx = dL/dy cast to x's
// dtype. A rounding has derivative 0 almost everywhere; the straight-through rule is what mixed
// precision wants: an f32 master weight receives its half copy's gradient, widened exactly.
std::vector<Value> gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                            const std::vector<bool>& needed) {
  if (!dL_dy[0].valid() || !needed[0]) return {Value{}};
  parity_op_params back{};
  back.cast.dtype = static_cast<int32_t>(b.value(Value{node.inputs[0]}).dtype);
  return {b.node(PARITY_OP_CAST, back, {dL_dy[0]}, node.name + ".bwd")[0]};
}

parity_op_params to(DType dtype) {
  parity_op_params p{};
  p.cast.dtype = static_cast<int32_t>(dtype);
  return p;
}

// Float32 bit patterns where conversions disagree or round: the cases of tests/test_half.cpp
// (NaNs with payloads and signs, infinities, f32 subnormals, ties to even in both formats, f16's
// overflow and underflow boundaries) and a few ordinary values.
constexpr uint32_t kSpecialBits[] = {
    0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u, 0x7FA00000u, 0x7FFFFFFFu,
    0xFFE01234u, 0x00000001u, 0x80000001u, 0x00008000u, 0x00008001u, 0x00018000u, 0x007FFFFFu, 0x7F7FFFFFu,
    0x7F7F7FFFu, 0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0xC77FF000u, 0x38800000u, 0x387FE000u, 0x387FC000u,
    0x33800000u, 0x33000000u, 0x33000001u, 0xB3000001u, 0x33C00000u, 0x32FFFFFFu, 0x3F800000u, 0x3F808000u,
    0x3F818000u, 0x3F801000u, 0x3F803000u, 0xBF818000u, 0x40490FDBu, 0xC2F6E979u};

Tensor special_values() {
  constexpr int64_t n = sizeof kSpecialBits / sizeof kSpecialBits[0];
  Tensor t(Shape{n}, DType::f32);
  std::memcpy(t.data(), kSpecialBits, sizeof kSpecialBits);
  return t;
}

// Every direction between f32, bf16 and f16 over `x` (f32); the half inputs are x rounded.
void push_all_directions(std::vector<OpCase>& out, const Tensor& x, const std::string& label) {
  for (DType half : {DType::bf16, DType::f16}) {
    out.push_back({PARITY_OP_CAST, to(half), {{x}}, fmt::format("{} f32->{}", label, to_string(half))});
    const Tensor h = cast_tensor(x, half);
    out.push_back({PARITY_OP_CAST, to(DType::f32), {{h}}, fmt::format("{} {}->f32", label, to_string(half))});
    const DType other = half == DType::bf16 ? DType::f16 : DType::bf16;
    out.push_back({PARITY_OP_CAST, to(other), {{h}}, fmt::format("{} {}->{}", label, to_string(half), to_string(other))});
  }
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  // Values in [-1, 1) (small integers in exact mode) plus a wide range: scale 1e5 passes f16's
  // 65504 and rounds to infinity there.
  push_all_directions(out, draw.values(Shape{2, 3, 5, 7}), "[2,3,5,7]");
  push_all_directions(out, draw.values(Shape{1000}, 1e5f), "[1000] x1e5");
  out.push_back({PARITY_OP_CAST, to(DType::f32), {{draw.values(Shape{3, 4})}}, "[3,4] f32->f32"});
  // The special values are the same in every mode (no draw), and are not differentiable.
  if (!draw.smooth()) push_all_directions(out, special_values(), "special values");
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& dims) {
  push_all_directions(out, draw.values(Shape(dims)), Shape(dims).str());
}

const ConformanceFamily kCases{"cast", "the tensor's dims", 1, 6, false, 21, builtin_cases, user_case};

// A conversion is exact by definition: every backend must produce ref's bits, NaN payloads
// included (threshold 0 compares bytes). Inside a training step x already differs from ref's by
// float32 rounding (relative ~1e-7 after a dozen nodes); an element within that distance of a
// rounding boundary (a fraction ~1e-7 / 2^-8 ~ 3e-5 of bf16 values) may round to the neighbour,
// one bf16 ulp (2^-8 relative, squared 1.5e-5) away: NMSE ~ 3e-5 * 1.5e-5 ~ 5e-10 (f16: ulp 2^-11,
// fraction 2e-4, NMSE ~ 5e-11). 1e-8 keeps an order of margin; a wrong rounding mode (one ulp on
// half the elements) gives ~1e-5 and fails.
const Tolerance kCastTolerance{0.0, 1e-8, "a conversion: bit equality with ref, NaN payloads included", true};

}  // namespace

extern const OpRule cast_rule{"CAST", 1, 1, infer, flops, gradient, kCastTolerance, &kCases};

}  // namespace parity::ops
