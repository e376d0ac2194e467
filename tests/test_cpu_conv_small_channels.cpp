// tests/test_cpu_conv_small_channels.cpp — the cpu backend's conv2d routes for few channels and
// small images (LeNet-5's shapes): the direct-rows kernel's narrower last channel block (K not a
// multiple of 8) as forward and as the flipped backward-data (C not a multiple of 8), the direct
// backward-weight with 2 or 3 channels a block (S = 5), and the backward-weight with lanes along a
// chunk's images (conv2d_bwd_weight_batch_lanes.cpp: Q < 16, partial last chunks): against ref,
// with an infinity, and bitwise the same on 1 and 2 threads.
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "parity/check.h"
#include "parity/parity.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

using Tensors = std::map<std::string, Tensor>;

// Output "y" (and "db" when the graph has it) of one run.
Tensors run_graph(const Graph& graph, const std::string& backend, int threads, const Tensors& in) {
  BackendOptions options;
  options.threads = threads;
  auto be = create_backend(backend, options);
  std::vector<std::string> outputs{"y"};
  if (graph.has("db")) outputs.push_back("db");
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

struct ConvCase {
  int64_t N, C, H, W, K, R, S;
  int pad;
  std::string str() const { return fmt::format("x[{},{},{},{}] w[{},{},{},{}] pad {}", N, C, H, W, K, C, R, S, pad); }
  int64_t P() const { return H + 2 * pad - R + 1; }
  int64_t Q() const { return W + 2 * pad - S + 1; }
  parity_op_params params() const {
    parity_op_params cp{};
    cp.conv2d.stride_h = cp.conv2d.stride_w = 1;
    cp.conv2d.pad_h = cp.conv2d.pad_w = pad;
    cp.conv2d.input_h = static_cast<int32_t>(H);
    cp.conv2d.input_w = static_cast<int32_t>(W);
    cp.conv2d.kernel_h = static_cast<int32_t>(R);
    cp.conv2d.kernel_w = static_cast<int32_t>(S);
    return cp;
  }
};

// float32 sums of at most a few thousand products of values in [-1, 1] against ref's float64;
// one tap missing or misplaced moves the NMSE by about 1/n, far above.
constexpr double kThreshold = 1e-9;

Graph forward_graph(const ConvCase& c) {
  GraphBuilder b;
  Value x = b.input("x", Shape{c.N, c.C, c.H, c.W});
  Value w = b.input("w", Shape{c.K, c.C, c.R, c.S});
  Conv2dOptions o;
  o.pad_h = o.pad_w = c.pad;
  b.rename(b.conv2d(x, w, b.input("b", Shape{c.K}), o, "conv"), "y");
  return b.take();
}

Graph backward_data_graph(const ConvCase& c) {
  GraphBuilder b;
  Value dy = b.input("dy", Shape{c.N, c.K, c.P(), c.Q()});
  Value w = b.input("w", Shape{c.K, c.C, c.R, c.S});
  b.rename(b.node(PARITY_OP_CONV2D_BWD_DATA, c.params(), {dy, w}, "conv.bwd_data")[0], "y");
  return b.take();
}

// dw is "y", db "db".
Graph backward_weight_graph(const ConvCase& c) {
  GraphBuilder b;
  Value x = b.input("x", Shape{c.N, c.C, c.H, c.W});
  Value dy = b.input("dy", Shape{c.N, c.K, c.P(), c.Q()});
  std::vector<Value> out = b.node(PARITY_OP_CONV2D_BWD_WEIGHT, c.params(), {x, dy}, "conv.bwd_weight");
  b.rename(out[0], "y");
  b.rename(out[1], "db");
  return b.take();
}

Tensors random_inputs(const Graph& graph, uint32_t seed, std::initializer_list<const char*> names) {
  std::mt19937 rng(seed);
  Tensors in;
  for (const char* name : names) in[name] = random_tensor(rng, graph.value(graph.find(name)).shape);
  return in;
}

// Every output: cpu on 2 threads within kThreshold of ref with the same non-finite elements, and
// bitwise equal to cpu on 1 thread.
void expect_good(const Graph& graph, const Tensors& in, const std::string& what) {
  const Tensors two = run_graph(graph, "cpu", 2, in), one = run_graph(graph, "cpu", 1, in);
  const Tensors ref = run_graph(graph, "ref", 1, in);
  for (const auto& [name, t] : two) {
    const TensorDiff d = compare_tensors(t, ref.at(name), kThreshold);
    EXPECT_TRUE(d.pass) << what << " " << name << ": nmse " << d.nmse << ", " << d.nonfinite_mismatch
                        << " elements finite on one side only";
    EXPECT_EQ(0, std::memcmp(one.at(name).data(), t.data(), t.nbytes())) << what << " " << name << ": 1 and 2 threads differ";
  }
}

// K 6 (LeNet-5's c1), 1, 3, 7 and 13 (a whole block of 8, then 5).
TEST(CpuConvSmallChannels, ForwardNarrowChannelBlock) {
  for (const ConvCase& c : {ConvCase{4, 1, 28, 28, 6, 5, 5, 2}, ConvCase{2, 3, 9, 11, 1, 3, 3, 1},
                            ConvCase{3, 2, 13, 7, 3, 5, 5, 0}, ConvCase{2, 5, 10, 10, 7, 3, 3, 1},
                            ConvCase{2, 4, 8, 17, 13, 5, 5, 2}}) {
    const Graph g = forward_graph(c);
    expect_good(g, random_inputs(g, 3, {"x", "w", "b"}), c.str());
  }
}

// C 6 (LeNet-5's c2: the flipped conv has 6 output channels), 1, 3, 5 and 12.
TEST(CpuConvSmallChannels, BackwardDataNarrowChannelBlock) {
  for (const ConvCase& c : {ConvCase{4, 6, 14, 14, 16, 5, 5, 0}, ConvCase{2, 1, 9, 9, 8, 3, 3, 1},
                            ConvCase{3, 3, 10, 7, 16, 5, 5, 2}, ConvCase{2, 5, 9, 11, 4, 3, 3, 0},
                            ConvCase{2, 12, 8, 8, 6, 3, 3, 1}}) {
    const Graph g = backward_data_graph(c);
    expect_good(g, random_inputs(g, 5, {"dy", "w"}), c.str());
  }
}

// S = 5 and K not a multiple of 4 (LeNet-5's c1: K = 6, 3 a block; K = 10, 2 a block) on rows of
// 16 outputs or more; Q < 16 cases go to the batch-lane kernel below.
TEST(CpuConvSmallChannels, BackwardWeightDirectNarrowBlocks) {
  for (const ConvCase& c : {ConvCase{20, 1, 28, 28, 6, 5, 5, 2}, ConvCase{3, 2, 20, 19, 10, 5, 5, 1},
                            ConvCase{2, 3, 18, 20, 9, 5, 5, 0}}) {
    const Graph g = backward_weight_graph(c);
    expect_good(g, random_inputs(g, 7, {"x", "dy"}), c.str());
  }
}

// Lanes along the images: N 40 (chunks of 16, 16, 8), 17, 16, 5 and 1; S 3 and 5, R != S,
// padding 0 to 2; LeNet-5's c2 first.
TEST(CpuConvSmallChannels, BackwardWeightBatchLanes) {
  for (const ConvCase& c : {ConvCase{40, 6, 14, 14, 16, 5, 5, 0}, ConvCase{17, 3, 9, 9, 8, 3, 3, 1},
                            ConvCase{16, 2, 12, 11, 4, 5, 5, 2}, ConvCase{5, 4, 7, 7, 8, 3, 3, 0},
                            ConvCase{1, 2, 6, 10, 4, 5, 5, 1}, ConvCase{18, 2, 10, 12, 8, 5, 3, 2}}) {
    const Graph g = backward_weight_graph(c);
    expect_good(g, random_inputs(g, 9, {"x", "dy"}), c.str());
  }
}

// An infinity in one image of a partial chunk reaches exactly the dw elements ref has non-finite;
// the idle lanes (no image) add nothing.
TEST(CpuConvSmallChannels, BackwardWeightBatchLanesInfinity) {
  const ConvCase c{5, 2, 9, 9, 4, 5, 5, 1};
  const Graph g = backward_weight_graph(c);
  Tensors in = random_inputs(g, 11, {"x", "dy"});
  in["x"].f32()[((3 * c.C + 1) * c.H + 4) * c.W + 8] = INFINITY;
  expect_good(g, in, "infinite x");
}

}  // namespace
}  // namespace parity::testing
