// tests/test_cpu_conv_direct_rows.cpp — the cpu backend's direct f32 convolutions: the one over
// flattened padded rows (backends/cpu/conv2d_direct_rows.cpp) as conv2d's forward (bias, fused
// relu) and flipped backward-data, and the channels-last backward-weight
// (conv2d_bwd_weight_nhwc.cpp): against ref on odd shapes, vectors spanning rows, a partial last
// vector, R != S, padding 0 to kernel - 1, K not a multiple of 16; a non-finite input in the
// dropped lanes stays out of the valid ones; bitwise the same on 1 and 2 threads; a 2x2 max-pool
// the conv runs row pair by row pair (NodeFusion::pool_after) gives the unfused pool's bits.
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "graph/compiled_step.h"
#include "parity/check.h"
#include "parity/parity.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

using Tensors = std::map<std::string, Tensor>;

Tensors run_graph(const Graph& graph, const std::string& backend, int threads, const Tensors& in,
                  const std::string& output) {
  BackendOptions options;
  options.threads = threads;
  auto be = create_backend(backend, options);
  Plan plan(graph, {output});
  auto exe = be->compile(plan.c_plan(), {}, nullptr);
  for (const auto& [name, t] : in) exe->write(plan.value(name), t.data(), t.nbytes());
  exe->execute();
  Tensors out;
  Tensor t(graph.value(graph.find(output)).shape, DType::f32);
  exe->read(plan.value(output), t.data(), t.nbytes());
  out[output] = std::move(t);
  return out;
}

struct ConvCase {
  int64_t N, C, H, W, K, R, S;
  int pad_h, pad_w;
  int stride = 1;
  std::string str() const {
    return fmt::format("x[{},{},{},{}] w[{},{},{},{}] stride {} pad {},{}", N, C, H, W, K, C, R, S, stride, pad_h, pad_w);
  }
  int64_t P() const { return (H + 2 * pad_h - R) / stride + 1; }
  int64_t Q() const { return (W + 2 * pad_w - S) / stride + 1; }
};

// float32 sums of at most a few hundred products of values in [-1, 1] against ref's float64: an
// NMSE near 1e-12; one tap missing or read from the wrong place moves it by about 1/n, far above.
constexpr double kThreshold = 1e-9;

// The forward y = relu(conv(x, w) + b) (relu and bias each optional), or the backward-data dx.
Graph forward_graph(const ConvCase& c, bool bias, bool relu) {
  GraphBuilder b;
  Value x = b.input("x", Shape{c.N, c.C, c.H, c.W});
  Value w = b.input("w", Shape{c.K, c.C, c.R, c.S});
  Conv2dOptions o;
  o.stride_h = o.stride_w = c.stride;
  o.pad_h = c.pad_h;
  o.pad_w = c.pad_w;
  Value y = bias ? b.conv2d(x, w, b.input("b", Shape{c.K}), o, "conv") : b.conv2d(x, w, o, "conv");
  if (relu) y = b.relu(y, "relu");
  b.rename(y, "y");
  return b.take();
}

Graph backward_data_graph(const ConvCase& c) {
  GraphBuilder b;
  Value dy = b.input("dy", Shape{c.N, c.K, c.P(), c.Q()});
  Value w = b.input("w", Shape{c.K, c.C, c.R, c.S});
  parity_op_params cp{};
  cp.conv2d.stride_h = cp.conv2d.stride_w = c.stride;
  cp.conv2d.pad_h = c.pad_h;
  cp.conv2d.pad_w = c.pad_w;
  cp.conv2d.input_h = static_cast<int32_t>(c.H);
  cp.conv2d.input_w = static_cast<int32_t>(c.W);
  b.rename(b.node(PARITY_OP_CONV2D_BWD_DATA, cp, {dy, w}, "conv.bwd_data")[0], "y");
  return b.take();
}

// dw (and db when `bias`) of CONV2D_BWD_WEIGHT(x, dy); the output named y is dw.
Graph backward_weight_graph(const ConvCase& c, bool bias) {
  GraphBuilder b;
  Value x = b.input("x", Shape{c.N, c.C, c.H, c.W});
  Value dy = b.input("dy", Shape{c.N, c.K, c.P(), c.Q()});
  parity_op_params cp{};
  cp.conv2d.stride_h = cp.conv2d.stride_w = c.stride;
  cp.conv2d.pad_h = c.pad_h;
  cp.conv2d.pad_w = c.pad_w;
  cp.conv2d.kernel_h = static_cast<int32_t>(c.R);
  cp.conv2d.kernel_w = static_cast<int32_t>(c.S);
  cp.conv2d.without_bias = bias ? 0 : 1;
  std::vector<Value> out = b.node(PARITY_OP_CONV2D_BWD_WEIGHT, cp, {x, dy}, "conv.bwd_weight");
  b.rename(out[0], "y");
  if (bias) b.rename(out[1], "db");
  return b.take();
}

Tensors random_inputs(const Graph& graph, uint32_t seed, std::initializer_list<const char*> names) {
  std::mt19937 rng(seed);
  Tensors in;
  for (const char* name : names) in[name] = random_tensor(rng, graph.value(graph.find(name)).shape);
  return in;
}

// cpu on 2 threads within kThreshold of ref with the same non-finite elements, and bitwise equal
// to cpu on 1 thread.
void expect_good(const Graph& graph, const Tensors& in, const std::string& what) {
  const Tensors two = run_graph(graph, "cpu", 2, in, "y"), one = run_graph(graph, "cpu", 1, in, "y");
  const Tensors ref = run_graph(graph, "ref", 1, in, "y");
  const TensorDiff d = compare_tensors(two.at("y"), ref.at("y"), kThreshold);
  EXPECT_TRUE(d.pass) << what << ": nmse " << d.nmse << ", " << d.nonfinite_mismatch
                      << " elements finite on one side only";
  EXPECT_EQ(0, std::memcmp(one.at("y").data(), two.at("y").data(), two.at("y").nbytes()))
      << what << ": 1 and 2 threads differ";
}

// Widths 11 (rows of 12, vectors spanning rows), 17 and 30; K 8, 16, 24 and 32; the stride-2 case
// takes the GEMM path, for comparison.
const ConvCase kForwardCases[] = {
    {3, 3, 13, 11, 8, 3, 3, 1, 1},  {2, 5, 9, 17, 24, 5, 5, 2, 2},  {2, 16, 14, 14, 32, 3, 3, 1, 1},
    {2, 1, 7, 30, 16, 3, 5, 0, 2},  {3, 2, 6, 6, 16, 1, 1, 0, 0},   {1, 4, 5, 40, 8, 3, 3, 2, 2},
    {2, 3, 12, 12, 16, 3, 3, 1, 1, 2},
};

TEST(CpuConvDirectRows, ForwardMatchesRef) {
  for (const ConvCase& c : kForwardCases)
    for (const auto& [bias, relu] : {std::pair{true, true}, {true, false}, {false, true}, {false, false}}) {
      const Graph g = forward_graph(c, bias, relu);
      const Tensors in = bias ? random_inputs(g, 3, {"x", "w", "b"}) : random_inputs(g, 3, {"x", "w"});
      expect_good(g, in, fmt::format("{} bias {} relu {}", c.str(), bias, relu));
    }
}

// The flipped conv runs on the direct kernel when C is a multiple of 16 (its output channels).
const ConvCase kBackwardDataCases[] = {
    {2, 16, 9, 13, 8, 3, 3, 1, 1}, {2, 32, 14, 14, 16, 3, 3, 1, 1}, {1, 16, 7, 19, 24, 5, 5, 2, 2},
    {2, 16, 8, 10, 8, 3, 3, 0, 0}, {2, 16, 11, 11, 8, 3, 3, 1, 1, 2},
};

TEST(CpuConvDirectRows, BackwardDataMatchesRef) {
  for (const ConvCase& c : kBackwardDataCases) {
    const Graph g = backward_data_graph(c);
    expect_good(g, random_inputs(g, 5, {"dy", "w"}), c.str());
  }
}

// The channels-last backward-weight (conv2d_bwd_weight_nhwc.cpp) takes S = 3 and C a multiple of
// 16: R 1, 3 and 5, padding 0 to 2 (also past the kernel), K 8 to 32, odd sizes, batches of 1 to
// 5 images (the batch chunks hold one or several); the stride-2 and S = 5 cases take other paths.
const ConvCase kBackwardWeightCases[] = {
    {3, 16, 14, 14, 32, 3, 3, 1, 1}, {5, 32, 9, 13, 8, 3, 3, 0, 2},  {1, 16, 7, 19, 24, 5, 3, 2, 1},
    {2, 16, 6, 5, 16, 1, 3, 0, 0},   {2, 16, 11, 11, 8, 3, 3, 1, 1, 2}, {2, 16, 9, 9, 8, 3, 5, 1, 2},
    {2, 16, 5, 4, 8, 3, 3, 3, 3},
};

TEST(CpuConvDirectRows, BackwardWeightMatchesRef) {
  for (const ConvCase& c : kBackwardWeightCases)
    for (const bool bias : {true, false}) {
      const Graph g = backward_weight_graph(c, bias);
      expect_good(g, random_inputs(g, 7, {"x", "dy"}), fmt::format("{} bias {}", c.str(), bias));
    }
}

// An infinity at the end of an image row is read by the dropped lanes (q >= Q) of the vectors
// around it: valid outputs get inf or NaN exactly where ref has them, and no others.
TEST(CpuConvDirectRows, InfinityStaysInItsWindows) {
  const ConvCase c{2, 3, 13, 11, 8, 3, 3, 1, 1};
  const Graph g = forward_graph(c, true, false);
  Tensors in = random_inputs(g, 9, {"x", "w", "b"});
  in["x"].f32()[((1 * c.C + 2) * c.H + 6) * c.W + (c.W - 1)] = INFINITY;
  in["x"].f32()[((0 * c.C + 0) * c.H + 0) * c.W + 0] = -INFINITY;
  expect_good(g, in, "infinite x");
}

// conv (+ b) -> relu -> 2x2 max-pool: the cpu backend runs the pool inside the conv, each pair of
// y rows as soon as every channel has it (NodeFusion::pool_after). Its values and indices must
// be those of the same pool run alone on the conv's output, at 1 and 2 threads. Odd heights (a
// last y row no window reads), widths whose rows span vectors, K not a multiple of 8, and an
// infinity and a NaN in x.
TEST(CpuConvDirectRows, PoolInsideTheConvGivesTheUnfusedPoolsBits) {
  const ConvCase cases[] = {{3, 3, 13, 11, 12, 3, 3, 1, 1}, {2, 16, 14, 14, 32, 3, 3, 1, 1}, {2, 1, 28, 28, 8, 3, 3, 1, 1},
                            {2, 5, 9, 17, 24, 5, 5, 2, 2}};
  for (const ConvCase& c : cases) {
    GraphBuilder b;
    const Value x = b.input("x", Shape{c.N, c.C, c.H, c.W}), w = b.input("w", Shape{c.K, c.C, c.R, c.S});
    Conv2dOptions o;
    o.pad_h = c.pad_h;
    o.pad_w = c.pad_w;
    const Value y = b.relu(b.conv2d(x, w, b.input("b", Shape{c.K}), o, "conv"), "relu");
    parity_op_params pp{};
    pp.maxpool2d.kernel_h = pp.maxpool2d.kernel_w = pp.maxpool2d.stride_h = pp.maxpool2d.stride_w = 2;
    pp.maxpool2d.input_h = static_cast<int32_t>(c.P());
    pp.maxpool2d.input_w = static_cast<int32_t>(c.Q());
    b.node(PARITY_OP_MAXPOOL2D, pp, {y}, "pool");
    const Graph fused = b.take();
    GraphBuilder alone_builder;
    alone_builder.node(PARITY_OP_MAXPOOL2D, pp, {alone_builder.input("y", Shape{c.N, c.K, c.P(), c.Q()})}, "pool");
    const Graph alone = alone_builder.take();
    Tensors in = random_inputs(fused, 11, {"x", "w", "b"});
    in["x"].f32()[c.H * c.W / 2] = INFINITY;
    in["x"].f32()[(c.N - 1) * c.C * c.H * c.W + 3] = NAN;
    for (const int threads : {1, 2}) {
      BackendOptions options;
      options.threads = threads;
      auto cpu = create_backend("cpu", options);
      CompiledStep step(*cpu, fused, {"relu", "pool:0", "pool:1"});
      for (const char* name : {"x", "w", "b"}) step.write(name, in.at(name));
      step.execute();
      CompiledStep pool(*cpu, alone, {"pool:0", "pool:1"});
      pool.write("y", step.read("relu"));
      pool.execute();
      for (const char* out : {"pool:0", "pool:1"}) {
        const Tensor got = step.read(out), want = pool.read(out);
        ASSERT_EQ(got.nbytes(), want.nbytes());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.nbytes())) << c.str() << " " << out << ", " << threads << " threads";
      }
    }
  }
}

}  // namespace
}  // namespace parity::testing
