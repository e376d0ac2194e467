// tests/test_cpu_sparse_dy.cpp — the cpu backend's conv backward for a max-pool's gradient
// (backends/cpu/conv2d_sparse_dy.cpp): it matches ref, keeps IEEE's 0 * inf = NaN terms that
// visiting only dy's nonzeros would drop, and is bitwise the same on 1 and 2 threads.
#include <cmath>
#include <map>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "parity/check.h"
#include "parity/parity.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

using Tensors = std::map<std::string, Tensor>;

// Runs `graph` once on `backend` from `in` and returns the f32 values named in `outputs`.
Tensors run_graph(const Graph& graph, const std::string& backend, int threads, const Tensors& in,
                  const std::vector<std::string>& outputs) {
  BackendOptions options;
  options.threads = threads;
  auto be = create_backend(backend, options);
  Plan plan(graph, outputs);
  auto exe = be->compile(plan.c_plan(), {}, nullptr);
  for (const auto& [name, t] : in) exe->write(plan.value(name), t.data(), t.nbytes());
  exe->execute();
  Tensors out;
  for (const std::string& name : outputs) {
    Tensor t(graph.value(graph.find(name)).shape, DType::f32);
    exe->read(plan.value(name), t.data(), t.nbytes());
    out[name] = std::move(t);
  }
  return out;
}

// Appends CONV2D_BWD_WEIGHT(x, dy) with its outputs named dw and db.
void add_bwd_weight(GraphBuilder& b, Value x, Value dy, const parity_op_params& cp) {
  std::vector<Value> dw_db = b.node(PARITY_OP_CONV2D_BWD_WEIGHT, cp, {x, dy}, "conv.bwd_weight");
  b.rename(dw_db[0], "dw");
  b.rename(dw_db[1], "db");
}

// Values uniform in [-1, 1) for the named f32 inputs of `graph`.
Tensors random_inputs(const Graph& graph, std::mt19937& rng, std::initializer_list<const char*> names) {
  Tensors in;
  for (const char* name : names) in[name] = random_tensor(rng, graph.value(graph.find(name)).shape);
  return in;
}

// float32 sums of at most a few hundred products of values in [-1, 1] against ref's float64: an
// element's relative error is around sqrt(n) * 2^-24, an NMSE near 1e-12; one term missing or
// added twice moves it by about 1/n, far above 1e-9.
constexpr double kThreshold = 1e-9;

// cpu on 2 threads against ref, every output within kThreshold with the same non-finite elements.
void expect_matches_ref(const Graph& graph, const Tensors& in, const std::vector<std::string>& outputs,
                        const std::string& what) {
  const Tensors cpu = run_graph(graph, "cpu", 2, in, outputs), ref = run_graph(graph, "ref", 1, in, outputs);
  for (const std::string& name : outputs) {
    const TensorDiff d = compare_tensors(cpu.at(name), ref.at(name), kThreshold);
    EXPECT_TRUE(d.pass) << what << ": " << name << " nmse " << d.nmse << ", " << d.nonfinite_mismatch
                        << " elements finite on one side only";
  }
}

// x -> (conv backward) <- relu_bwd(r, maxpool2d_bwd(dp, idx of maxpool(r))), with w; the conv
// backward ops are given their dy explicitly, so x and w can hold values that never reach it.
// Widths 37 and 13 give rows of 3 vectors with a tail and of one partial vector.
struct PoolGradientGraph {
  static constexpr int64_t N = 3, C = 32, K = 8, H = 9;
  int64_t W;
  int pad;
  Graph graph;

  PoolGradientGraph(int64_t width, int padding) : W(width), pad(padding) {
    const int64_t P = H + 2 * pad - 2, Q = W + 2 * pad - 2;
    GraphBuilder b;
    Value x = b.input("x", Shape{N, C, H, W});
    Value w = b.input("w", Shape{K, C, 3, 3});
    Value r = b.input("r", Shape{N, K, P, Q});
    Value pooled = b.maxpool2d(r, 2, 2, "pool");
    const Node& pool = b.graph().nodes().back();
    const Value idx{pool.outputs[1]};
    parity_op_params pool_params = pool.params;
    pool_params.maxpool2d.input_h = static_cast<int32_t>(P);  // for the backward's shape inference
    pool_params.maxpool2d.input_w = static_cast<int32_t>(Q);
    Value dp = b.input("dp", b.graph().value(pooled).shape);
    Value dr = b.node(PARITY_OP_MAXPOOL2D_BWD, pool_params, {dp, idx}, "pool.bwd")[0];
    Value dy = b.node(PARITY_OP_RELU_BWD, {}, {r, dr}, "relu.bwd")[0];
    parity_op_params cp{};
    cp.conv2d = {1, 1, pad, pad, static_cast<int32_t>(H), static_cast<int32_t>(W), 3, 3};
    b.rename(b.node(PARITY_OP_CONV2D_BWD_DATA, cp, {dy, w}, "conv.bwd_data")[0], "dx");
    add_bwd_weight(b, x, dy, cp);
    graph = b.take();
  }

  Tensors inputs(uint32_t seed) const {
    std::mt19937 rng(seed);
    return random_inputs(graph, rng, {"x", "w", "r", "dp"});
  }

  Tensors run(const std::string& backend, int threads, const Tensors& in) const {
    return run_graph(graph, backend, threads, in, {"dx", "dw", "db"});
  }
};

void expect_matches_ref(const PoolGradientGraph& g, const Tensors& in, const std::string& what) {
  expect_matches_ref(g.graph, in, {"dx", "dw", "db"}, what);
}

TEST(CpuSparseDy, PoolGradientsMatchRef) {
  for (const auto& [width, pad] : {std::pair<int64_t, int>{37, 1}, {13, 0}}) {
    PoolGradientGraph g(width, pad);
    expect_matches_ref(g, g.inputs(7), fmt::format("width {} pad {}", width, pad));
  }
}

TEST(CpuSparseDy, KeepsTheNanOfZeroTimesInfinity) {
  PoolGradientGraph g(37, 1);
  // An infinite x: each dw[k, 5, r, s] has one term dy * inf, so it is inf where that dy is
  // nonzero and NaN where it is 0 (0 * inf): a kernel that skips dy's zeros would leave those
  // finite.
  auto in = g.inputs(11);
  in["x"].f32()[((1 * g.C + 5) * g.H + 4) * g.W + 20] = INFINITY;
  const auto ref = g.run("ref", 1, in);
  int64_t nonfinite = 0, nan = 0;
  for (int64_t i = 0; i < ref.at("dw").numel(); ++i) {
    nonfinite += !std::isfinite(ref.at("dw").f32()[i]);
    nan += std::isnan(ref.at("dw").f32()[i]);
  }
  EXPECT_EQ(nonfinite, g.K * 9) << "the test's premise: every k and tap of channel 5 reads the infinity";
  EXPECT_GT(nan, g.K * 9 / 2) << "the test's premise: most of those terms have a zero dy";
  expect_matches_ref(g, in, "infinite x");

  // A NaN weight makes dx NaN wherever the weight's terms reach, dy zero or not.
  in = g.inputs(12);
  in["w"].f32()[(3 * g.C + 9) * 9 + 4] = NAN;
  expect_matches_ref(g, in, "NaN weight");
}

TEST(CpuSparseDy, OneAndTwoThreadsAgreeBitwise) {
  PoolGradientGraph g(37, 1);
  const auto in = g.inputs(5);
  const auto one = g.run("cpu", 1, in), two = g.run("cpu", 2, in);
  for (const char* name : {"dx", "dw", "db"}) EXPECT_TRUE(bitwise_equal(one.at(name), two.at(name))) << name;
}

// x -> CONV2D_BWD_WEIGHT <- [RELU_BWD(r, .)] <- MAXPOOL2D_BWD(dp, idx), the conv the only reader:
// the cpu backend fuses the three and reads dy in its pooled form. idx is an input, any index
// in its window (the semantics do not need the argmax), or elsewhere in the plane to force the
// unfused route. Channels 1, 3, 6 and 16 give patch rows of 1, 1, 2 and 3 vectors.
struct PooledFormGraph {
  static constexpr int64_t N = 3, K = 8, H = 9, W = 37;
  int64_t C;
  Graph graph;

  // forward_pool: idx comes from a MAXPOOL2D of r (relu's output), whose pooled values the
  // fused node then reads instead of gathering r at the indices.
  PooledFormGraph(int64_t channels, bool relu, bool forward_pool = false) : C(channels) {
    const int64_t P = H, Q = W, P2 = P / 2, Q2 = Q / 2;
    GraphBuilder b;
    Value x = b.input("x", Shape{N, C, H, W});
    Value r = b.input("r", Shape{N, K, P, Q});
    Value dp = b.input("dp", Shape{N, K, P2, Q2});
    Value idx;
    if (forward_pool) {
      b.maxpool2d(r, 2, 2, "pool");
      idx = Value{b.graph().nodes().back().outputs[1]};
    } else {
      idx = b.input("idx", Shape{N, K, P2, Q2}, DType::i32);
    }
    parity_op_params pp{};
    pp.maxpool2d = {2, 2, 2, 2, static_cast<int32_t>(P), static_cast<int32_t>(Q), 0, 0, 0, 0, 0};
    Value dy = b.node(PARITY_OP_MAXPOOL2D_BWD, pp, {dp, idx}, "pool.bwd")[0];
    if (relu) dy = b.node(PARITY_OP_RELU_BWD, {}, {r, dy}, "relu.bwd")[0];
    parity_op_params cp{};
    cp.conv2d = {1, 1, 1, 1, static_cast<int32_t>(H), static_cast<int32_t>(W), 3, 3};
    add_bwd_weight(b, x, dy, cp);
    graph = b.take();
  }

  Tensors inputs(uint32_t seed) const {
    std::mt19937 rng(seed);
    Tensors in = random_inputs(graph, rng, {"x", "r", "dp"});
    if (!graph.has("idx")) return in;
    const Shape& s = graph.value(graph.find("idx")).shape;
    Tensor idx(s, DType::i32);
    std::uniform_int_distribution<int> corner(0, 3);
    for (int64_t plane = 0; plane < s[0] * s[1]; ++plane)
      for (int64_t p = 0; p < s[2]; ++p)
        for (int64_t q = 0; q < s[3]; ++q) {
          const int c = corner(rng);
          idx.i32()[(plane * s[2] + p) * s[3] + q] = static_cast<int32_t>((2 * p + c / 2) * W + 2 * q + c % 2);
        }
    in["idx"] = std::move(idx);
    return in;
  }

  Tensors run(const std::string& backend, int threads, const Tensors& in) const {
    return run_graph(graph, backend, threads, in, {"dw", "db"});
  }

  void expect_matches_ref(const Tensors& in, const std::string& what) const {
    testing::expect_matches_ref(graph, in, {"dw", "db"}, what);
  }
};

TEST(CpuSparseDy, PooledFormMatchesRef) {
  for (int64_t channels : {1, 3, 6, 16})
    for (bool relu : {true, false}) {
      PooledFormGraph g(channels, relu);
      g.expect_matches_ref(g.inputs(3), fmt::format("C {}{}", channels, relu ? " with relu" : ""));
    }
  for (int64_t channels : {3, 16}) {
    PooledFormGraph g(channels, true, true);
    auto in = g.inputs(9);
    for (int64_t i = 0; i < in["r"].numel(); i += 7) in["r"].f32()[i] = 0.0f;  // relu'(0) = 0, and ties
    g.expect_matches_ref(in, fmt::format("C {}, indices and relu mask from the forward pool", channels));
  }
}

TEST(CpuSparseDy, PooledFormFallsBackWhereItCannotBeUsed) {
  PooledFormGraph g(3, true);
  // An index outside its window (but inside the plane): the unfused maxpool backward sends the
  // gradient there.
  auto in = g.inputs(4);
  in["idx"].i32()[17] = 5 * PooledFormGraph::W + 30;
  in["r"].f32()[5 * PooledFormGraph::W + 30] = 1.0f;  // relu passes it
  g.expect_matches_ref(in, "an index outside its window");
  // An infinite x: 0 * inf terms make NaN (see above).
  in = g.inputs(5);
  in["x"].f32()[(1 * g.C + 2) * PooledFormGraph::H * PooledFormGraph::W + 4 * PooledFormGraph::W + 20] = INFINITY;
  g.expect_matches_ref(in, "infinite x");
  // With 16 channels the fallback is the sparse-dy route, which visits every position of an
  // image with an infinite x.
  PooledFormGraph wide(16, true);
  in = wide.inputs(7);
  in["x"].f32()[(2 * wide.C + 11) * PooledFormGraph::H * PooledFormGraph::W + 3 * PooledFormGraph::W + 8] = -INFINITY;
  wide.expect_matches_ref(in, "16 channels, infinite x");
  // NaN and infinite pooled gradients propagate as in the unfused route.
  in = g.inputs(8);
  in["dp"].f32()[40] = NAN;
  in["dp"].f32()[41] = INFINITY;
  g.expect_matches_ref(in, "NaN and inf in the pooled gradient");
  // Thread counts agree bit for bit.
  in = g.inputs(6);
  const auto one = g.run("cpu", 1, in), two = g.run("cpu", 2, in);
  for (const char* name : {"dw", "db"}) EXPECT_TRUE(bitwise_equal(one.at(name), two.at(name))) << name;
}

}  // namespace
}  // namespace parity::testing
