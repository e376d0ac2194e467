// tests/test_conformance.cpp — every op, forward and backward, on `cpu` against the float64
// `ref` oracle, over shapes with batch 1, odd sizes, and padding and stride edge cases.
//
// Tolerances. The metric is the normalised mean squared error (NMSE) against ref's float64
// result rounded to float32. A float32 dot product of length K carries a relative error of
// about sqrt(K) * 2^-24 per element, so for the largest K here (~600) the NMSE is ~1e-11; we
// demand 1e-9, which still fails if a single element out of a thousand is wrong by 1% (NMSE
// ~1e-7). Ops that do no arithmetic on values (relu, maxpool, reshape, argmax, fill) and the
// integer outputs (indices) must match exactly.
#include <cstring>
#include <limits>

#include "tests/op_harness.h"

namespace parity::testing {
namespace {

constexpr double kNmseArithmetic = 1e-9;

void expect_close(const Tensor& got, const Tensor& want, double nmse, const std::string& what) {
  Comparison c = compare(got, want);
  EXPECT_EQ(c.mismatched_nonfinite, 0) << what << ": NaN/Inf disagree (an unwritten output stays NaN)";
  EXPECT_LE(c.nmse, nmse) << what << ": max abs error " << c.max_abs;
}

void expect_exact(const Tensor& got, const Tensor& want, const std::string& what) {
  EXPECT_TRUE(bitwise_equal(got, want)) << what << ": differs from ref";
}

// Compares every output of one op between cpu and ref; `exact` lists outputs that must match bit for bit.
void check_op(parity_op op, const parity_op_params& params, const std::vector<Operand>& operands,
              const std::string& label, std::vector<bool> exact = {}) {
  SCOPED_TRACE(label);
  std::vector<Tensor> want = run_op("ref", op, params, operands);
  std::vector<Tensor> got = run_op("cpu", op, params, operands, 2);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    bool must_be_exact = i < exact.size() && exact[i];
    std::string what = fmt::format("{} {} output {}", parity_op_name(op), label, i);
    if (must_be_exact || want[i].dtype() != DType::f32) expect_exact(got[i], want[i], what);
    else expect_close(got[i], want[i], kNmseArithmetic, what);
  }
}

struct ConvCase {
  int n, c, h, w, k, r, s, stride, pad;
};

// Batch 1, odd sizes, kernels larger than 3, non-square kernels, stride 2 and 3 with and
// without padding, padding as large as the kernel allows, 1x1 kernels.
const ConvCase kConvCases[] = {
    {1, 1, 5, 5, 1, 3, 3, 1, 0},   {2, 3, 7, 9, 4, 3, 3, 1, 1},  {1, 2, 8, 8, 3, 3, 3, 2, 1},
    {3, 4, 9, 7, 5, 5, 5, 1, 2},   {2, 3, 11, 6, 2, 3, 1, 2, 0}, {1, 16, 14, 14, 32, 3, 3, 1, 1},
    {2, 2, 10, 10, 3, 4, 2, 3, 1}, {4, 5, 3, 3, 6, 1, 1, 1, 0},  {1, 1, 4, 4, 2, 4, 4, 1, 2},
    // The cpu backend's forward panels: several small images per GEMM with a shorter last group,
    // and a large image cut into row tiles with a shorter last tile (stride 1 and 2).
    {19, 3, 6, 6, 4, 3, 3, 1, 1},  {2, 2, 40, 37, 3, 3, 3, 1, 1}, {1, 2, 70, 65, 3, 3, 3, 2, 1},
    // The cpu backend's direct kernel (stride 1, output channels a multiple of 16; backward-data
    // too when the input channels are): rows longer than one vector with a partial last one,
    // no padding, non-square kernels with padding 2, and 16 input channels with 32 outputs.
    {2, 16, 9, 21, 16, 5, 3, 1, 2}, {3, 32, 7, 40, 16, 3, 3, 1, 0}, {2, 3, 20, 35, 32, 3, 3, 1, 1},
};

parity_op_params conv_params(const ConvCase& k) {
  parity_op_params p{};
  p.conv2d.stride_h = p.conv2d.stride_w = k.stride;
  p.conv2d.pad_h = p.conv2d.pad_w = k.pad;
  p.conv2d.input_h = k.h;
  p.conv2d.input_w = k.w;
  p.conv2d.kernel_h = k.r;
  p.conv2d.kernel_w = k.s;
  return p;
}

TEST(Conformance, Conv2dForwardAndBackward) {
  std::mt19937 rng(1);
  for (const ConvCase& k : kConvCases) {
    std::string label = fmt::format("x[{},{},{},{}] w[{},{},{},{}] stride {} pad {}", k.n, k.c, k.h, k.w, k.k, k.c, k.r,
                                    k.s, k.stride, k.pad);
    parity_op_params p = conv_params(k);
    int p_out = (k.h + 2 * k.pad - k.r) / k.stride + 1, q_out = (k.w + 2 * k.pad - k.s) / k.stride + 1;
    Tensor x = random_tensor(rng, Shape{k.n, k.c, k.h, k.w});
    Tensor w = random_tensor(rng, Shape{k.k, k.c, k.r, k.s});
    Tensor b = random_tensor(rng, Shape{k.k});
    Tensor dy = random_tensor(rng, Shape{k.n, k.k, p_out, q_out});
    check_op(PARITY_OP_CONV2D, p, {{x}, {w}, {b}}, label + " forward");
    check_op(PARITY_OP_CONV2D_BWD_DATA, p, {{dy}, {w}}, label + " backward data");
    check_op(PARITY_OP_CONV2D_BWD_WEIGHT, p, {{x}, {dy}}, label + " backward weight");
  }
}

TEST(Conformance, LinearForwardAndBackward) {
  std::mt19937 rng(2);
  const int cases[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 13, 11}, {64, 128, 10}, {3, 600, 17}, {33, 9, 128}};
  for (const auto& c : cases) {
    std::string label = fmt::format("x[{},{}] w[{},{}]", c[0], c[1], c[2], c[1]);
    Tensor x = random_tensor(rng, Shape{c[0], c[1]});
    Tensor w = random_tensor(rng, Shape{c[2], c[1]});
    Tensor b = random_tensor(rng, Shape{c[2]});
    Tensor dy = random_tensor(rng, Shape{c[0], c[2]});
    check_op(PARITY_OP_LINEAR, {}, {{x}, {w}, {b}}, label + " forward");
    check_op(PARITY_OP_LINEAR_BWD_DATA, {}, {{dy}, {w}}, label + " backward data");
    check_op(PARITY_OP_LINEAR_BWD_WEIGHT, {}, {{x}, {dy}}, label + " backward weight");
  }
}

TEST(Conformance, ReluForwardAndBackwardExactly) {
  std::mt19937 rng(3);
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{17, 128}}) {
    Tensor x = random_tensor(rng, s);
    x.f32()[0] = 0.0f;  // relu'(0) = 0: the kink itself
    Tensor dy = random_tensor(rng, s);
    check_op(PARITY_OP_RELU, {}, {{x}}, s.str() + " forward", {true});
    Tensor y = run_op("ref", PARITY_OP_RELU, {}, {{x}})[0];
    check_op(PARITY_OP_RELU_BWD, {}, {{y}, {dy}}, s.str() + " backward", {true});
  }
}

TEST(Conformance, MaxpoolForwardAndBackwardExactly) {
  std::mt19937 rng(4);
  struct Case { Shape x; int kernel, stride; };
  const Case cases[] = {{Shape{1, 1, 2, 2}, 2, 2}, {Shape{2, 3, 7, 9}, 2, 2}, {Shape{1, 2, 9, 9}, 3, 2},
                        {Shape{3, 1, 5, 6}, 3, 1}, {Shape{2, 4, 28, 28}, 2, 2},
                        // rows wider than the cpu backend's 16-output vectors, with a NaN below
                        {Shape{2, 2, 6, 71}, 2, 2}};
  for (const Case& c : cases) {
    parity_op_params p{};
    p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = c.kernel;
    p.maxpool2d.stride_h = p.maxpool2d.stride_w = c.stride;
    p.maxpool2d.input_h = static_cast<int32_t>(c.x[2]);
    p.maxpool2d.input_w = static_cast<int32_t>(c.x[3]);
    Tensor x = random_tensor(rng, c.x);
    // Ties: the first maximum in row-major order wins, forward and backward.
    for (int64_t i = 0; i + 1 < x.numel(); i += 5) x.f32()[i + 1] = x.f32()[i];
    if (c.x[3] == 71) x.f32()[71 + 40] = std::numeric_limits<float>::quiet_NaN();  // a NaN wins its window
    std::string label = fmt::format("x{} kernel {} stride {}", c.x.str(), c.kernel, c.stride);
    check_op(PARITY_OP_MAXPOOL2D, p, {{x}}, label + " forward", {true, true});
    std::vector<Tensor> fwd = run_op("ref", PARITY_OP_MAXPOOL2D, p, {{x}});
    Tensor dy = random_tensor(rng, fwd[0].shape());
    check_op(PARITY_OP_MAXPOOL2D_BWD, p, {{dy}, {fwd[1]}}, label + " backward", {true});
  }
}

TEST(Conformance, SoftmaxCrossEntropyForwardAndBackward) {
  std::mt19937 rng(5);
  for (auto [n, k] : {std::pair{1, 1}, {1, 10}, {7, 3}, {64, 10}, {5, 1000}}) {
    std::string label = fmt::format("logits[{},{}]", n, k);
    Tensor logits = random_tensor(rng, Shape{n, k}, -5.0f, 5.0f);
    Tensor labels = random_labels(rng, n, k);
    Tensor dloss = Tensor::from_f32(Shape{1}, {0.75f});
    check_op(PARITY_OP_SOFTMAX_XENT, {}, {{logits}, {labels}}, label + " forward");
    check_op(PARITY_OP_SOFTMAX_XENT_BWD, {}, {{logits}, {labels}, {dloss}}, label + " backward");
    check_op(PARITY_OP_ARGMAX, {}, {{logits}}, label + " argmax", {true});
    check_op(PARITY_OP_ACCURACY, {}, {{logits}, {labels}}, label + " accuracy", {true});
  }
  // Large logits: a naive exp overflows; both must stay finite.
  Tensor big = Tensor::from_f32(Shape{2, 3}, {1e4f, -1e4f, 0.0f, 3e4f, 3e4f, -3e4f});
  Tensor labels = Tensor::from_i32(Shape{2}, {1, 0});
  check_op(PARITY_OP_SOFTMAX_XENT, {}, {{big}, {labels}}, "large logits forward");
  check_op(PARITY_OP_SOFTMAX_XENT_BWD, {}, {{big}, {labels}, {Tensor::from_f32(Shape{1}, {1.0f})}},
           "large logits backward");
}

TEST(Conformance, ReshapeAddFill) {
  std::mt19937 rng(6);
  Tensor a = random_tensor(rng, Shape{3, 4, 5});
  Tensor b = random_tensor(rng, Shape{3, 4, 5});
  check_op(PARITY_OP_RESHAPE, {}, {{a}}, "reshape", {true});
  // a + b rounds once in float32 whatever the precision it is computed in.
  check_op(PARITY_OP_ADD, {}, {{a}, {b}}, "add", {true});
  parity_op_params p{};
  p.fill.value = 1.0f;
  check_op(PARITY_OP_FILL, p, {}, "fill", {true});
}

TEST(Conformance, OptimizerSteps) {
  std::mt19937 rng(7);
  for (const Shape& s : {Shape{1}, Shape{16, 1, 3, 3}, Shape{10, 128}}) {
    Tensor param = random_tensor(rng, s), grad = random_tensor(rng, s);
    Tensor m = random_tensor(rng, s, -0.1f, 0.1f), v = random_tensor(rng, s, 0.0f, 0.01f);
    parity_op_params p{};
    p.adam = parity_adam_params{1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    for (int32_t step : {1, 2, 1000}) {
      check_op(PARITY_OP_ADAM_STEP, p,
               {{param, PARITY_VALUE_PARAM}, {grad}, {m, PARITY_VALUE_STATE}, {v, PARITY_VALUE_STATE},
                {Tensor::from_i32(Shape{1}, {step})}},
               fmt::format("adam {} step {}", s.str(), step));
    }
    p.adam.weight_decay = 0.01f;
    check_op(PARITY_OP_ADAM_STEP, p,
             {{param, PARITY_VALUE_PARAM}, {grad}, {m, PARITY_VALUE_STATE}, {v, PARITY_VALUE_STATE},
              {Tensor::from_i32(Shape{1}, {3})}},
             "adam with weight decay " + s.str());
    parity_op_params q{};
    for (float momentum : {0.0f, 0.9f}) {
      q.sgd = parity_sgd_params{0.01f, momentum, 0.0f};
      check_op(PARITY_OP_SGD_STEP, q, {{param, PARITY_VALUE_PARAM}, {grad}, {m, PARITY_VALUE_STATE}},
               fmt::format("sgd {} momentum {}", s.str(), momentum));
    }
  }
}

}  // namespace
}  // namespace parity::testing
