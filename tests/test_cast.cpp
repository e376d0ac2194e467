// tests/test_cast.cpp — the CAST op and the half dtypes (ABI 9): the cpu conversions on both
// routes against ops/kernels/half.h on every half bit pattern and the special f32 values; ref
// and cpu bit for bit through a compiled plan; the gradient rule (dL/dx = dL/dy cast back);
// cast_tensor; GraphBuilder::cast's refusals; backends running half dtypes or refusing them by
// name; simt's CAST against ref.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cast.h"
#include "graph/autodiff.h"
#include "graph/compiled_step.h"
#include "ops/kernels/half.h"
#include "ops/op_rule.h"
#include "parity/check.h"
#include "parity/parity.h"

namespace parity {
namespace {

using kernels::bf16_bits_to_f32_bits;
using kernels::f16_bits_to_f32_bits;
using kernels::f32_bits_to_bf16_bits;
using kernels::f32_bits_to_f16_bits;

// f32 bit patterns where conversions round or disagree (tests/test_half.cpp's table): zeros,
// infinities, NaNs with signs and payloads (signalling ones too), f32 subnormals, ties to even
// in both formats, f16's overflow and underflow boundaries.
const std::vector<uint32_t> kSpecialF32 = {
    0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FA00000u,
    0x7FFFFFFFu, 0xFFE01234u, 0xFF800001u, 0x00000001u, 0x80000001u, 0x00008000u, 0x00008001u, 0x00018000u,
    0x007FFFFFu, 0x7F7FFFFFu, 0x7F7F7FFFu, 0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0xC77FF000u, 0x38800000u,
    0x387FE000u, 0x387FC000u, 0x33800000u, 0x33000000u, 0x33000001u, 0xB3000001u, 0x33C00000u, 0x32FFFFFFu,
    0x3F800000u, 0x3F808000u, 0x3F818000u, 0x3F801000u, 0x3F803000u, 0xBF818000u};

// The specials, then `random` random bit patterns (every exponent, so NaNs and subnormals too).
std::vector<uint32_t> f32_inputs(size_t random) {
  std::vector<uint32_t> v = kSpecialF32;
  std::mt19937 rng(14);
  for (size_t i = 0; i < random; ++i) v.push_back(static_cast<uint32_t>(rng()));
  return v;
}

std::vector<uint16_t> every_half_pattern() {
  std::vector<uint16_t> v(65536);
  for (uint32_t h = 0; h < 65536; ++h) v[h] = static_cast<uint16_t>(h);
  return v;
}

bool is_signalling_bf16(uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x007F) && !(h & 0x0040); }

std::vector<cpu::CastRoute> routes() {
  std::vector<cpu::CastRoute> r = {cpu::CastRoute::scalar};
  if (cpu::cast_route() == cpu::CastRoute::f16c_avx512) r.push_back(cpu::CastRoute::f16c_avx512);
  return r;
}

const char* route_name(cpu::CastRoute r) { return r == cpu::CastRoute::scalar ? "scalar" : "f16c_avx512"; }

// ---- the cpu conversions themselves, on each route, against half.h

TEST(CastCpu, F32ToHalfGivesHalfHBitsOnEveryRoute) {
  const std::vector<uint32_t> x = f32_inputs(100000);
  const auto n = static_cast<int64_t>(x.size());
  for (cpu::CastRoute route : routes()) {
    std::vector<uint16_t> bf(x.size()), h(x.size());
    cpu::cast_elements(x.data(), PARITY_F32, bf.data(), PARITY_BF16, n, route);
    cpu::cast_elements(x.data(), PARITY_F32, h.data(), PARITY_F16, n, route);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(bf[i], f32_bits_to_bf16_bits(x[i])) << route_name(route) << std::hex << " f32 0x" << x[i];
      ASSERT_EQ(h[i], f32_bits_to_f16_bits(x[i])) << route_name(route) << std::hex << " f32 0x" << x[i];
    }
  }
}

TEST(CastCpu, EveryHalfPatternWidensAsHalfHOnEveryRoute) {
  const std::vector<uint16_t> h = every_half_pattern();
  for (cpu::CastRoute route : routes()) {
    std::vector<uint32_t> from_bf(h.size()), from_f16(h.size());
    cpu::cast_elements(h.data(), PARITY_BF16, from_bf.data(), PARITY_F32, 65536, route);
    cpu::cast_elements(h.data(), PARITY_F16, from_f16.data(), PARITY_F32, 65536, route);
    for (uint32_t i = 0; i < 65536; ++i) {
      ASSERT_EQ(from_bf[i], bf16_bits_to_f32_bits(h[i])) << route_name(route) << std::hex << " bf16 0x" << i;
      ASSERT_EQ(from_f16[i], f16_bits_to_f32_bits(h[i])) << route_name(route) << std::hex << " f16 0x" << i;
    }
    // Between the half dtypes: exact widening, then one rounding.
    std::vector<uint16_t> bf_to_f16(h.size()), f16_to_bf(h.size());
    cpu::cast_elements(h.data(), PARITY_BF16, bf_to_f16.data(), PARITY_F16, 65536, route);
    cpu::cast_elements(h.data(), PARITY_F16, f16_to_bf.data(), PARITY_BF16, 65536, route);
    for (uint32_t i = 0; i < 65536; ++i) {
      ASSERT_EQ(bf_to_f16[i], f32_bits_to_f16_bits(bf16_bits_to_f32_bits(h[i]))) << std::hex << i;
      ASSERT_EQ(f16_to_bf[i], f32_bits_to_bf16_bits(f16_bits_to_f32_bits(h[i]))) << std::hex << i;
    }
  }
}

// Lengths that are not a multiple of the 16 lanes: the masked tail writes its elements and
// nothing past them.
TEST(CastCpu, TailsWriteTheirElementsOnly) {
  for (cpu::CastRoute route : routes()) {
    for (int64_t n : {1, 5, 15, 16, 17, 31, 33}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = 0.5f + static_cast<float>(i);
      std::vector<uint16_t> y(static_cast<size_t>(n) + 8, 0xABCD);
      cpu::cast_elements(x.data(), PARITY_F32, y.data(), PARITY_F16, n, route);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(y[static_cast<size_t>(i)], kernels::float_to_f16_bits(x[static_cast<size_t>(i)])) << n << " " << i;
      for (size_t i = static_cast<size_t>(n); i < y.size(); ++i) ASSERT_EQ(y[i], 0xABCD) << route_name(route) << " n " << n;
      std::vector<float> back(static_cast<size_t>(n) + 8, -7.0f);
      cpu::cast_elements(y.data(), PARITY_F16, back.data(), PARITY_F32, n, route);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[static_cast<size_t>(i)], x[static_cast<size_t>(i)]);
      for (size_t i = static_cast<size_t>(n); i < back.size(); ++i) ASSERT_EQ(back[i], -7.0f);
    }
  }
}

// ---- through a compiled plan: ref and cpu give the same bits

// Runs y = cast(x, to) on `backend` and returns y.
Tensor run_cast(const std::string& backend_name, const Tensor& x, DType to) {
  GraphBuilder b;
  const Value in = b.input("x", x.shape(), x.dtype());
  const Value y = b.cast(in, to, "y");
  const Graph g = b.take();
  const std::string y_name = g.value(y).name;
  auto backend = create_backend(backend_name);
  CompiledStepOptions poisoned;
  poisoned.poison_outputs = true;
  CompiledStep step(*backend, g, {y_name}, poisoned);
  step.write("x", x);
  step.execute();
  return step.read(y_name);
}

Tensor f32_tensor(const std::vector<uint32_t>& bits) {
  Tensor t(Shape{static_cast<int64_t>(bits.size())}, DType::f32);
  std::memcpy(t.data(), bits.data(), t.nbytes());
  return t;
}

Tensor half_tensor(const std::vector<uint16_t>& bits, DType dtype) {
  Tensor t(Shape{static_cast<int64_t>(bits.size())}, dtype);
  std::memcpy(t.data(), bits.data(), t.nbytes());
  return t;
}

std::vector<uint16_t> half_bits(const Tensor& t) {
  const auto* p = static_cast<const uint16_t*>(t.data());
  return std::vector<uint16_t>(p, p + t.numel());
}

std::vector<uint32_t> f32_bits_of(const Tensor& t) {
  std::vector<uint32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.f32(), t.nbytes());
  return v;
}

TEST(CastPlan, F32ToHalfIsBitExactOnRefAndCpu) {
  const Tensor x = f32_tensor(f32_inputs(20000));
  for (DType to : {DType::bf16, DType::f16}) {
    const Tensor expected = cast_tensor(x, to);
    const std::vector<uint16_t> ref = half_bits(run_cast("ref", x, to));
    const std::vector<uint16_t> cpu = half_bits(run_cast("cpu", x, to));
    const std::vector<uint16_t> want = half_bits(expected);
    ASSERT_EQ(ref.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      uint32_t xi;
      std::memcpy(&xi, static_cast<const char*>(x.data()) + 4 * i, 4);
      ASSERT_EQ(ref[i], want[i]) << "ref, to " << to_string(to) << std::hex << ", f32 0x" << xi;
      ASSERT_EQ(cpu[i], want[i]) << "cpu, to " << to_string(to) << std::hex << ", f32 0x" << xi;
    }
  }
}

// Every bf16 and f16 pattern widened to f32. One documented difference: ref holds f32 values
// as doubles, and x86's float <-> double conversions quiet a signalling NaN, so a signalling
// bf16 NaN (whose widening is the plain 16-bit shift) reads back from ref with its quiet bit
// set; cpu keeps the shifted bits. An f16 NaN is quieted by the widening itself (VCVTPH2PS).
TEST(CastPlan, HalfToF32IsBitExactOnRefAndCpu) {
  for (DType from : {DType::bf16, DType::f16}) {
    const Tensor x = half_tensor(every_half_pattern(), from);
    const std::vector<uint32_t> ref = f32_bits_of(run_cast("ref", x, DType::f32));
    const std::vector<uint32_t> cpu = f32_bits_of(run_cast("cpu", x, DType::f32));
    for (uint32_t h = 0; h < 65536; ++h) {
      const uint32_t want = from == DType::bf16 ? bf16_bits_to_f32_bits(static_cast<uint16_t>(h))
                                                : f16_bits_to_f32_bits(static_cast<uint16_t>(h));
      ASSERT_EQ(cpu[h], want) << "cpu, from " << to_string(from) << std::hex << " 0x" << h;
      if (from == DType::bf16 && is_signalling_bf16(static_cast<uint16_t>(h)))
        ASSERT_EQ(ref[h], want | 0x00400000u) << "ref quiets a signalling NaN" << std::hex << " 0x" << h;
      else
        ASSERT_EQ(ref[h], want) << "ref, from " << to_string(from) << std::hex << " 0x" << h;
    }
  }
}

TEST(CastPlan, BetweenHalfDtypesAndIdentitiesOnRefAndCpu) {
  const std::vector<uint16_t> all = every_half_pattern();
  for (DType from : {DType::bf16, DType::f16}) {
    const Tensor x = half_tensor(all, from);
    for (DType to : {DType::bf16, DType::f16}) {
      const std::vector<uint16_t> want = half_bits(cast_tensor(x, to));
      if (from == to) { EXPECT_EQ(want, all); }  // the identity is a copy, NaN payloads and all
      EXPECT_EQ(half_bits(run_cast("ref", x, to)), want) << "ref " << to_string(from) << "->" << to_string(to);
      EXPECT_EQ(half_bits(run_cast("cpu", x, to)), want) << "cpu " << to_string(from) << "->" << to_string(to);
    }
  }
}

// ---- the gradient rule: dL/dx = dL/dy cast back to x's dtype

TEST(CastGradient, IsTheIncomingGradientCastBackToXsDtype) {
  for (DType half : {DType::bf16, DType::f16}) {
    for (const char* backend_name : {"ref", "cpu"}) {
      GraphBuilder b;
      const Value x = b.input("x", Shape{4, 9}, DType::f32);
      const Value y = b.cast(x, half, "y");
      const Node node = b.graph().nodes().back();
      const Value dy = b.input("dy", Shape{4, 9}, half);
      BuilderEmitter emit(b);
      const std::vector<Value> grads = ops::rule(PARITY_OP_CAST).gradient(emit, node, {dy}, {true});
      ASSERT_EQ(grads.size(), 1u);
      ASSERT_TRUE(grads[0].valid());
      const Node& back = b.graph().nodes().back();
      EXPECT_EQ(back.op, PARITY_OP_CAST);
      EXPECT_EQ(back.params.cast.dtype, PARITY_F32);
      EXPECT_EQ(b.graph().value(grads[0]).dtype, DType::f32);
      EXPECT_EQ(b.graph().value(grads[0]).shape, (Shape{4, 9}));
      EXPECT_EQ(b.graph().value(y).dtype, half);
      // Not needed, or no incoming gradient: nothing is emitted.
      EXPECT_FALSE(ops::rule(PARITY_OP_CAST).gradient(emit, node, {dy}, {false})[0].valid());
      EXPECT_FALSE(ops::rule(PARITY_OP_CAST).gradient(emit, node, {Value{}}, {true})[0].valid());

      const Graph g = b.take();
      const std::string dx_name = g.value(grads[0]).name;
      auto backend = create_backend(backend_name);
      CompiledStep step(*backend, g, {dx_name});
      std::mt19937 rng(3);
      std::uniform_real_distribution<float> u(-4.0f, 4.0f);
      Tensor x_t(Shape{4, 9}, DType::f32), dy_f32(Shape{4, 9}, DType::f32);
      for (int64_t i = 0; i < 36; ++i) x_t.f32()[i] = u(rng), dy_f32.f32()[i] = u(rng);
      const Tensor dy_t = cast_tensor(dy_f32, half);
      step.write("x", x_t);
      step.write("dy", dy_t);
      step.execute();
      const Tensor dx = step.read(dx_name);
      const Tensor want = cast_tensor(dy_t, DType::f32);
      EXPECT_EQ(std::memcmp(dx.data(), want.data(), want.nbytes()), 0) << backend_name << " " << to_string(half);
      // The widening is exact: dx holds dy's values, which are not dy_f32's (they were rounded).
      EXPECT_NE(std::memcmp(dx.data(), dy_f32.data(), dy_f32.nbytes()), 0);
    }
  }
}

// ---- conformance: the family of ops/cast.cpp on cpu (forward, exact mode, gradient mode) and
// on onednn (which runs CAST on cpu's kernel) where it is built

bool available(const std::string& name) {
  for (const BackendInfo& info : list_backends())
    if (info.name == name) return info.available;
  return false;
}

TEST(CastConformance, CpuMatchesRefBitForBit) {
  std::vector<std::string> backends = {"cpu"};
  if (available("onednn")) backends.push_back("onednn");
  for (bool exact : {false, true}) {
    OpCheckOptions o;
    o.backends = backends;
    o.op = "cast";
    o.exact = exact;
    o.threads = 2;
    const std::vector<OpCaseResult> results = check_ops(o);
    ASSERT_GE(results.size(), 19u * backends.size());  // three sets of six directions and the f32 identity
    bool saw_specials = false;
    for (const OpCaseResult& r : results) {
      EXPECT_FALSE(r.skipped) << r.label << ": " << r.skip_reason;
      saw_specials |= r.label.find("special values") != std::string::npos;
      ASSERT_EQ(r.outputs.size(), 1u) << r.label;
      EXPECT_EQ(r.outputs[0].threshold, 0.0) << r.label;  // bytes compared
      EXPECT_TRUE(r.outputs[0].pass) << r.label << ": max abs " << r.outputs[0].max_abs << ", non-finite mismatches "
                                     << r.outputs[0].nonfinite_mismatch;
    }
    EXPECT_TRUE(saw_specials);
  }
  OpCheckOptions g;
  g.backends = {"cpu"};
  g.op = "cast";
  g.gradient = true;
  g.threads = 2;
  int checked = 0;
  for (const OpCaseResult& r : check_ops(g)) {
    // Finite differences need an f32 operand and output: the f32 identity only. The half
    // directions are skipped saying so (their gradient rule is checked above, by value).
    const bool f32_to_f32 = r.label.find("f32->f32") != std::string::npos;
    EXPECT_EQ(r.skipped, !f32_to_f32) << r.label << ": " << r.skip_reason;
    if (r.skipped) { EXPECT_NE(r.skip_reason.find("nothing to difference"), std::string::npos) << r.skip_reason; }
    for (const TensorDiff& d : r.outputs) {
      ++checked;
      EXPECT_TRUE(d.pass) << r.label << " " << d.name << ": nmse " << d.nmse;
    }
  }
  EXPECT_GE(checked, 1);  // the f32 identity's gradient against finite differences
}

// A run of the check whose cpu output is changed by one ulp in one element must fail: the
// comparison CAST's conformance uses is bytes, not a tolerance.
TEST(CastConformance, OneUlpOffFails) {
  Tensor a = cast_tensor(Tensor::from_f32(Shape{3}, {1.0f, 2.5f, -3.0f}), DType::bf16);
  Tensor b = a;
  b.bf16()[1] += 1;
  EXPECT_FALSE(compare_tensors(b, a, ops::rule(PARITY_OP_CAST).tolerance.op_nmse).pass);
  EXPECT_TRUE(compare_tensors(a, a, ops::rule(PARITY_OP_CAST).tolerance.op_nmse).pass);
}

// ---- cast_tensor and the builder's refusals

TEST(CastTensor, ConvertsAsHalfHAndRefusesOtherDtypes) {
  const Tensor x = f32_tensor(kSpecialF32);
  const Tensor b = cast_tensor(x, DType::bf16), h = cast_tensor(x, DType::f16);
  ASSERT_EQ(b.dtype(), DType::bf16);
  ASSERT_EQ(h.dtype(), DType::f16);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_STREQ(to_string(DType::bf16), "bf16");
  EXPECT_STREQ(to_string(DType::f16), "f16");
  for (size_t i = 0; i < kSpecialF32.size(); ++i) {
    EXPECT_EQ(b.bf16()[i], f32_bits_to_bf16_bits(kSpecialF32[i])) << i;
    EXPECT_EQ(h.f16()[i], f32_bits_to_f16_bits(kSpecialF32[i])) << i;
  }
  const Tensor back = cast_tensor(h, DType::f32);
  for (size_t i = 0; i < kSpecialF32.size(); ++i) EXPECT_EQ(f32_bits_of(back)[i], f16_bits_to_f32_bits(h.f16()[i]));
  try {
    cast_tensor(Tensor(Shape{2}, DType::i32), DType::bf16);
    ADD_FAILURE() << "i32 -> bf16 converted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("cannot convert i32 to bf16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.f32(), Error);  // typed views check the dtype
}

TEST(CastBuilder, RefusesDtypesItCannotConvert) {
  GraphBuilder b;
  const Value labels = b.input("labels", Shape{4}, DType::i32);
  const Value x = b.input("x", Shape{4}, DType::f32);
  try {
    b.cast(labels, DType::bf16, "c1");
    ADD_FAILURE() << "cast of i32 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cast 'c1': x 'labels' must be f32, bf16 or f16, got i32"), std::string::npos)
        << e.what();
  }
  try {
    b.cast(x, DType::i64, "c2");
    ADD_FAILURE() << "cast to i64 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cast 'c2': the target dtype"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("got 2"), std::string::npos) << e.what();
  }
  // A half value into an op that computes in f32 only is refused by that op's rule, by name.
  const Value h = b.cast(x, DType::f16, "h");
  try {
    b.sigmoid(h, "s");
    ADD_FAILURE() << "sigmoid of f16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sigmoid 's': input 'h' must be f32, got f16"), std::string::npos) << e.what();
  }
}

// ---- backends without half dtypes refuse them, naming the backend and the dtype

// A backend that lists bf16 and f16 among its dtypes (ref, cpu, onednn; simt, gpu_emu, HIP and
// CUDA since the native kernels and CUDA's half library routes take them) compiles a plan with a
// bf16 value and supports CAST; one that does not (the test plugins) refuses the plan naming
// itself, the dtype and the value.
TEST(CastRefusal, BackendsRunHalfDtypesOrRefuseThemByName) {
  std::vector<std::string> refusing;
  for (const BackendInfo& info : list_backends()) {
    if (!info.available) continue;
    SCOPED_TRACE(info.name);
    const bool halves = info.capabilities.find("bf16 f16") != std::string::npos;
    auto backend = create_backend(info.name);
    // A plan with a bf16 value but no CAST (a reshape of a bf16 input).
    GraphBuilder b;
    const Value x = b.input("x", Shape{2, 3}, DType::bf16);
    b.reshape(x, Shape{6}, "flat");
    const Graph g = b.take();
    try {
      CompiledStep step(*backend, g, {"flat"});
      EXPECT_TRUE(halves) << info.name << " compiled a plan with a bf16 value without listing bf16";
    } catch (const Error& e) {
      EXPECT_FALSE(halves) << e.what();
      EXPECT_EQ(e.kind(), ErrorKind::backend) << e.what();
      EXPECT_NE(std::string(e.what()).find("backend '" + info.name + "' cannot run bf16 values (plan value 'x')"),
                std::string::npos)
          << e.what();
      refusing.push_back(info.name);
    }
    GraphBuilder c;
    c.cast(c.input("x", Shape{4}), DType::f16, "to_half");
    const Graph gc = c.take();
    CompiledStep cast_step(gc, {});
    std::string why;
    if (halves) { EXPECT_TRUE(cast_step.supported_by(*backend, &why)) << why; }
  }
  std::string names;
  for (const std::string& n : refusing) names += n + " ";
  RecordProperty("backends_refusing", names);
  std::printf("backends refusing half dtypes: %s\n", names.c_str());
}

// simt runs the CAST conformance cases (the native kernels' CAST) and each matches ref bit for bit.
TEST(CastOnSimt, EveryConformanceCaseMatchesRefExactly) {
  if (!available("simt")) GTEST_SKIP() << "simt is not built";
  OpCheckOptions o;
  o.backends = {"simt"};
  o.op = "cast";
  o.threads = 2;
  const std::vector<OpCaseResult> results = check_ops(o);
  ASSERT_GT(results.size(), 10u);
  for (const OpCaseResult& r : results) {
    EXPECT_FALSE(r.skipped) << r.label << ": " << r.skip_reason;
    EXPECT_TRUE(r.pass()) << r.label;
  }
}

TEST(CastRefusal, BuiltinCapabilitiesListTheHalfDtypes) {
  for (const BackendInfo& info : list_backends()) {
    if (!info.available) continue;
    const bool halves = info.name == "ref" || info.name == "cpu" || info.name == "onednn" || info.name == "simt" ||
                        info.name == "gpu_emu";
    EXPECT_EQ(info.capabilities.find("bf16 f16") != std::string::npos, halves) << info.name << ": " << info.capabilities;
  }
}

}  // namespace
}  // namespace parity
