// tests/test_half_ops.cpp — ops on bf16 and f16 values (issue #14): the rules refuse mixed
// dtypes naming the op, the operands and both dtypes; cpu's half conv2d and linear (forward and
// both backwards) agree with ref within the half tolerances on the bf16 GEMM route this process
// uses (CTest runs the suite twice: as the CPU decides, and with PARITY_CPU_BF16=convert); the
// seed CNN's training step cast to bf16 or f16 runs on cpu and ref and agrees; cpu's half step is
// bitwise the same at 1 and 2 threads; cpu's own bf16 relu and 2x2 max-pool kernels give ref's
// bits, and its bf16 max-pool-gradient fusion the unfused nodes' bits; cpu's bf16 conv gives
// ref's bits on integer operands over every route that packs its column matrix.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/gemm_bf16.h"
#include "graph/compiled_step.h"
#include "ops/op_rule.h"
#include "parity/check.h"
#include "parity/parity.h"

namespace parity {
namespace {

std::string refusal(const std::function<void()>& build) {
  try {
    build();
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(HalfOps, MixedDtypesAreRefusedNamingTheOpTheOperandsAndBothDtypes) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{2, 3, 6, 6}, DType::bf16);
  const Value w16 = b.input("w16", Shape{4, 3, 3, 3}, DType::f16);
  const Value wb = b.input("wb", Shape{4, 3, 3, 3}, DType::bf16);
  const Value bias = b.input("bias", Shape{4});
  const Value bias_half = b.input("bias_half", Shape{4}, DType::bf16);
  std::string e = refusal([&] { b.conv2d(x, w16, bias, 1, 0, "c1"); });
  EXPECT_NE(e.find("conv2d 'c1': weight 'w16' is f16 but input 'x' is bf16"), std::string::npos) << e;
  e = refusal([&] { b.conv2d(x, wb, bias_half, 1, 0, "c2"); });
  EXPECT_NE(e.find("conv2d 'c2': bias (added in f32 before the one rounding) 'bias_half' must be f32, got bf16"),
            std::string::npos)
      << e;
  // A half input with an f32 weight is refused too: the pass casts both (docs/autocast.md).
  const Value wf = b.input("wf", Shape{4, 3, 3, 3});
  e = refusal([&] { b.conv2d(x, wf, bias, 1, 0, "c3"); });
  EXPECT_NE(e.find("conv2d 'c3': weight 'wf' is f32 but input 'x' is bf16"), std::string::npos) << e;

  const Value rows = b.input("rows", Shape{2, 5}, DType::f16);
  const Value lw = b.input("lw", Shape{3, 5}, DType::bf16);
  e = refusal([&] { b.linear(rows, lw, b.input("lb", Shape{3}), "l1"); });
  EXPECT_NE(e.find("linear 'l1': weight 'lw' is bf16 but input 'rows' is f16"), std::string::npos) << e;

  const Value a = b.input("a", Shape{2, 5});
  e = refusal([&] { b.add(a, rows, "sum"); });
  EXPECT_NE(e.find("add 'sum': b 'rows' is f16 but a 'a' is f32"), std::string::npos) << e;
  e = refusal([&] { b.concat({rows, b.input("other", Shape{2, 5}, DType::bf16)}, "cat"); });
  EXPECT_NE(e.find("concat 'cat': input 1 'other' is bf16, input 0 'rows' is f16"), std::string::npos) << e;
  e = refusal([&] { b.relu(b.input("labels", Shape{2}, DType::i32), "r"); });
  EXPECT_NE(e.find("relu 'r': x 'labels' must be f32, bf16 or f16, got i32"), std::string::npos) << e;
  // The ops autocast keeps in f32 refuse half values by their f32 rule.
  e = refusal([&] { b.softmax_xent(rows, b.input("y", Shape{2}, DType::i32), "xent"); });
  EXPECT_NE(e.find("softmax_xent 'xent': logits 'rows' must be f32, got f16"), std::string::npos) << e;

  // What is accepted infers the half dtype, and db stays f32.
  const Value y = b.conv2d(x, wb, bias, 1, 1, "ok");
  EXPECT_EQ(b.graph().value(y).dtype, DType::bf16);
  EXPECT_EQ(b.graph().value(b.maxpool2d(y, 2, 2, "pool")).dtype, DType::bf16);
}

// `parity check ops` over conv2d and linear on cpu: every bf16 and f16 case runs (none skipped)
// and passes its half tolerance, in normal and exact mode, on the route this process takes.
TEST(HalfOps, CpuConvAndLinearAgreeWithRefOnThisProcesssBf16Route) {
  const char* env = std::getenv("PARITY_CPU_BF16");
  const bool convert = env && std::string(env) == "convert";
  EXPECT_EQ(cpu::bf16_gemm_route(), convert || !cpu::cpu_has_avx512_bf16() ? cpu::Bf16GemmRoute::f32_conversion
                                                                            : cpu::Bf16GemmRoute::avx512_bf16);
  for (const char* family : {"conv2d", "linear"})
    for (bool exact : {false, true}) {
      OpCheckOptions o;
      o.backends = {"cpu"};
      o.op = family;
      o.exact = exact;
      o.threads = 2;
      int bf16 = 0, f16 = 0;
      for (const OpCaseResult& r : check_ops(o)) {
        const bool is_bf16 = r.label.find(" bf16") != std::string::npos, is_f16 = r.label.find(" f16") != std::string::npos;
        bf16 += is_bf16;
        f16 += is_f16;
        EXPECT_FALSE(r.skipped) << r.op << " " << r.label << ": " << r.skip_reason;
        for (const TensorDiff& d : r.outputs)
          EXPECT_TRUE(d.pass) << (exact ? "[exact] " : "") << r.op << " " << r.label << " " << d.name << ": nmse "
                              << d.nmse << " (limit " << d.threshold << ")";
      }
      EXPECT_GE(bf16, 18) << family;  // each forward, backward-data and backward-weight case of the family
      EXPECT_EQ(bf16, f16) << family;
    }
}

// Integer operands whose f32 sums are exact but need rounding in the half dtype (beyond 2^8 for
// bf16, 2^11 for f16): ref (its own float64 rounding) and cpu (half.h, gemm_bf16 or the f32
// kernels) must both give the exact sum rounded once to nearest even, which cast_tensor (half.h)
// of the f32 sum is. Ties occur: sums that are odd multiples of half an ulp.
TEST(HalfOps, ConvAndLinearRoundTheExactSumOnceOnRefAndCpu) {
  std::mt19937 rng(11);
  for (DType half : {DType::bf16, DType::f16}) {
    const int range = half == DType::bf16 ? 20 : 60;
    std::uniform_int_distribution<int> value(-range, range);
    auto ints = [&](const Shape& shape) {
      Tensor t(shape, DType::f32);
      for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(value(rng));
      return t;
    };
    const Tensor x = ints(Shape{2, 3, 5, 5}), w = ints(Shape{4, 3, 3, 3}), b = ints(Shape{4});
    const Tensor xl = ints(Shape{3, 8}), wl = ints(Shape{5, 8}), bl = ints(Shape{5});
    // The exact sums in f32 (every partial sum is an integer below 2^24).
    Tensor conv(Shape{2, 4, 3, 3}, DType::f32), lin(Shape{3, 5}, DType::f32);
    for (int n = 0; n < 2; ++n)
      for (int k = 0; k < 4; ++k)
        for (int p = 0; p < 3; ++p)
          for (int q = 0; q < 3; ++q) {
            float sum = b.f32()[k];
            for (int c = 0; c < 3; ++c)
              for (int r = 0; r < 3; ++r)
                for (int s = 0; s < 3; ++s)
                  sum += x.f32()[((n * 3 + c) * 5 + p + r) * 5 + q + s] * w.f32()[((k * 3 + c) * 3 + r) * 3 + s];
            conv.f32()[((n * 4 + k) * 3 + p) * 3 + q] = sum;
          }
    for (int n = 0; n < 3; ++n)
      for (int o = 0; o < 5; ++o) {
        float sum = bl.f32()[o];
        for (int i = 0; i < 8; ++i) sum += xl.f32()[n * 8 + i] * wl.f32()[o * 8 + i];
        lin.f32()[n * 5 + o] = sum;
      }
    GraphBuilder g;
    g.conv2d(g.input("x", x.shape(), half), g.input("w", w.shape(), half), g.input("b", b.shape()), 1, 0, "conv");
    g.linear(g.input("xl", xl.shape(), half), g.input("wl", wl.shape(), half), g.input("bl", bl.shape()), "lin");
    const Graph graph = g.take();
    for (const char* name : {"ref", "cpu"}) {
      SCOPED_TRACE(std::string(name) + " " + to_string(half));
      auto backend = create_backend(name);
      CompiledStep step(*backend, graph, {"conv", "lin"});
      step.write("x", cast_tensor(x, half));
      step.write("w", cast_tensor(w, half));
      step.write("b", b);
      step.write("xl", cast_tensor(xl, half));
      step.write("wl", cast_tensor(wl, half));
      step.write("bl", bl);
      step.execute();
      const Tensor want_conv = cast_tensor(conv, half), want_lin = cast_tensor(lin, half);
      const Tensor got_conv = step.read("conv"), got_lin = step.read("lin");
      ASSERT_EQ(got_conv.nbytes(), want_conv.nbytes());
      EXPECT_EQ(std::memcmp(got_conv.data(), want_conv.data(), want_conv.nbytes()), 0);
      EXPECT_EQ(std::memcmp(got_lin.data(), want_lin.data(), want_lin.nbytes()), 0);
    }
    // Not vacuous: some sums needed rounding.
    int rounded = 0;
    const Tensor back = cast_tensor(cast_tensor(conv, half), DType::f32);
    for (int64_t i = 0; i < conv.numel(); ++i) rounded += back.f32()[i] != conv.f32()[i];
    EXPECT_GT(rounded, 5) << to_string(half);
  }
}

// cpu's own bf16 kernels for relu, relu backward and 2x2 stride-2 max-pooling (forward and
// backward, alone and with the relu backward fused) widen, compare and round as the f32 kernels
// on widened copies do, so their bits are ref's on every input: NaNs (quiet and signalling, of
// both signs), infinities, zeros of both signs, subnormals, ties inside a window, odd heights
// and widths (the vector tails and the row and column no window reads).
TEST(HalfOps, Bf16ReluAndMaxPoolOnCpuAreBitwiseRef) {
  const Shape shape{2, 3, 9, 37};
  std::mt19937 rng(5);
  const uint16_t specials[] = {0x7FC0, 0xFFC1, 0x7F81, 0xFF80, 0x7F80, 0x8000, 0x0000, 0x0001, 0x8003, 0x3F80, 0xBF80};
  auto bf16_tensor = [&](const Shape& s, int special_every) {
    Tensor t(s, DType::bf16);
    auto* bits = static_cast<uint16_t*>(t.data());
    std::uniform_int_distribution<int> small(-3, 3), pick(0, 10);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float v = static_cast<float>(small(rng)) * 0.5f;  // many ties
      uint32_t u;
      std::memcpy(&u, &v, 4);
      bits[i] = static_cast<uint16_t>(u >> 16);
      if (special_every > 0 && i % special_every == 3) bits[i] = specials[pick(rng)];
    }
    return t;
  };
  const Tensor x = bf16_tensor(shape, 7);
  parity_op_params none{};
  parity_op_params pool{};
  pool.maxpool2d.kernel_h = pool.maxpool2d.kernel_w = 2;
  pool.maxpool2d.stride_h = pool.maxpool2d.stride_w = 2;
  pool.maxpool2d.input_h = 9;
  pool.maxpool2d.input_w = 37;
  const Tensor dy = bf16_tensor(Shape{2, 3, 4, 18}, 5);
  for (bool keep_all : {true, false}) {  // kept intermediates: no fusion; else the pool backward may take the relu's
    GraphBuilder g;
    const Value r = g.node(PARITY_OP_RELU, none, {g.input("x", shape, DType::bf16)}, "relu")[0];
    const std::vector<Value> pooled = g.node(PARITY_OP_MAXPOOL2D, pool, {r}, "pool");
    const Value dpool = g.node(PARITY_OP_MAXPOOL2D_BWD, pool, {g.input("dy", dy.shape(), DType::bf16), pooled[1]}, "pool.bwd")[0];
    g.node(PARITY_OP_RELU_BWD, none, {r, dpool}, "relu.bwd");
    const Graph graph = g.take();
    const std::vector<std::string> keep =
        keep_all ? std::vector<std::string>{"relu", "pool:0", "pool:1", "pool.bwd", "relu.bwd"}
                 : std::vector<std::string>{"pool:0", "pool:1", "relu.bwd"};
    std::vector<Tensor> got[2];
    for (int b = 0; b < 2; ++b) {
      auto backend = create_backend(b == 0 ? "ref" : "cpu");
      CompiledStep step(*backend, graph, keep);
      step.write("x", x);
      step.write("dy", dy);
      step.execute();
      for (const std::string& name : keep) got[b].push_back(step.read(name));
    }
    for (size_t i = 0; i < keep.size(); ++i) {
      ASSERT_EQ(got[0][i].nbytes(), got[1][i].nbytes()) << keep[i];
      EXPECT_EQ(std::memcmp(got[0][i].data(), got[1][i].data(), got[0][i].nbytes()), 0)
          << keep[i] << (keep_all ? " (unfused)" : " (fusable)");
    }
  }
}

// A bf16 conv backward-weight whose dy comes from a 2x2 max-pool backward and a relu backward
// that feed it alone makes that dy itself (cpu_fusion.cpp); its dw and db are bitwise those of
// the three nodes run apart (the relu backward's output kept, which stops the fusion).
TEST(HalfOps, Bf16ConvBackwardWeightThatMakesItsPooledDyIsBitwiseTheNodesApart) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> small(-8, 8), corner(0, 3);
  auto bf16_tensor = [&](const Shape& shape) {
    Tensor t(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(small(rng)) * 0.25f;
    return cast_tensor(t, DType::bf16);
  };
  const int64_t N = 2, C = 4, K = 3, H = 8, W = 10;
  const Tensor x = bf16_tensor(Shape{N, C, H, W}), y = bf16_tensor(Shape{N, K, H, W});
  const Tensor dy = bf16_tensor(Shape{N, K, H / 2, W / 2});
  Tensor idx(Shape{N, K, H / 2, W / 2}, DType::i32);
  for (int64_t plane = 0; plane < N * K; ++plane)
    for (int64_t p = 0; p < H / 2; ++p)
      for (int64_t q = 0; q < W / 2; ++q) {
        const int c = corner(rng);
        idx.i32()[(plane * (H / 2) + p) * (W / 2) + q] = static_cast<int32_t>((2 * p + c / 2) * W + 2 * q + c % 2);
      }
  parity_op_params none{}, pool{}, conv{};
  pool.maxpool2d.kernel_h = pool.maxpool2d.kernel_w = 2;
  pool.maxpool2d.stride_h = pool.maxpool2d.stride_w = 2;
  pool.maxpool2d.input_h = H;
  pool.maxpool2d.input_w = W;
  conv.conv2d.stride_h = conv.conv2d.stride_w = 1;
  conv.conv2d.pad_h = conv.conv2d.pad_w = 1;
  conv.conv2d.kernel_h = conv.conv2d.kernel_w = 3;
  GraphBuilder g;
  const Value dp = g.node(PARITY_OP_MAXPOOL2D_BWD, pool,
                          {g.input("dy", dy.shape(), DType::bf16), g.input("idx", idx.shape(), DType::i32)}, "pool.bwd")[0];
  const Value dr = g.node(PARITY_OP_RELU_BWD, none, {g.input("y", y.shape(), DType::bf16), dp}, "relu.bwd")[0];
  const std::vector<Value> grads = g.node(PARITY_OP_CONV2D_BWD_WEIGHT, conv, {g.input("x", x.shape(), DType::bf16), dr}, "conv.bwd");
  ASSERT_EQ(grads.size(), 2u);
  const Graph graph = g.take();
  std::vector<Tensor> got[2];
  for (int apart = 0; apart < 2; ++apart) {
    auto backend = create_backend("cpu");
    std::vector<std::string> keep{"conv.bwd:0", "conv.bwd:1"};
    if (apart) keep.push_back("relu.bwd");
    CompiledStep step(*backend, graph, keep);
    step.write("x", x);
    step.write("y", y);
    step.write("dy", dy);
    step.write("idx", idx);
    step.execute();
    got[apart] = {step.read("conv.bwd:0"), step.read("conv.bwd:1")};
  }
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(got[0][k].nbytes(), got[1][k].nbytes());
    EXPECT_EQ(std::memcmp(got[0][k].data(), got[1][k].data(), got[0][k].nbytes()), 0) << (k ? "db" : "dw");
  }
}

// As above, with the indices made by a forward MAXPOOL2D of the relu output the mask is: the
// fused conv then masks dy by that pool's output (NodeFusion::pooled_relu) instead of the relu
// output, with the same bits. The relu output holds ties, zeros of both signs and negatives.
TEST(HalfOps, Bf16PooledDyMaskedByThePoolsOutputIsBitwiseTheNodesApart) {
  std::mt19937 rng(10);
  std::uniform_int_distribution<int> small(-8, 8), tiny(-2, 2);
  auto bf16_tensor = [&](const Shape& shape, std::uniform_int_distribution<int>& dist) {
    Tensor t(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(dist(rng)) * 0.25f;
    for (int64_t i = 0; i < t.numel(); i += 7) t.f32()[i] = -0.0f;
    return cast_tensor(t, DType::bf16);
  };
  const int64_t N = 2, C = 3, K = 4, H = 12, W = 18;
  const Tensor x = bf16_tensor(Shape{N, C, H, W}, small), y = bf16_tensor(Shape{N, K, H, W}, tiny);
  const Tensor dy = bf16_tensor(Shape{N, K, H / 2, W / 2}, small);
  parity_op_params none{}, pool{}, conv{};
  pool.maxpool2d.kernel_h = pool.maxpool2d.kernel_w = 2;
  pool.maxpool2d.stride_h = pool.maxpool2d.stride_w = 2;
  pool.maxpool2d.input_h = H;
  pool.maxpool2d.input_w = W;
  conv.conv2d.stride_h = conv.conv2d.stride_w = 1;
  conv.conv2d.pad_h = conv.conv2d.pad_w = 1;
  conv.conv2d.kernel_h = conv.conv2d.kernel_w = 3;
  GraphBuilder g;
  const Value yv = g.input("y", y.shape(), DType::bf16);
  const std::vector<Value> pooled = g.node(PARITY_OP_MAXPOOL2D, pool, {yv}, "pool");
  const Value dp = g.node(PARITY_OP_MAXPOOL2D_BWD, pool, {g.input("dy", dy.shape(), DType::bf16), pooled[1]}, "pool.bwd")[0];
  const Value dr = g.node(PARITY_OP_RELU_BWD, none, {yv, dp}, "relu.bwd")[0];
  g.node(PARITY_OP_CONV2D_BWD_WEIGHT, conv, {g.input("x", x.shape(), DType::bf16), dr}, "conv.bwd");
  const Graph graph = g.take();
  std::vector<Tensor> got[2];
  for (int apart = 0; apart < 2; ++apart) {
    auto backend = create_backend("cpu");
    std::vector<std::string> keep{"conv.bwd:0", "conv.bwd:1", "pool:0"};
    if (apart) keep.push_back("relu.bwd");
    CompiledStep step(*backend, graph, keep);
    step.write("x", x);
    step.write("y", y);
    step.write("dy", dy);
    step.execute();
    got[apart] = {step.read("conv.bwd:0"), step.read("conv.bwd:1")};
  }
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(got[0][k].nbytes(), got[1][k].nbytes());
    EXPECT_EQ(std::memcmp(got[0][k].data(), got[1][k].data(), got[0][k].nbytes()), 0) << (k ? "db" : "dw");
  }
}

// cpu's bf16 conv2d (forward, with and without its fused relu and the max-pool it runs itself,
// backward-data, backward-weight)
// over geometries that reach each of its packing routes (bf16_gemm_ops.cpp): stride 1 over the
// padded width (16 padded columns or more), the per-row route (narrow images, stride 2 in either
// direction), odd CgRS and PQ (a half-empty last pair), 1x1 kernels, groups, dilation,
// asymmetric padding, and k past one GEMM block (more than 512 rows of the column matrix). With
// small-integer operands every f32 partial sum is exact, so cpu must give ref's bits exactly
// (the exact sum rounded once), on either bf16 GEMM route.
TEST(HalfOps, Bf16ConvOnEveryPackingRouteIsBitwiseRefOnIntegers) {
  struct Geometry {
    int64_t N, C, H, W, K, R, S;
    int32_t stride_h, stride_w, pad_h, pad_w, dilation, groups;
    int32_t pad_bottom = -1, pad_right = -1;  // -1: symmetric
  };
  const Geometry geometries[] = {
      {2, 3, 20, 20, 5, 3, 3, 1, 1, 1, 1, 1, 1},      // padded width 22; rows cross panels; CgRS 27
      {2, 4, 9, 37, 8, 3, 3, 1, 1, 0, 0, 1, 1},       // no padding; PQ 7 x 35 odd
      {2, 3, 17, 17, 4, 3, 3, 2, 2, 1, 1, 1, 1},      // stride 2: the per-row route, gathered
      {2, 3, 16, 19, 4, 3, 3, 2, 1, 1, 1, 1, 1},      // stride 2 down, 1 across: the per-row route
      {1, 2, 7, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1},        // padded width 9 < 16: the per-row route
      {2, 4, 12, 18, 6, 3, 3, 1, 1, 2, 2, 2, 2},      // dilation 2, 2 groups
      {1, 64, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1},       // CgRS 576: two k blocks, per-row route
      {1, 60, 14, 14, 3, 3, 3, 1, 1, 1, 1, 1, 1},     // CgRS 540, padded width exactly 16
      {2, 5, 11, 23, 7, 1, 1, 1, 1, 0, 0, 1, 1},      // 1x1, CgRS 5
      {2, 3, 10, 15, 4, 3, 3, 1, 1, 1, 2, 1, 1, 0, 1},  // padding 1 top, 2 left, 0 bottom, 1 right
      {2, 3, 16, 33, 4, 5, 3, 1, 1, 2, 1, 1, 1},      // 5x3 kernel
      {1, 2, 15, 130, 3, 3, 3, 1, 1, 1, 1, 1, 1},     // padded route in blocks of 6 rows, then 3 (one unpooled)
      {1, 1, 5, 600, 2, 3, 3, 1, 1, 1, 1, 1, 1},      // padded width 602: blocks of one row
  };
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> value(-3, 3);
  auto ints = [&](const Shape& shape) {
    Tensor t(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(value(rng));
    return t;
  };
  for (const Geometry& geo : geometries) {
    SCOPED_TRACE("conv N" + std::to_string(geo.N) + " C" + std::to_string(geo.C) + " " + std::to_string(geo.H) + "x" +
                 std::to_string(geo.W) + " K" + std::to_string(geo.K) + " " + std::to_string(geo.R) + "x" +
                 std::to_string(geo.S) + " stride " + std::to_string(geo.stride_h) + "," + std::to_string(geo.stride_w) +
                 " groups " + std::to_string(geo.groups));
    parity_op_params params{};
    parity_conv2d_params& p = params.conv2d;
    p.stride_h = geo.stride_h;
    p.stride_w = geo.stride_w;
    p.pad_h = geo.pad_h;
    p.pad_w = geo.pad_w;
    p.dilation_h = p.dilation_w = geo.dilation;
    p.groups = geo.groups;
    if (geo.pad_bottom >= 0) {
      p.pad_end_given = 1;
      p.pad_bottom = geo.pad_bottom;
      p.pad_right = geo.pad_right;
    }
    p.input_h = static_cast<int32_t>(geo.H);
    p.input_w = static_cast<int32_t>(geo.W);
    p.kernel_h = static_cast<int32_t>(geo.R);
    p.kernel_w = static_cast<int32_t>(geo.S);
    const int64_t pb = geo.pad_bottom >= 0 ? geo.pad_bottom : geo.pad_h, pr = geo.pad_right >= 0 ? geo.pad_right : geo.pad_w;
    const int64_t P = (geo.H + geo.pad_h + pb - geo.dilation * (geo.R - 1) - 1) / geo.stride_h + 1;
    const int64_t Q = (geo.W + geo.pad_w + pr - geo.dilation * (geo.S - 1) - 1) / geo.stride_w + 1;
    const Tensor x = ints(Shape{geo.N, geo.C, geo.H, geo.W}), w = ints(Shape{geo.K, geo.C / geo.groups, geo.R, geo.S});
    const Tensor b = ints(Shape{geo.K}), dy = ints(Shape{geo.N, geo.K, P, Q});
    GraphBuilder g;
    const Value xv = g.input("x", x.shape(), DType::bf16), wv = g.input("w", w.shape(), DType::bf16);
    const Value bv = g.input("b", b.shape()), dyv = g.input("dy", dy.shape(), DType::bf16);
    g.node(PARITY_OP_CONV2D, params, {xv, wv, bv}, "y");
    const Value relu = g.relu(g.node(PARITY_OP_CONV2D, params, {xv, wv, bv}, "pre")[0], "relu");  // fused: pre is read by relu alone
    parity_op_params pool{};  // run by the conv, image by image (NodeFusion::pool_after)
    pool.maxpool2d.kernel_h = pool.maxpool2d.kernel_w = pool.maxpool2d.stride_h = pool.maxpool2d.stride_w = 2;
    pool.maxpool2d.input_h = static_cast<int32_t>(P);
    pool.maxpool2d.input_w = static_cast<int32_t>(Q);
    g.node(PARITY_OP_MAXPOOL2D, pool, {relu}, "pool");
    g.node(PARITY_OP_CONV2D_BWD_DATA, params, {dyv, wv}, "dx");
    g.node(PARITY_OP_CONV2D_BWD_WEIGHT, params, {xv, dyv}, "dw");
    const Graph graph = g.take();
    const std::vector<std::string> outputs{"y", "relu", "pool:0", "pool:1", "dx", "dw:0", "dw:1"};
    std::vector<Tensor> got[2];
    int backend_index = 0;
    for (const char* name : {"ref", "cpu"}) {
      BackendOptions bo;
      bo.threads = 2;
      auto backend = create_backend(name, bo);
      CompiledStep step(*backend, graph, outputs);
      step.write("x", cast_tensor(x, DType::bf16));
      step.write("w", cast_tensor(w, DType::bf16));
      step.write("b", b);
      step.write("dy", cast_tensor(dy, DType::bf16));
      step.execute();
      for (const std::string& out : outputs) got[backend_index].push_back(step.read(out));
      ++backend_index;
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      ASSERT_EQ(got[0][i].nbytes(), got[1][i].nbytes()) << outputs[i];
      EXPECT_EQ(std::memcmp(got[0][i].data(), got[1][i].data(), got[0][i].nbytes()), 0) << outputs[i];
    }
  }
}

// The seed CNN (docs/autocast.md's pass by hand): x and every weight cast to `half`, biases f32,
// logits cast back to f32 for the loss; gradients reach the f32 parameters through the casts.
Graph seed_cnn_step(DType half) {
  GraphBuilder b;
  const Value x = b.cast(b.input("x", Shape{4, 1, 28, 28}), half, "x.half");
  auto w = [&](const std::string& name, const Shape& shape) { return b.cast(b.parameter(name, shape), half, name + ".half"); };
  Value h = b.conv2d(x, w("conv1.weight", Shape{16, 1, 3, 3}), b.parameter("conv1.bias", Shape{16}), 1, 1, "conv1");
  h = b.maxpool2d(b.relu(h, "relu1"), 2, 2, "pool1");
  h = b.conv2d(h, w("conv2.weight", Shape{32, 16, 3, 3}), b.parameter("conv2.bias", Shape{32}), 1, 1, "conv2");
  h = b.flatten(b.maxpool2d(b.relu(h, "relu2"), 2, 2, "pool2"), "flat");
  h = b.relu(b.linear(h, w("fc1.weight", Shape{128, 32 * 7 * 7}), b.parameter("fc1.bias", Shape{128}), "fc1"), "relu3");
  h = b.linear(h, w("fc2.weight", Shape{10, 128}), b.parameter("fc2.bias", Shape{10}), "fc2");
  const Value loss = b.softmax_xent(b.cast(h, DType::f32, "logits"), b.input("y", Shape{4}, DType::i32), "loss");
  return differentiate(b.graph(), loss, nullptr);
}

const std::vector<std::pair<std::string, Shape>> kSeedParams = {
    {"conv1.weight", Shape{16, 1, 3, 3}}, {"conv1.bias", Shape{16}},         {"conv2.weight", Shape{32, 16, 3, 3}},
    {"conv2.bias", Shape{32}},            {"fc1.weight", Shape{128, 1568}},  {"fc1.bias", Shape{128}},
    {"fc2.weight", Shape{10, 128}},       {"fc2.bias", Shape{10}}};

std::vector<std::string> seed_keep() {
  std::vector<std::string> keep{"loss", "fc2"};
  for (const auto& p : kSeedParams) keep.push_back(grad_name(p.first));
  return keep;
}

std::vector<Tensor> run_seed_step(const std::string& backend, int threads, DType half) {
  BackendOptions bo;
  bo.threads = threads;
  auto be = create_backend(backend, bo);
  const std::vector<std::string> keep = seed_keep();
  CompiledStep step(*be, seed_cnn_step(half), keep);
  std::mt19937 rng(7);
  for (const auto& [name, shape] : kSeedParams) {
    const int64_t fan_in = shape.numel() / shape[0];
    const float bound = 1.0f / std::sqrt(static_cast<float>(shape.rank() == 1 ? 16 : fan_in));
    std::uniform_real_distribution<float> u(-bound, bound);
    Tensor t(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
    step.write(name, t);
  }
  std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
  Tensor x(Shape{4, 1, 28, 28}, DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = pixel(rng);
  Tensor y(Shape{4}, DType::i32);
  for (int i = 0; i < 4; ++i) y.i32()[i] = (3 * i + 1) % 10;
  step.write("x", x);
  step.write("y", y);
  step.execute();
  std::vector<Tensor> out;
  for (const std::string& name : keep) out.push_back(step.read(name));
  return out;
}

class HalfSeedCnn : public ::testing::TestWithParam<DType> {};

// Every kept value of the step against ref's, at the step tolerance of its dtype: inputs of each
// node already differ by the half roundings of the nodes before it (ops/op_rule.cpp). The
// gradients are f32 (the casts' backward widens dw exactly), compared at the half step bound.
TEST_P(HalfSeedCnn, TrainingStepOnCpuAgreesWithRef) {
  const DType half = GetParam();
  const std::vector<Tensor> cpu = run_seed_step("cpu", 2, half);
  const std::vector<Tensor> ref = run_seed_step("ref", 1, half);
  const std::vector<std::string> keep = seed_keep();
  ASSERT_EQ(cpu[1].dtype(), half);  // fc2's output is in the half dtype
  const double bound = ops::tolerance_for(ops::rule(PARITY_OP_LINEAR), half).step_nmse;
  for (size_t i = 0; i < keep.size(); ++i) {
    const TensorDiff d = compare_tensors(cpu[i], ref[i], bound);
    EXPECT_TRUE(d.pass) << keep[i] << ": nmse " << d.nmse << " (limit " << bound << "), max abs " << d.max_abs;
    double norm = 0;
    for (int64_t k = 0; k < ref[i].numel(); ++k)
      norm += ref[i].dtype() == DType::f32 ? std::fabs(ref[i].f32()[k]) : 0.0;
    if (ref[i].dtype() == DType::f32) { EXPECT_GT(norm, 0.0) << keep[i] << " is all zeros: nothing was compared"; }
  }
}

TEST_P(HalfSeedCnn, CpuStepIsBitwiseTheSameAtOneAndTwoThreads) {
  const std::vector<Tensor> one = run_seed_step("cpu", 1, GetParam());
  const std::vector<Tensor> two = run_seed_step("cpu", 2, GetParam());
  const std::vector<std::string> keep = seed_keep();
  for (size_t i = 0; i < keep.size(); ++i) {
    ASSERT_EQ(one[i].nbytes(), two[i].nbytes()) << keep[i];
    EXPECT_EQ(std::memcmp(one[i].data(), two[i].data(), one[i].nbytes()), 0) << keep[i];
  }
}

// docs/autocast.md's one CAST per parameter shared by all its readers: the half copy's gradient
// is the sum over its readers, which autodiff makes with ADD in the half dtype, then widened once.
TEST_P(HalfSeedCnn, AHalfValueReadTwiceHasItsGradientSummedInItsDtype) {
  const DType half = GetParam();
  GraphBuilder b;
  const Value x = b.cast(b.input("x", Shape{3, 6}), half, "x.half");
  const Value w = b.cast(b.parameter("w", Shape{4, 6}), half, "w.half");
  const Value bias = b.parameter("b", Shape{4});
  const Value y = b.add(b.linear(x, w, bias, "l1"), b.relu(b.linear(x, w, bias, "l2"), "r"), "sum");
  const Value loss = b.softmax_xent(b.cast(y, DType::f32, "logits"), b.input("labels", Shape{3}, DType::i32), "loss");
  const Graph g = differentiate(b.graph(), loss, nullptr);
  bool half_add = false;
  for (const Node& n : g.nodes())
    half_add = half_add || (n.op == PARITY_OP_ADD && n.name.find(grad_name("w.half")) != std::string::npos &&
                            g.value(Value{n.outputs[0]}).dtype == half);
  EXPECT_TRUE(half_add) << "no ADD in " << to_string(half) << " sums w.half's gradient";
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto random = [&](const Shape& shape) {
    Tensor t(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
    return t;
  };
  const Tensor xv = random(Shape{3, 6}), wv = random(Shape{4, 6}), bv = random(Shape{4});
  const Tensor labels = Tensor::from_i32(Shape{3}, {0, 3, 1});
  std::vector<Tensor> grads;
  for (const char* name : {"cpu", "ref"}) {
    auto backend = create_backend(name);
    CompiledStep step(*backend, g, {grad_name("w")});
    step.write("x", xv);
    step.write("w", wv);
    step.write("b", bv);
    step.write("labels", labels);
    step.execute();
    grads.push_back(step.read(grad_name("w")));
  }
  const double bound = ops::tolerance_for(ops::rule(PARITY_OP_ADD), half).step_nmse;
  const TensorDiff d = compare_tensors(grads[0], grads[1], bound);
  EXPECT_TRUE(d.pass) << "nmse " << d.nmse << " (limit " << bound << ")";
  double norm = 0;
  for (int64_t i = 0; i < grads[1].numel(); ++i) norm += std::fabs(grads[1].f32()[i]);
  EXPECT_GT(norm, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dtype, HalfSeedCnn, ::testing::Values(DType::bf16, DType::f16),
                         [](const ::testing::TestParamInfo<DType>& info) { return to_string(info.param); });

}  // namespace
}  // namespace parity
