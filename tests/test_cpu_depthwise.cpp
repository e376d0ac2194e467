// tests/test_cpu_depthwise.cpp — the cpu backend's depthwise conv2d
// (backends/cpu/conv2d_depthwise.cpp): forward (bias, fused relu), backward-data and
// backward-weight (with and without db) against ref on the vector paths' shapes (stride_w 1 and
// 2, 3x3 and 5x5 filters, padding 0 to 3, widths below, at and past 8, 16 and 32, odd, channel
// multiplier 1 and 2, batches of 1 to 3, stride_h different from stride_w, dilation, asymmetric
// padding) and the generic loops' (stride 3, 3x2 filters); each bitwise the same on 1 and 2
// threads.
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

Tensor run_graph(const Graph& graph, const std::string& backend, int threads, const Tensors& in,
                 const std::string& output) {
  BackendOptions options;
  options.threads = threads;
  auto be = create_backend(backend, options);
  Plan plan(graph, {output});
  auto exe = be->compile(plan.c_plan(), {}, nullptr);
  for (const auto& [name, t] : in) exe->write(plan.value(name), t.data(), t.nbytes());
  exe->execute();
  Tensor t(graph.value(graph.find(output)).shape, DType::f32);
  exe->read(plan.value(output), t.data(), t.nbytes());
  return t;
}

// x [N, C, H, W], w [C * M, 1, R, S].
struct DwCase {
  int64_t N, C, H, W, M, R, S;
  int pad_h, pad_w;
  int stride_h = 1, stride_w = 1;
  int dilation = 1;
  int pad_bottom = -1, pad_right = -1;  // -1: pad_h, pad_w (symmetric)
  int64_t K() const { return C * M; }
  int bottom() const { return pad_bottom < 0 ? pad_h : pad_bottom; }
  int right() const { return pad_right < 0 ? pad_w : pad_right; }
  int64_t P() const { return (H + pad_h + bottom() - dilation * (R - 1) - 1) / stride_h + 1; }
  int64_t Q() const { return (W + pad_w + right() - dilation * (S - 1) - 1) / stride_w + 1; }
  std::string str() const {
    return fmt::format("x[{},{},{},{}] M {} w {}x{} stride {},{} pad {},{},{},{} (top,left,bottom,right) dilation {}", N,
                       C, H, W, M, R, S, stride_h, stride_w, pad_h, pad_w, bottom(), right(), dilation);
  }
  parity_op_params params() const {
    parity_op_params cp{};
    cp.conv2d.stride_h = stride_h;
    cp.conv2d.stride_w = stride_w;
    cp.conv2d.pad_h = pad_h;
    cp.conv2d.pad_w = pad_w;
    cp.conv2d.dilation_h = cp.conv2d.dilation_w = dilation;
    cp.conv2d.groups = static_cast<int32_t>(C);
    cp.conv2d.pad_end_given = 1;
    cp.conv2d.pad_bottom = bottom();
    cp.conv2d.pad_right = right();
    cp.conv2d.input_h = static_cast<int32_t>(H);
    cp.conv2d.input_w = static_cast<int32_t>(W);
    cp.conv2d.kernel_h = static_cast<int32_t>(R);
    cp.conv2d.kernel_w = static_cast<int32_t>(S);
    return cp;
  }
};

// float32 sums of at most a few thousand products of values in [-1, 1] against ref's float64: an
// NMSE near 1e-12; one tap missing or read from the wrong place moves it by about 1/n, far above.
constexpr double kThreshold = 1e-9;

Graph forward_graph(const DwCase& c, bool bias, bool relu) {
  GraphBuilder b;
  Value x = b.input("x", Shape{c.N, c.C, c.H, c.W});
  Value w = b.input("w", Shape{c.K(), 1, c.R, c.S});
  Conv2dOptions o;
  o.stride_h = c.stride_h;
  o.stride_w = c.stride_w;
  o.pad_h = c.pad_h;
  o.pad_w = c.pad_w;
  o.dilation_h = o.dilation_w = c.dilation;
  o.pad_end = true;
  o.pad_bottom = c.bottom();
  o.pad_right = c.right();
  o.groups = static_cast<int>(c.C);
  Value y = bias ? b.conv2d(x, w, b.input("b", Shape{c.K()}), o, "conv") : b.conv2d(x, w, o, "conv");
  if (relu) y = b.relu(y, "relu");
  b.rename(y, "y");
  return b.take();
}

Graph backward_data_graph(const DwCase& c) {
  GraphBuilder b;
  Value dy = b.input("dy", Shape{c.N, c.K(), c.P(), c.Q()});
  Value w = b.input("w", Shape{c.K(), 1, c.R, c.S});
  b.rename(b.node(PARITY_OP_CONV2D_BWD_DATA, c.params(), {dy, w}, "conv.bwd_data")[0], "y");
  return b.take();
}

// dw, and db when `bias` (checked as "db"); the output named y is dw.
Graph backward_weight_graph(const DwCase& c, bool bias) {
  GraphBuilder b;
  Value x = b.input("x", Shape{c.N, c.C, c.H, c.W});
  Value dy = b.input("dy", Shape{c.N, c.K(), c.P(), c.Q()});
  parity_op_params cp = c.params();
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
// to cpu on 1 thread, for each of `outputs`.
void expect_good(const Graph& graph, const Tensors& in, const std::string& what,
                 std::initializer_list<const char*> outputs = {"y"}) {
  for (const char* out : outputs) {
    const Tensor two = run_graph(graph, "cpu", 2, in, out), one = run_graph(graph, "cpu", 1, in, out);
    const Tensor ref = run_graph(graph, "ref", 1, in, out);
    const TensorDiff d = compare_tensors(two, ref, kThreshold);
    EXPECT_TRUE(d.pass) << what << " " << out << ": nmse " << d.nmse << ", " << d.nonfinite_mismatch
                        << " elements finite on one side only";
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), two.nbytes())) << what << " " << out << ": 1 and 2 threads differ";
  }
}

// N, C, H, W, M, R, S, pad_h (top), pad_w (left), stride_h, stride_w, dilation, pad_bottom, pad_right.
const DwCase kCases[] = {
    {2, 4, 28, 28, 1, 3, 3, 1, 1, 1, 1},     // mobilenet-mini's stride-1 block, two vectors per row
    {2, 4, 28, 28, 1, 3, 3, 1, 1, 2, 2},     // its stride-2 block
    {3, 3, 7, 7, 1, 3, 3, 1, 1, 1, 1},       // one partial vector per row
    {2, 3, 15, 15, 1, 3, 3, 1, 1, 2, 2},     // odd width, stride 2 (Q 8)
    {1, 2, 9, 33, 1, 3, 3, 0, 0, 1, 1},      // no padding, width past 32
    {2, 2, 10, 37, 1, 3, 3, 0, 0, 2, 2},     // no padding, stride 2, 37 columns (two loads of 32)
    {2, 3, 11, 17, 2, 3, 3, 1, 1, 1, 1},     // multiplier 2
    {2, 2, 13, 19, 2, 3, 3, 1, 1, 2, 2},     // multiplier 2, stride 2
    {2, 2, 12, 21, 1, 5, 5, 2, 2, 1, 1},     // 5x5
    {1, 3, 11, 23, 1, 5, 5, 2, 2, 2, 2},     // 5x5, stride 2
    {2, 2, 9, 16, 1, 3, 3, 1, 1, 2, 1},      // stride_h 2, stride_w 1
    {2, 2, 9, 18, 1, 3, 3, 1, 1, 1, 2},      // stride_h 1, stride_w 2
    {2, 2, 13, 16, 1, 3, 3, 1, 1, 3, 1},     // stride_h 3, stride_w 1: dx rows in three residue classes
    {2, 2, 12, 20, 1, 3, 3, 2, 2, 1, 1, 2},  // dilation 2
    {1, 2, 8, 5, 1, 3, 3, 2, 2, 1, 1},       // padding wider than half the filter, width 5
    {2, 2, 6, 7, 1, 3, 3, 3, 3, 1, 1},       // padding past the filter: backward-data gathers
    {2, 2, 6, 4, 1, 3, 3, 0, 1, 2, 2},       // tiny: one output column group
    {2, 2, 9, 13, 1, 3, 3, 2, 0, 1, 1, 1, 0, 2},  // asymmetric padding (top 2, bottom 0, left 0, right 2)
    {2, 2, 9, 13, 1, 3, 3, 0, 1, 2, 2, 1, 2, 0},  // the other way round, stride 2
    {2, 3, 14, 14, 1, 3, 3, 1, 1, 3, 3},     // stride 3: the generic loops
    {2, 2, 10, 11, 2, 3, 2, 1, 0, 1, 1},     // 3x2: generic backward-weight, vector forward
};

TEST(CpuDepthwise, ForwardMatchesRef) {
  for (const DwCase& c : kCases)
    for (const auto& [bias, relu] : {std::pair{true, true}, {false, false}, {false, true}}) {
      const Graph g = forward_graph(c, bias, relu);
      const Tensors in = bias ? random_inputs(g, 3, {"x", "w", "b"}) : random_inputs(g, 3, {"x", "w"});
      expect_good(g, in, fmt::format("forward {} bias {} relu {}", c.str(), bias, relu));
    }
}

TEST(CpuDepthwise, BackwardDataMatchesRef) {
  for (const DwCase& c : kCases) {
    const Graph g = backward_data_graph(c);
    expect_good(g, random_inputs(g, 5, {"dy", "w"}), "backward-data " + c.str());
  }
}

TEST(CpuDepthwise, BackwardWeightMatchesRef) {
  for (const DwCase& c : kCases)
    for (const bool bias : {true, false}) {
      const Graph g = backward_weight_graph(c, bias);
      if (bias)
        expect_good(g, random_inputs(g, 7, {"x", "dy"}), "backward-weight " + c.str() + " with db", {"y", "db"});
      else
        expect_good(g, random_inputs(g, 7, {"x", "dy"}), "backward-weight " + c.str());
    }
}

// A non-finite value at the edge of an input row is next to the padding the vector paths read as
// 0 and to the lanes past Q they drop: outputs get inf or NaN exactly where ref has them.
TEST(CpuDepthwise, InfinityStaysInItsWindows) {
  for (const DwCase& c : {kCases[0], kCases[1], kCases[5]}) {
    const Graph fwd = forward_graph(c, false, false);
    Tensors in = random_inputs(fwd, 9, {"x", "w"});
    in["x"].f32()[((1 * c.C + 1) * c.H + 3) * c.W + (c.W - 1)] = INFINITY;
    in["x"].f32()[0] = -INFINITY;
    expect_good(fwd, in, "forward, infinite x " + c.str());
    const Graph bwd = backward_weight_graph(c, false);
    Tensors bin = random_inputs(bwd, 9, {"x", "dy"});
    bin["x"].f32()[((1 * c.C + 1) * c.H + 3) * c.W + (c.W - 1)] = INFINITY;
    expect_good(bwd, bin, "backward-weight, infinite x " + c.str());
  }
}

}  // namespace
}  // namespace parity::testing
