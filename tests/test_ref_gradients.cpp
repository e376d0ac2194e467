// tests/test_ref_gradients.cpp — checks the float64 oracle (backends/ref/ref_ops) on its own:
// every backward against central finite differences of its forward, forwards and optimizer
// steps against values worked out by hand, and the numerical stability of cross-entropy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backends/ref/ref_ops.h"

namespace parity::ref {
namespace {

using Vec = std::vector<double>;

// ---------------------------------------------------------------------------------------------
// Finite differences.
//
// Each test takes the scalar objective L = sum_j y_j r_j with a random r (so dL/dy = r, and the
// backward under test is fed r as its incoming gradient) and compares every analytic dL/dx_i
// with the central difference (L(x + h e_i) - L(x - h e_i)) / 2h, h = 1e-6.
//
// Why 1e-6 (relative to max(1, |dL/dx_i|)) is a safe and still meaningful tolerance in float64:
//  - truncation error is h^2/6 * |d3L/dx_i^3|: zero for conv, linear, reshape, relu and maxpool
//    (L is linear in each single x_i away from kinks) and about 1e-12 * O(1) for softmax xent
//    and sigmoid;
//  - rounding error is about eps * S / h, where eps = 2.2e-16 and S = sum_j |y_j r_j| is the size
//    of the numbers L is summed from; S stays below ~100 for the shapes here, so ~2e-8;
//  so errors of ~1e-8 are expected (the largest measured is ~6e-9, in conv2d), 100x below the
//  tolerance, while a real bug (a wrong index, a missing term, an off-by-one window) gives errors
//  of order 1e-2..1; FdChecker.RejectsAGradientOffBy1e4 shows that an error of 1e-4 is caught.
constexpr double kH = 1e-6;
constexpr double kTol = 1e-6;
// Tensors larger than this are checked on a random subset of elements (keeps the suite < 10 s).
constexpr size_t kMaxChecked = 400;

using Rng = std::mt19937_64;

Vec uniform(size_t n, Rng& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

// Values in (-1, -1e-3] U [1e-3, 1): relu has a kink at 0, and a central difference that
// straddles it measures neither one-sided slope. With |x| >= 1e-3 >> h both x +- h lie on the
// same side, so L is linear in x_i there and the difference is exact up to rounding.
Vec uniform_away_from_zero(size_t n, Rng& rng) {
  Vec v = uniform(n, rng);
  for (double& x : v)
    while (std::fabs(x) < 1e-3) x = uniform(1, rng)[0];
  return v;
}

// Distinct values on a grid of spacing 0.01, shuffled: maxpool's argmax only moves when two
// values of a window come within 2h of each other, so with every pair at least 0.01 >> h apart
// the chosen element stays put under +-h and the difference is valid.
Vec distinct_shuffled(size_t n, Rng& rng) {
  Vec v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.01 * static_cast<double>(i) - 0.005 * static_cast<double>(n);
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct FdResult {
  double max_error = 0.0;  // max over checked i of |fd - analytic| / max(1, |analytic|)
  size_t worst = 0;
  double fd = 0.0, analytic = 0.0;
  size_t checked = 0;
  std::string describe(const char* what) const {
    std::ostringstream s;
    s << what << ": worst element " << worst << " finite difference " << fd << " analytic " << analytic
      << " (error " << max_error << ", " << checked << " elements checked)";
    return s.str();
  }
};

// Perturbs x in place (restoring it) and evaluates `objective` at x +- h e_i.
FdResult compare_with_fd(Vec& x, const Vec& analytic, const std::function<double()>& objective, Rng& rng) {
  std::vector<size_t> indices(x.size());
  std::iota(indices.begin(), indices.end(), size_t{0});
  if (indices.size() > kMaxChecked) {
    std::shuffle(indices.begin(), indices.end(), rng);
    indices.resize(kMaxChecked);
  }
  FdResult result;
  result.checked = indices.size();
  for (size_t i : indices) {
    const double saved = x[i];
    x[i] = saved + kH;
    const double plus = objective();
    x[i] = saved - kH;
    const double minus = objective();
    x[i] = saved;
    const double fd = (plus - minus) / (2 * kH);
    const double error = std::fabs(fd - analytic[i]) / std::max(1.0, std::fabs(analytic[i]));
    if (error >= result.max_error) {
      result.max_error = error;
      result.worst = i;
      result.fd = fd;
      result.analytic = analytic[i];
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// The checker itself: a gradient that is wrong by 1e-4 must fail, or the tolerance is vacuous.

TEST(FdChecker, RejectsAGradientOffBy1e4) {
  Rng rng(1);
  Vec x = uniform(10, rng), w = uniform(10, rng);
  auto objective = [&] { return dot(x, w); };  // dL/dx = w exactly
  Vec right = w, wrong = w;
  wrong[3] += 1e-4;
  EXPECT_LT(compare_with_fd(x, right, objective, rng).max_error, kTol);
  EXPECT_GT(compare_with_fd(x, wrong, objective, rng).max_error, kTol);
}

// ---------------------------------------------------------------------------------------------
// conv2d

struct ConvCase {
  int64_t n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w;
};

std::ostream& operator<<(std::ostream& os, const ConvCase& t) {
  return os << "x[" << t.n << "," << t.c << "," << t.h << "," << t.w << "] w[" << t.k << "," << t.c << ","
            << t.r << "," << t.s << "] stride " << t.stride_h << "x" << t.stride_w << " pad " << t.pad_h << "x"
            << t.pad_w;
}

class Conv2dGradient : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dGradient, MatchesFiniteDifferences) {
  const ConvCase& t = GetParam();
  const Conv2dDims d = make_conv2d_dims(t.n, t.c, t.h, t.w, t.k, t.r, t.s, t.stride_h, t.stride_w, t.pad_h, t.pad_w);
  ASSERT_GT(d.p, 0);
  ASSERT_GT(d.q, 0);
  Rng rng(static_cast<uint64_t>(t.h * 131 + t.w * 17 + t.r * 7 + t.stride_h));
  Vec x = uniform(static_cast<size_t>(d.n * d.c * d.h * d.w), rng);
  Vec w = uniform(static_cast<size_t>(d.k * d.c * d.r * d.s), rng);
  Vec b = uniform(static_cast<size_t>(d.k), rng);
  const Vec r = uniform(static_cast<size_t>(d.n * d.k * d.p * d.q), rng);
  Vec y(r.size());
  auto objective = [&] {
    conv2d_forward(x.data(), w.data(), b.data(), y.data(), d);
    return dot(y, r);
  };

  Vec dL_dx(x.size()), dL_dw(w.size()), dL_db(b.size());
  conv2d_backward_data(r.data(), w.data(), dL_dx.data(), d);
  conv2d_backward_weight(x.data(), r.data(), dL_dw.data(), dL_db.data(), d);

  const FdResult fx = compare_with_fd(x, dL_dx, objective, rng);
  const FdResult fw = compare_with_fd(w, dL_dw, objective, rng);
  const FdResult fb = compare_with_fd(b, dL_db, objective, rng);
  EXPECT_LT(fx.max_error, kTol) << fx.describe("dL_dx");
  EXPECT_LT(fw.max_error, kTol) << fw.describe("dL_dw");
  EXPECT_LT(fb.max_error, kTol) << fb.describe("dL_db");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Conv2dGradient,
    ::testing::Values(
        //       n  c   h   w  k  r  s  sh sw ph pw
        ConvCase{2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1},    // 3x3 "same"
        ConvCase{1, 2, 8, 8, 3, 3, 3, 2, 2, 1, 1},    // stride 2, batch 1
        ConvCase{2, 2, 9, 7, 3, 2, 3, 2, 1, 0, 0},    // non-square kernel, odd sizes, pad 0
        ConvCase{1, 3, 6, 5, 2, 3, 3, 1, 1, 2, 2},    // pad 2 (output larger than input)
        ConvCase{2, 1, 5, 5, 2, 1, 1, 1, 1, 0, 0},    // 1x1
        ConvCase{1, 2, 10, 9, 2, 4, 2, 3, 2, 2, 1},   // stride 3, floor drops the last rows
        ConvCase{2, 3, 11, 11, 4, 5, 5, 2, 2, 2, 2},  // 5x5, stride 2, pad 2
        ConvCase{1, 1, 3, 3, 1, 3, 3, 1, 1, 0, 0}));  // kernel = image: 1x1 output

// The general form: groups (depthwise with a channel multiplier, 4 -> 6 in 2 groups), dilation,
// asymmetric padding, no bias. Its own cases, so the table above keeps its meaning.
struct GeneralConvCase {
  Conv2dDims d;
  bool bias;
  const char* what;
};

std::ostream& operator<<(std::ostream& os, const GeneralConvCase& t) { return os << t.what; }

class GeneralConv2dGradient : public ::testing::TestWithParam<GeneralConvCase> {};

GeneralConvCase general(const char* what, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                        int64_t stride, int64_t pad_top, int64_t pad_left, int64_t pad_bottom, int64_t pad_right,
                        int64_t dilation_h, int64_t dilation_w, int64_t groups, bool bias) {
  Conv2dDims d{n, c, h, w, k, r, s, stride, stride, pad_top, pad_left, 0, 0};
  d.pad_bottom = pad_bottom, d.pad_right = pad_right;
  d.dilation_h = dilation_h, d.dilation_w = dilation_w, d.groups = groups;
  return {make_conv2d_dims_general(d), bias, what};
}

TEST_P(GeneralConv2dGradient, MatchesFiniteDifferences) {
  const GeneralConvCase& t = GetParam();
  const Conv2dDims& d = t.d;
  ASSERT_GT(d.p, 0);
  ASSERT_GT(d.q, 0);
  Rng rng(static_cast<uint64_t>(d.h * 131 + d.w * 17 + d.groups * 7 + d.dilation_h));
  Vec x = uniform(static_cast<size_t>(d.n * d.c * d.h * d.w), rng);
  Vec w = uniform(static_cast<size_t>(d.k * d.cg() * d.r * d.s), rng);
  Vec b = uniform(static_cast<size_t>(d.k), rng);
  const Vec r = uniform(static_cast<size_t>(d.n * d.k * d.p * d.q), rng);
  Vec y(r.size());
  auto objective = [&] {
    conv2d_forward(x.data(), w.data(), t.bias ? b.data() : nullptr, y.data(), d);
    return dot(y, r);
  };
  Vec dL_dx(x.size()), dL_dw(w.size()), dL_db(b.size());
  conv2d_backward_data(r.data(), w.data(), dL_dx.data(), d);
  conv2d_backward_weight(x.data(), r.data(), dL_dw.data(), t.bias ? dL_db.data() : nullptr, d);
  const FdResult fx = compare_with_fd(x, dL_dx, objective, rng);
  const FdResult fw = compare_with_fd(w, dL_dw, objective, rng);
  EXPECT_LT(fx.max_error, kTol) << fx.describe("dL_dx");
  EXPECT_LT(fw.max_error, kTol) << fw.describe("dL_dw");
  if (t.bias) {
    const FdResult fb = compare_with_fd(b, dL_db, objective, rng);
    EXPECT_LT(fb.max_error, kTol) << fb.describe("dL_db");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GeneralConv2dGradient,
    ::testing::Values(
        //                         n  c   h  w  k  r  s  st pt pl pb pr dh dw  g  bias
        general("depthwise", 2, 3, 7, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3, true),
        general("depthwise x2, stride 2", 1, 2, 9, 8, 4, 3, 3, 2, 1, 1, 1, 1, 1, 1, 2, true),
        general("groups 2, 4 -> 6", 2, 4, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2, true),
        general("dilation 2", 1, 2, 9, 10, 3, 3, 3, 1, 2, 2, 2, 2, 2, 2, 1, true),
        general("dilation 2x3, grouped, no bias", 2, 4, 8, 11, 2, 3, 2, 1, 1, 0, 1, 0, 2, 3, 2, false),
        general("asymmetric padding, stride 2", 2, 2, 8, 9, 3, 3, 3, 2, 0, 1, 1, 0, 1, 1, 1, true),
        general("padding beyond the kernel's half, no bias", 1, 2, 4, 5, 2, 3, 2, 1, 3, 0, 1, 2, 1, 1, 1, false)),
    [](const ::testing::TestParamInfo<GeneralConvCase>& info) { return "case" + std::to_string(info.index); });

// groups = 1 and dilation 1 give make_conv2d_dims' convolution; a depthwise conv is C separate
// single-channel convolutions (pins the channel each filter reads).
TEST(Conv2dForward, DepthwiseIsPerChannel) {
  Conv2dDims dw{1, 2, 3, 3, 2, 2, 2, 1, 1, 0, 0, 0, 0};
  dw.groups = 2;
  dw = make_conv2d_dims_general(dw);
  const Vec x = {1, 2, 3, 4, 5, 6, 7, 8, 9, /* channel 1 */ 10, 20, 30, 40, 50, 60, 70, 80, 90};
  const Vec w = {1, 0, 0, 1, /* filter 1 */ 0, 1, 1, 0};
  Vec y(8);
  conv2d_forward(x.data(), w.data(), nullptr, y.data(), dw);
  EXPECT_EQ(y, (Vec{1 + 5, 2 + 6, 4 + 8, 5 + 9, 20 + 40, 30 + 50, 50 + 70, 60 + 80}));
}

// Dilation 2 and asymmetric padding (top 1, bottom 0): hand-worked on one channel.
TEST(Conv2dForward, HandWorkedDilationAndAsymmetricPadding) {
  Conv2dDims d{1, 1, 3, 3, 1, 2, 1, 1, 1, 1, 0, 0, 0};
  d.pad_bottom = 0, d.pad_right = 0, d.dilation_h = 2;
  d = make_conv2d_dims_general(d);
  ASSERT_EQ(d.p, 2);  // (3 + 1 + 0 - 2 - 1) / 1 + 1
  ASSERT_EQ(d.q, 3);
  const Vec x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 10};
  Vec y(6);
  conv2d_forward(x.data(), w.data(), nullptr, y.data(), d);
  // row 0: taps at rows -1 (padding) and 1; row 1: rows 0 and 2
  EXPECT_EQ(y, (Vec{40, 50, 60, 1 + 70, 2 + 80, 3 + 90}));
}

// Hand-worked forwards pin the geometry that finite differences cannot (a forward and backward
// that agree on a wrong padding or stride would pass the gradient test).
TEST(Conv2dForward, HandWorkedPad0Stride1) {
  const Vec x = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // 1x1x3x3
  const Vec w = {1, 1, 1, 1};                 // 1x1x2x2
  const Vec b = {0.5};
  Vec y(4, std::nan(""));
  conv2d_forward(x.data(), w.data(), b.data(), y.data(), make_conv2d_dims(1, 1, 3, 3, 1, 2, 2, 1, 1, 0, 0));
  EXPECT_EQ(y, (Vec{12.5, 16.5, 24.5, 28.5}));  // 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9, plus 0.5
}

TEST(Conv2dForward, HandWorkedPad1Stride2) {
  const Vec x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Vec w = {1, 1, 1, 1};
  const Vec b = {0.0};
  const Conv2dDims d = make_conv2d_dims(1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 1);
  ASSERT_EQ(d.p, 2);  // (3 + 2 - 2) / 2 + 1
  ASSERT_EQ(d.q, 2);
  Vec y(4, std::nan(""));
  conv2d_forward(x.data(), w.data(), b.data(), y.data(), d);
  // Windows start at (-1,-1), (-1,1), (1,-1), (1,1); padding contributes zeros.
  EXPECT_EQ(y, (Vec{1, 2 + 3, 4 + 7, 5 + 6 + 8 + 9}));
}

TEST(Conv2dForward, CrossCorrelationNotConvolution) {
  const Vec x = {1, 2, 3};   // 1x1x1x3
  const Vec w = {1, 0, -1};  // 1x1x1x3: a flipped kernel would give +2
  const Vec b = {0.0};
  Vec y(1);
  conv2d_forward(x.data(), w.data(), b.data(), y.data(), make_conv2d_dims(1, 1, 1, 3, 1, 1, 3, 1, 1, 0, 0));
  EXPECT_EQ(y[0], -2.0);
}

// ---------------------------------------------------------------------------------------------
// relu

// An element-wise op whose backward takes the forward output y (relu, sigmoid).
using ElementwiseForward = void (*)(const double* x, double* y, int64_t count);
using ElementwiseBackward = void (*)(const double* y, const double* dL_dy, double* dL_dx, int64_t count);
FdResult elementwise_gradient_error(ElementwiseForward forward, ElementwiseBackward backward, Vec x, Rng& rng) {
  const Vec r = uniform(x.size(), rng);
  Vec y(x.size());
  auto objective = [&] {
    forward(x.data(), y.data(), static_cast<int64_t>(x.size()));
    return dot(y, r);
  };
  objective();  // y = f(x): the backward takes the forward output
  Vec dL_dx(x.size());
  backward(y.data(), r.data(), dL_dx.data(), static_cast<int64_t>(x.size()));
  return compare_with_fd(x, dL_dx, objective, rng);
}

TEST(ReluGradient, MatchesFiniteDifferencesAwayFromZero) {
  Rng rng(2);
  Vec x = uniform_away_from_zero(300, rng);
  const FdResult f = elementwise_gradient_error(relu_forward, relu_backward, x, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

TEST(ReluGradient, DerivativeAtZeroIsZero) {
  const Vec x = {-1.0, 0.0, -0.0, 2.0};
  Vec y(4), dL_dx(4, std::nan(""));
  relu_forward(x.data(), y.data(), 4);
  EXPECT_EQ(y, (Vec{0.0, 0.0, 0.0, 2.0}));
  const Vec dL_dy = {5.0, 5.0, 5.0, 5.0};
  relu_backward(y.data(), dL_dy.data(), dL_dx.data(), 4);
  EXPECT_EQ(dL_dx, (Vec{0.0, 0.0, 0.0, 5.0}));
}

TEST(ReluForward, PropagatesNaN) {
  const Vec x = {std::nan("")};
  Vec y(1, 0.0);
  relu_forward(x.data(), y.data(), 1);
  EXPECT_TRUE(std::isnan(y[0]));
}

// ---------------------------------------------------------------------------------------------
// sigmoid
// Smooth everywhere: the truncation error is h^2/6 times sigmoid's third derivative, ~2e-14
// (that derivative is at most 1/8), far below kTol.

TEST(SigmoidGradient, MatchesFiniteDifferences) {
  Rng rng(12);
  const FdResult f = elementwise_gradient_error(sigmoid_forward, sigmoid_backward, uniform(300, rng, -4.0, 4.0), rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

TEST(SigmoidForward, HandWorkedAndLimits) {
  const double inf = std::numeric_limits<double>::infinity();
  const Vec x = {0.0, std::log(3.0), -inf, inf, -1000.0};
  Vec y(x.size());
  sigmoid_forward(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(y[0], 0.5);
  EXPECT_NEAR(y[1], 0.75, 1e-15);  // 1 / (1 + 1/3)
  EXPECT_EQ(y[2], 0.0);
  EXPECT_EQ(y[3], 1.0);
  EXPECT_EQ(y[4], 0.0);  // exp(1000) overflows to inf: 0, as torch.sigmoid gives
  const Vec nan = {std::nan("")};
  Vec out(1, 0.0);
  sigmoid_forward(nan.data(), out.data(), 1);
  EXPECT_TRUE(std::isnan(out[0]));
}

TEST(SigmoidGradient, HandWorkedFromTheOutput) {
  const Vec y = {0.5, 0.75, 0.0, 1.0};
  const Vec dL_dy = {2.0, 4.0, 3.0, 3.0};
  Vec dL_dx(4);
  sigmoid_backward(y.data(), dL_dy.data(), dL_dx.data(), 4);
  EXPECT_EQ(dL_dx, (Vec{0.5, 0.75, 0.0, 0.0}));  // dy * y * (1 - y)
}

// ---------------------------------------------------------------------------------------------
// tanh (backward from the output, like sigmoid), leaky_relu, gelu, hardtanh (backward from the
// input). tanh and gelu are smooth (third derivatives below 2 and 1: truncation ~1e-12);
// leaky_relu and hardtanh are piecewise linear, checked with x at least 1e-3 from their kinks.

// An element-wise op whose backward takes the forward input x.
using InputBackward = std::function<void(const double* x, const double* dL_dy, double* dL_dx, int64_t count)>;
using InputForward = std::function<void(const double* x, double* y, int64_t count)>;
FdResult input_gradient_error(const InputForward& forward, const InputBackward& backward, Vec x, Rng& rng) {
  const Vec r = uniform(x.size(), rng);
  Vec y(x.size()), dL_dx(x.size());
  backward(x.data(), r.data(), dL_dx.data(), static_cast<int64_t>(x.size()));
  auto objective = [&] {
    forward(x.data(), y.data(), static_cast<int64_t>(x.size()));
    return dot(y, r);
  };
  return compare_with_fd(x, dL_dx, objective, rng);
}

TEST(TanhGradient, MatchesFiniteDifferences) {
  Rng rng(21);
  const FdResult f = elementwise_gradient_error(tanh_forward, tanh_backward, uniform(300, rng, -4.0, 4.0), rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

TEST(TanhGradient, HandWorkedFromTheOutput) {
  const Vec y = {0.0, 0.5, 1.0, -1.0};
  const Vec dL_dy = {2.0, 4.0, 3.0, 3.0};
  Vec dL_dx(4);
  tanh_backward(y.data(), dL_dy.data(), dL_dx.data(), 4);
  EXPECT_EQ(dL_dx, (Vec{2.0, 3.0, 0.0, 0.0}));  // dy * (1 - y^2)
}

TEST(LeakyReluGradient, MatchesFiniteDifferencesAwayFromZero) {
  Rng rng(22);
  const double slope = 0.01;
  const FdResult f = input_gradient_error(
      [&](const double* x, double* y, int64_t n) { leaky_relu_forward(x, y, n, slope); },
      [&](const double* x, const double* dy, double* dx, int64_t n) { leaky_relu_backward(x, dy, dx, n, slope); },
      uniform_away_from_zero(300, rng), rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

// torch.nn.functional.leaky_relu: x == 0 (and -0) takes the slope branch in the backward.
TEST(LeakyReluGradient, AtZeroTakesTheSlope) {
  const Vec x = {-2.0, -0.0, 0.0, 1.0};
  Vec y(4), dL_dx(4);
  leaky_relu_forward(x.data(), y.data(), 4, 0.25);
  EXPECT_EQ(y, (Vec{-0.5, 0.0, 0.0, 1.0}));
  const Vec dL_dy = {4.0, 4.0, 4.0, 4.0};
  leaky_relu_backward(x.data(), dL_dy.data(), dL_dx.data(), 4, 0.25);
  EXPECT_EQ(dL_dx, (Vec{1.0, 1.0, 1.0, 4.0}));
}

TEST(GeluGradient, MatchesFiniteDifferences) {
  Rng rng(23);
  const FdResult f = input_gradient_error(gelu_forward, gelu_backward, uniform(300, rng, -5.0, 5.0), rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

// torch.nn.functional.gelu(approximate='none') at 0, 1, -3 and 10 (libtorch 1.13 prints 0, 0.8413,
// -0.0040, 10; gradients 0.5, 1.0833); the digits here are Phi from erfc in float64.
TEST(GeluForward, HandWorked) {
  const Vec x = {0.0, 1.0, -3.0, 10.0};
  Vec y(4), dL_dx(4);
  gelu_forward(x.data(), y.data(), 4);
  EXPECT_EQ(y[0], 0.0);
  EXPECT_NEAR(y[1], 0.8413447460685429, 1e-15);  // Phi(1)
  EXPECT_NEAR(y[2], -0.004049694094890287, 1e-17);  // -3 Phi(-3)
  EXPECT_EQ(y[3], 10.0);
  const Vec ones(4, 1.0);
  gelu_backward(x.data(), ones.data(), dL_dx.data(), 4);
  EXPECT_EQ(dL_dx[0], 0.5);
  EXPECT_NEAR(dL_dx[1], 1.0833154705876864, 1e-15);  // Phi(1) + phi(1)
}

TEST(HardtanhGradient, MatchesFiniteDifferencesAwayFromTheBounds) {
  Rng rng(24);
  Vec x = uniform(300, rng, -2.0, 2.0);
  for (double& v : x)
    while (std::fabs(std::fabs(v) - 1.0) < 1e-3) v = uniform(1, rng, -2.0, 2.0)[0];
  const FdResult f = input_gradient_error(
      [](const double* in, double* y, int64_t n) { hardtanh_forward(in, y, n, -1.0, 1.0); },
      [](const double* in, const double* dy, double* dx, int64_t n) { hardtanh_backward(in, dy, dx, n, -1.0, 1.0); },
      x, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

// torch's hardtanh_backward passes the gradient only strictly inside (min_val, max_val).
TEST(HardtanhGradient, ZeroAtBothBounds) {
  const Vec x = {-1.0, 0.0, 6.0, 7.0, 3.0, std::nan("")};
  Vec y(6), dL_dx(6);
  hardtanh_forward(x.data(), y.data(), 6, 0.0, 6.0);  // relu6
  EXPECT_EQ(y[0], 0.0);
  EXPECT_EQ(y[2], 6.0);
  EXPECT_EQ(y[3], 6.0);
  EXPECT_TRUE(std::isnan(y[5]));
  const Vec dL_dy(6, 2.0);
  hardtanh_backward(x.data(), dL_dy.data(), dL_dx.data(), 6, 0.0, 6.0);
  EXPECT_EQ(dL_dx, (Vec{0.0, 0.0, 0.0, 0.0, 2.0, 2.0}));
}

// ---------------------------------------------------------------------------------------------
// maxpool2d

struct PoolCase {
  int64_t n, c, h, w, kernel_h, kernel_w, stride_h, stride_w;
};

std::ostream& operator<<(std::ostream& os, const PoolCase& t) {
  return os << "x[" << t.n << "," << t.c << "," << t.h << "," << t.w << "] kernel " << t.kernel_h << "x"
            << t.kernel_w << " stride " << t.stride_h << "x" << t.stride_w;
}

class Maxpool2dGradient : public ::testing::TestWithParam<PoolCase> {};

TEST_P(Maxpool2dGradient, MatchesFiniteDifferences) {
  const PoolCase& t = GetParam();
  const Maxpool2dDims d = make_maxpool2d_dims(t.n, t.c, t.h, t.w, t.kernel_h, t.kernel_w, t.stride_h, t.stride_w);
  Rng rng(static_cast<uint64_t>(t.h * 31 + t.w + t.kernel_h));
  Vec x = distinct_shuffled(static_cast<size_t>(d.n * d.c * d.h * d.w), rng);
  const Vec r = uniform(static_cast<size_t>(d.n * d.c * d.p * d.q), rng);
  Vec y(r.size());
  std::vector<int32_t> idx(r.size());
  auto objective = [&] {
    maxpool2d_forward(x.data(), y.data(), idx.data(), d);
    return dot(y, r);
  };
  objective();
  Vec dL_dx(x.size());
  maxpool2d_backward(r.data(), idx.data(), dL_dx.data(), d);
  const FdResult f = compare_with_fd(x, dL_dx, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

INSTANTIATE_TEST_SUITE_P(Shapes, Maxpool2dGradient,
                         ::testing::Values(
                             //       n  c  h  w  kh kw sh sw
                             PoolCase{2, 3, 8, 8, 2, 2, 2, 2},   // the model's pool
                             PoolCase{1, 2, 7, 9, 2, 2, 2, 2},   // odd sizes: last row/column dropped
                             PoolCase{2, 2, 9, 9, 3, 3, 2, 2},   // overlapping windows
                             PoolCase{1, 3, 8, 7, 3, 3, 2, 2},   // overlapping, odd, even
                             PoolCase{1, 2, 6, 6, 3, 3, 1, 1},   // stride 1: one element wins many windows
                             PoolCase{2, 1, 6, 9, 2, 3, 2, 3}));  // non-square window and stride

TEST(Maxpool2dForward, FirstMaximumInRowMajorOrderAndItsIndex) {
  // One 4x4 plane, 2x2 windows, stride 2; the ties pick the first in row-major order.
  const Vec x = {1, 7, 0, 0,   //
                 7, 7, 0, 0,   //
                 2, 3, 9, 4,   //
                 5, 5, 4, 9};  //
  const Maxpool2dDims d = make_maxpool2d_dims(1, 1, 4, 4, 2, 2, 2, 2);
  Vec y(4, std::nan(""));
  std::vector<int32_t> idx(4, -1);
  maxpool2d_forward(x.data(), y.data(), idx.data(), d);
  EXPECT_EQ(y, (Vec{7, 0, 5, 9}));
  EXPECT_EQ(idx, (std::vector<int32_t>{1, 2, 12, 10}));  // h*W+w within the plane

  const Vec dL_dy = {1, 2, 3, 4};
  Vec dL_dx(16, std::nan(""));
  maxpool2d_backward(dL_dy.data(), idx.data(), dL_dx.data(), d);
  Vec expected(16, 0.0);
  expected[1] = 1;
  expected[2] = 2;
  expected[12] = 3;
  expected[10] = 4;
  EXPECT_EQ(dL_dx, expected);
}

TEST(Maxpool2dForward, IndicesAreWithinEachPlane) {
  // Second plane of a 1x2x2x2 input: its index is relative to the plane, not the tensor.
  const Vec x = {0, 0, 0, 1, 3, 0, 0, 0};
  Vec y(2);
  std::vector<int32_t> idx(2);
  maxpool2d_forward(x.data(), y.data(), idx.data(), make_maxpool2d_dims(1, 2, 2, 2, 2, 2, 2, 2));
  EXPECT_EQ(idx, (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(y, (Vec{1, 3}));
}

// The general form (ABI 5): padding, dilation and ceil_mode windows, against the finite differences.
struct PaddedPoolCase {
  int64_t n, c, h, w, kernel, stride, pad, dilation;
  bool ceil_mode;
};

std::ostream& operator<<(std::ostream& os, const PaddedPoolCase& t) {
  return os << "x[" << t.n << "," << t.c << "," << t.h << "," << t.w << "] kernel " << t.kernel << " stride "
            << t.stride << " pad " << t.pad << " dilation " << t.dilation << (t.ceil_mode ? " ceil_mode" : "");
}

class PaddedMaxpool2dGradient : public ::testing::TestWithParam<PaddedPoolCase> {};

TEST_P(PaddedMaxpool2dGradient, MatchesFiniteDifferences) {
  const PaddedPoolCase& t = GetParam();
  const Maxpool2dDims d = make_maxpool2d_dims(t.n, t.c, t.h, t.w, t.kernel, t.kernel, t.stride, t.stride, t.pad, t.pad,
                                              t.dilation, t.dilation, t.ceil_mode);
  ASSERT_GT(d.p, 0);
  Rng rng(static_cast<uint64_t>(t.h * 37 + t.pad * 5 + t.dilation));
  Vec x = distinct_shuffled(static_cast<size_t>(d.n * d.c * d.h * d.w), rng);
  const Vec r = uniform(static_cast<size_t>(d.n * d.c * d.p * d.q), rng);
  Vec y(r.size());
  std::vector<int32_t> idx(r.size());
  auto objective = [&] {
    maxpool2d_forward(x.data(), y.data(), idx.data(), d);
    return dot(y, r);
  };
  objective();
  Vec dL_dx(x.size());
  maxpool2d_backward(r.data(), idx.data(), dL_dx.data(), d);
  const FdResult f = compare_with_fd(x, dL_dx, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

INSTANTIATE_TEST_SUITE_P(Shapes, PaddedMaxpool2dGradient,
                         ::testing::Values(
                             //             n  c  h  w  k  s  pad dil ceil
                             PaddedPoolCase{1, 2, 5, 5, 3, 2, 1, 1, true},    // ceil_mode over the padded edge
                             PaddedPoolCase{2, 1, 7, 6, 2, 2, 0, 1, true},    // ceil_mode past the input
                             PaddedPoolCase{1, 1, 4, 5, 2, 1, 2, 1, false},   // empty windows in padding
                             PaddedPoolCase{1, 2, 9, 8, 3, 2, 1, 2, true},    // dilation
                             PaddedPoolCase{2, 1, 6, 6, 3, 1, 1, 1, false}));  // stride 1, padding

// PyTorch 1.13: F.max_pool2d(torch.arange(1., 26.).reshape(1,1,5,5), 3, 2, 1, dilation=2,
// ceil_mode=True, return_indices=True) gives y [[19, 19], [19, 19]], indices 18 everywhere.
TEST(Maxpool2dForward, DilatedCeilModeMatchesTorch) {
  Vec x(25);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i + 1);
  const Maxpool2dDims d = make_maxpool2d_dims(1, 1, 5, 5, 3, 3, 2, 2, 1, 1, 2, 2, true);
  ASSERT_EQ(d.p, 2);
  ASSERT_EQ(d.q, 2);
  Vec y(4);
  std::vector<int32_t> idx(4);
  maxpool2d_forward(x.data(), y.data(), idx.data(), d);
  EXPECT_EQ(y, (Vec{19, 19, 19, 19}));
  EXPECT_EQ(idx, (std::vector<int32_t>{18, 18, 18, 18}));
}

// A window entirely in padding (allowed as ONNX allows it) gives 0 and index -1, never -inf,
// and its gradient goes nowhere.
TEST(Maxpool2dForward, WindowsEntirelyInPaddingGiveZeroAndIndexMinusOne) {
  const Vec x = {-5, -6, -7, -8};  // a 1x1x2x2 plane, all negative: 0 is no element's value
  const Maxpool2dDims d = make_maxpool2d_dims(1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 1, 1, false);
  ASSERT_EQ(d.p, 3);  // (2 + 4 - 1) / 2 + 1: windows at -2, 0, 2
  Vec y(9, std::nan(""));
  std::vector<int32_t> idx(9, 7);
  maxpool2d_forward(x.data(), y.data(), idx.data(), d);
  EXPECT_EQ(y, (Vec{0, 0, 0, 0, -5, 0, 0, 0, 0}));
  EXPECT_EQ(idx, (std::vector<int32_t>{-1, -1, -1, -1, 0, -1, -1, -1, -1}));
  const Vec dL_dy = {1, 1, 1, 1, 3, 1, 1, 1, 1};
  Vec dL_dx(4, std::nan(""));
  maxpool2d_backward(dL_dy.data(), idx.data(), dL_dx.data(), d);
  EXPECT_EQ(dL_dx, (Vec{3, 0, 0, 0}));
}

// ---------------------------------------------------------------------------------------------
// avgpool2d, global_avgpool (linear: the finite difference is exact up to rounding)

struct AvgpoolCase {
  int64_t n, c, h, w, kernel_h, kernel_w, stride, pad;
  bool ceil_mode, count_include_pad;
};

std::ostream& operator<<(std::ostream& os, const AvgpoolCase& t) {
  return os << "x[" << t.n << "," << t.c << "," << t.h << "," << t.w << "] kernel " << t.kernel_h << "x" << t.kernel_w
            << " stride " << t.stride << " pad " << t.pad << (t.ceil_mode ? " ceil_mode" : "")
            << (t.count_include_pad ? " count_include_pad" : " excluding padding");
}

class Avgpool2dGradient : public ::testing::TestWithParam<AvgpoolCase> {};

TEST_P(Avgpool2dGradient, MatchesFiniteDifferences) {
  const AvgpoolCase& t = GetParam();
  const Avgpool2dDims d = make_avgpool2d_dims(t.n, t.c, t.h, t.w, t.kernel_h, t.kernel_w, t.stride, t.stride, t.pad,
                                              t.pad, t.ceil_mode, t.count_include_pad);
  ASSERT_GT(d.p, 0);
  Rng rng(static_cast<uint64_t>(t.h * 41 + t.kernel_h * 3 + t.pad + (t.count_include_pad ? 100 : 0)));
  Vec x = uniform(static_cast<size_t>(d.n * d.c * d.h * d.w), rng);
  const Vec r = uniform(static_cast<size_t>(d.n * d.c * d.p * d.q), rng);
  Vec y(r.size());
  auto objective = [&] {
    avgpool2d_forward(x.data(), y.data(), d);
    return dot(y, r);
  };
  Vec dL_dx(x.size());
  avgpool2d_backward(r.data(), dL_dx.data(), d);
  const FdResult f = compare_with_fd(x, dL_dx, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

INSTANTIATE_TEST_SUITE_P(Shapes, Avgpool2dGradient,
                         ::testing::Values(
                             //          n  c  h  w  kh kw s  pad ceil   include
                             AvgpoolCase{2, 3, 8, 8, 2, 2, 2, 0, false, true},
                             AvgpoolCase{1, 2, 5, 5, 3, 3, 2, 1, true, true},    // ceil_mode overhang clipped
                             AvgpoolCase{1, 2, 5, 5, 3, 3, 2, 1, true, false},
                             AvgpoolCase{1, 1, 4, 5, 2, 2, 1, 2, false, true},   // windows in padding
                             AvgpoolCase{1, 1, 4, 5, 2, 2, 1, 2, false, false},  // ... with no element: 0
                             AvgpoolCase{2, 1, 6, 7, 3, 2, 1, 1, false, false},  // stride 1, overlapping
                             AvgpoolCase{1, 3, 7, 7, 2, 2, 2, 0, true, true}));

// PyTorch 1.13: F.avg_pool2d(torch.arange(1., 26.).reshape(1,1,5,5), 3, 2, 1, ceil_mode=True,
// count_include_pad=...) and F.avg_pool2d(torch.ones(1,1,4,4), 3, 2, 1, ceil_mode=True): the
// divisor counts the window clipped to the padded input, not ceil_mode's overhang past it.
TEST(Avgpool2dForward, DivisorsMatchTorch) {
  Vec x(25);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i + 1);
  Vec y(9);
  avgpool2d_forward(x.data(), y.data(), make_avgpool2d_dims(1, 1, 5, 5, 3, 3, 2, 2, 1, 1, true, true));
  const Vec include = {16.0 / 9, 33.0 / 9, 28.0 / 9, 69.0 / 9, 13, 87.0 / 9, 76.0 / 9, 123.0 / 9, 88.0 / 9};
  for (size_t i = 0; i < 9; ++i) EXPECT_NEAR(y[i], include[i], 1e-12) << i;
  avgpool2d_forward(x.data(), y.data(), make_avgpool2d_dims(1, 1, 5, 5, 3, 3, 2, 2, 1, 1, true, false));
  EXPECT_EQ(y, (Vec{4, 5.5, 7, 11.5, 13, 14.5, 19, 20.5, 22}));

  const Vec ones(16, 1.0);
  avgpool2d_forward(ones.data(), y.data(), make_avgpool2d_dims(1, 1, 4, 4, 3, 3, 2, 2, 1, 1, true, true));
  const Vec clipped = {4.0 / 9, 6.0 / 9, 2.0 / 6, 6.0 / 9, 1, 3.0 / 6, 2.0 / 6, 3.0 / 6, 1.0 / 4};
  for (size_t i = 0; i < 9; ++i) EXPECT_NEAR(y[i], clipped[i], 1e-12) << i;
}

// Windows entirely in padding: 0 either way (no elements; or a sum of 0 over the window).
TEST(Avgpool2dForward, WindowsEntirelyInPaddingGiveZero) {
  const Vec x = {4, 8, 12, 16};
  for (bool include : {true, false}) {
    const Avgpool2dDims d = make_avgpool2d_dims(1, 1, 2, 2, 1, 1, 2, 2, 2, 2, false, include);
    ASSERT_EQ(d.p, 3);
    Vec y(9, std::nan(""));
    avgpool2d_forward(x.data(), y.data(), d);
    EXPECT_EQ(y, (Vec{0, 0, 0, 0, 4, 0, 0, 0, 0})) << include;
  }
}

TEST(GlobalAvgpool, MeanOfEachPlaneAndItsGradient) {
  Rng rng(5);
  Vec x = uniform(2 * 3 * 5 * 7, rng);
  const Vec r = uniform(6, rng);
  Vec y(6);
  auto objective = [&] {
    global_avgpool_forward(x.data(), y.data(), 6, 35);
    return dot(y, r);
  };
  Vec dL_dx(x.size());
  global_avgpool_backward(r.data(), dL_dx.data(), 6, 35);
  const FdResult f = compare_with_fd(x, dL_dx, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
  const Vec plane = {1, 2, 3, 6};
  global_avgpool_forward(plane.data(), y.data(), 1, 4);
  EXPECT_EQ(y[0], 3.0);
}

// ---------------------------------------------------------------------------------------------
// reshape: a copy, so its gradient is the incoming gradient copied back.

TEST(ReshapeGradient, IsTheIdentityOnElements) {
  Rng rng(3);
  Vec x = uniform(24, rng);
  const Vec r = uniform(24, rng);
  Vec y(24);
  auto objective = [&] {
    reshape_forward(x.data(), y.data(), 24);
    return dot(y, r);
  };
  objective();
  EXPECT_EQ(y, x);
  Vec dL_dx(24);
  reshape_forward(r.data(), dL_dx.data(), 24);  // the backward is the same copy
  const FdResult f = compare_with_fd(x, dL_dx, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dx");
}

// ---------------------------------------------------------------------------------------------
// linear

class LinearGradient : public ::testing::TestWithParam<LinearDims> {};

std::string linear_case_name(const ::testing::TestParamInfo<LinearDims>& info) {
  return "x" + std::to_string(info.param.n) + "x" + std::to_string(info.param.in) + "_out" +
         std::to_string(info.param.out);
}

TEST_P(LinearGradient, MatchesFiniteDifferences) {
  const LinearDims d = GetParam();
  Rng rng(static_cast<uint64_t>(d.n * 1000 + d.in * 10 + d.out));
  Vec x = uniform(static_cast<size_t>(d.n * d.in), rng);
  Vec w = uniform(static_cast<size_t>(d.out * d.in), rng);
  Vec b = uniform(static_cast<size_t>(d.out), rng);
  const Vec r = uniform(static_cast<size_t>(d.n * d.out), rng);
  Vec y(r.size());
  auto objective = [&] {
    linear_forward(x.data(), w.data(), b.data(), y.data(), d);
    return dot(y, r);
  };
  Vec dL_dx(x.size()), dL_dw(w.size()), dL_db(b.size());
  linear_backward_data(r.data(), w.data(), dL_dx.data(), d);
  linear_backward_weight(x.data(), r.data(), dL_dw.data(), dL_db.data(), d);
  const FdResult fx = compare_with_fd(x, dL_dx, objective, rng);
  const FdResult fw = compare_with_fd(w, dL_dw, objective, rng);
  const FdResult fb = compare_with_fd(b, dL_db, objective, rng);
  EXPECT_LT(fx.max_error, kTol) << fx.describe("dL_dx");
  EXPECT_LT(fw.max_error, kTol) << fw.describe("dL_dw");
  EXPECT_LT(fb.max_error, kTol) << fb.describe("dL_db");
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearGradient,
                         ::testing::Values(LinearDims{1, 5, 3},      // batch 1
                                           LinearDims{4, 7, 10},     // more outputs than inputs
                                           LinearDims{3, 32, 8},     // wide input
                                           LinearDims{2, 1, 1}),     // scalar map
                         linear_case_name);

TEST(LinearForward, HandWorked) {
  const Vec x = {1, 2, 3, 4, 5, 6};          // [2,3]
  const Vec w = {1, 0, -1, 0.5, 0.5, 0.5};   // [2,3]: y = x w^T
  const Vec b = {10, 20};
  Vec y(4, std::nan(""));
  linear_forward(x.data(), w.data(), b.data(), y.data(), LinearDims{2, 3, 2});
  EXPECT_EQ(y, (Vec{10 + 1 - 3, 20 + 3, 10 + 4 - 6, 20 + 7.5}));
}

// ---------------------------------------------------------------------------------------------
// softmax cross-entropy

// The loss of ref's forward under `how` (mean, sum: one value; none: d.n).
Vec xent_loss_of(const Vec& logits, const std::vector<int32_t>& labels, const XentDims& d, const XentLoss& how) {
  Vec loss(how.reduction == XentLoss::Reduction::none ? static_cast<size_t>(d.n) : 1, std::nan(""));
  softmax_xent_forward(logits.data(), labels.data(), d, how, loss.data());
  return loss;
}

XentLoss make_xent_loss(XentLoss::Reduction reduction, bool ignore = false, int32_t ignore_index = 0) {
  XentLoss how;
  how.reduction = reduction;
  how.has_ignore_index = ignore;
  how.ignore_index = ignore_index;
  return how;
}

TEST(SoftmaxXentGradient, MatchesFiniteDifferences) {
  Rng rng(4);
  const XentDims d{6, 10};
  Vec logits = uniform(static_cast<size_t>(d.n * d.k), rng, -3.0, 3.0);
  std::vector<int32_t> labels(static_cast<size_t>(d.n));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>((i * 7 + 3) % 10);
  const double dL_dloss = 0.75;  // L = dL_dloss * loss, so the seed is checked too
  auto objective = [&] { return dL_dloss * xent_loss_of(logits, labels, d, XentLoss{})[0]; };
  Vec dL_dlogits(logits.size());
  softmax_xent_backward(logits.data(), labels.data(), &dL_dloss, dL_dlogits.data(), d, XentLoss{});
  const FdResult f = compare_with_fd(logits, dL_dlogits, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe("dL_dlogits");
}

// Every reduction, with and without ignored rows (the ignore_index outside the classes, and one
// that is a class): L = sum_i seed_i * loss_i, seeded with one value (mean, sum) or one per row.
TEST(SoftmaxXentGradient, EveryReductionWithIgnoredRowsMatchesFiniteDifferences) {
  Rng rng(5);
  const XentDims d{7, 5};
  Vec logits = uniform(static_cast<size_t>(d.n * d.k), rng, -3.0, 3.0);
  std::vector<int32_t> labels = {3, -100, 0, 4, -100, 2, 1};
  for (const XentLoss::Reduction r :
       {XentLoss::Reduction::mean, XentLoss::Reduction::sum, XentLoss::Reduction::none}) {
    for (const XentLoss& how : {make_xent_loss(r), make_xent_loss(r, true, -100), make_xent_loss(r, true, 2)}) {
      std::vector<int32_t> used = labels;
      if (!how.has_ignore_index || how.ignore_index != -100)
        for (int32_t& l : used) l = l < 0 ? 1 : l;  // -100 is a label only where it is ignored
      const Vec seed = uniform(r == XentLoss::Reduction::none ? static_cast<size_t>(d.n) : 1, rng, -1.0, 1.0);
      auto objective = [&] {
        const Vec loss = xent_loss_of(logits, used, d, how);
        double L = 0;
        for (size_t i = 0; i < loss.size(); ++i) L += seed[i] * loss[i];
        return L;
      };
      Vec dL_dlogits(logits.size(), std::nan(""));
      softmax_xent_backward(logits.data(), used.data(), seed.data(), dL_dlogits.data(), d, how);
      const FdResult f = compare_with_fd(logits, dL_dlogits, objective, rng);
      EXPECT_LT(f.max_error, kTol) << f.describe("dL_dlogits") << " reduction " << int(r) << " ignore_index "
                                   << (how.has_ignore_index ? std::to_string(how.ignore_index) : "none");
      for (int64_t n = 0; n < d.n; ++n)
        if (how.ignores(used[static_cast<size_t>(n)]))
          for (int64_t k = 0; k < d.k; ++k) EXPECT_EQ(dL_dlogits[static_cast<size_t>(n * d.k + k)], 0.0) << n;
    }
  }
}

TEST(SoftmaxXentForward, HandWorkedMeanOverBatch) {
  const Vec logits = {1, 2, 3,   //
                      0, 0, 0};  //
  const std::vector<int32_t> labels = {2, 0};
  // Row 0: log(e^1 + e^2 + e^3) - 3 (written unshifted, unlike the op); row 1: log 3.
  const double row0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0, row1 = std::log(3.0);
  const XentDims d{2, 3};
  EXPECT_NEAR(xent_loss_of(logits, labels, d, XentLoss{})[0], (row0 + row1) / 2, 1e-15);
  EXPECT_NEAR(xent_loss_of(logits, labels, d, make_xent_loss(XentLoss::Reduction::sum))[0], row0 + row1, 1e-15);
  const Vec each = xent_loss_of(logits, labels, d, make_xent_loss(XentLoss::Reduction::none));
  EXPECT_NEAR(each[0], row0, 1e-15);
  EXPECT_NEAR(each[1], row1, 1e-15);
  // Row 1 ignored: the mean is over row 0 alone, its term in none is 0.
  const std::vector<int32_t> one_ignored = {2, -100};
  EXPECT_NEAR(xent_loss_of(logits, one_ignored, d, make_xent_loss(XentLoss::Reduction::mean, true, -100))[0], row0, 1e-15);
  EXPECT_EQ(xent_loss_of(logits, one_ignored, d, make_xent_loss(XentLoss::Reduction::none, true, -100))[1], 0.0);
}

// torch 1.13: cross_entropy(reduction='mean') of a batch whose every label is the ignore_index is
// nan (0 / 0), its gradient 0; 'sum' gives 0. An ignored row of NaN logits adds 0 to the loss.
TEST(SoftmaxXentForward, EveryRowIgnoredAndNaNInAnIgnoredRow) {
  const Vec logits = {1, 2, 3,   //
                      0, 5, 0};  //
  const std::vector<int32_t> ignored = {-100, -100};
  const XentDims d{2, 3};
  EXPECT_TRUE(std::isnan(xent_loss_of(logits, ignored, d, make_xent_loss(XentLoss::Reduction::mean, true, -100))[0]));
  EXPECT_EQ(xent_loss_of(logits, ignored, d, make_xent_loss(XentLoss::Reduction::sum, true, -100))[0], 0.0);
  Vec dL_dlogits(6, std::nan(""));
  const double seed = 1.0;
  softmax_xent_backward(logits.data(), ignored.data(), &seed, dL_dlogits.data(), d, make_xent_loss(XentLoss::Reduction::mean, true, -100));
  for (double g : dL_dlogits) EXPECT_EQ(g, 0.0);

  const Vec nan_row = {std::nan(""), 2, 3,  //
                       0, 5, 0};            //
  const std::vector<int32_t> first_ignored = {-100, 1};
  const double row1 = std::log(2.0 + std::exp(5.0)) - 5.0;
  EXPECT_NEAR(xent_loss_of(nan_row, first_ignored, d, make_xent_loss(XentLoss::Reduction::mean, true, -100))[0], row1, 1e-15);
  softmax_xent_backward(nan_row.data(), first_ignored.data(), &seed, dL_dlogits.data(), d,
                        make_xent_loss(XentLoss::Reduction::mean, true, -100));
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(std::isnan(dL_dlogits[static_cast<size_t>(k)])) << k;  // NaN * 0, as torch
  for (int k = 3; k < 6; ++k) EXPECT_TRUE(std::isfinite(dL_dlogits[static_cast<size_t>(k)])) << k;
}

TEST(SoftmaxXentForward, StableForLogitsOf1e4) {
  // Unshifted, exp(1e4) overflows to inf and the loss would be inf or NaN.
  const Vec logits = {1e4, 0.0, -1e4,   //
                      1e4, 0.0, -1e4,   //
                      1e4, 1e4, -1e4};  //
  const std::vector<int32_t> labels = {0, 1, 1};
  const XentDims d{3, 3};
  // Row 0: log(1 + e^-1e4 + e^-2e4) = 0; row 1: that plus 1e4; row 2: log(2 + e^-2e4) = log 2.
  const double loss = xent_loss_of(logits, labels, d, XentLoss{})[0];
  EXPECT_NEAR(loss, (0.0 + 1e4 + std::log(2.0)) / 3, 1e-12);

  Vec dL_dlogits(9, std::nan(""));
  const double seed = 3.0;  // scale 3 / N = 1
  softmax_xent_backward(logits.data(), labels.data(), &seed, dL_dlogits.data(), d, XentLoss{});
  for (double g : dL_dlogits) EXPECT_TRUE(std::isfinite(g));
  EXPECT_NEAR(dL_dlogits[0], 0.0, 1e-15);   // softmax 1 - onehot 1
  EXPECT_NEAR(dL_dlogits[3], 1.0, 1e-15);   // softmax 1, label elsewhere
  EXPECT_NEAR(dL_dlogits[4], -1.0, 1e-15);  // softmax 0 - onehot 1
  EXPECT_NEAR(dL_dlogits[6], 0.5, 1e-15);   // tie: 0.5 each
  EXPECT_NEAR(dL_dlogits[7], -0.5, 1e-15);
}

// ---------------------------------------------------------------------------------------------
// argmax and accuracy

TEST(Argmax, FirstMaximumOfEachRow) {
  const Vec x = {1, 3, 3, 0,   //
                 -1, -2, -1, -5};
  std::vector<int32_t> idx(2, -1);
  argmax_rows(x.data(), idx.data(), 2, 4);
  EXPECT_EQ(idx, (std::vector<int32_t>{1, 0}));
}

TEST(Accuracy, CountsRowsWhoseFirstArgmaxIsTheLabel) {
  const Vec logits = {0, 1, 0,   // argmax 1
                      2, 2, 0,   // tie: first, 0
                      0, 0, 5,   // 2
                      1, 0, 0};  // 0
  const std::vector<int32_t> labels = {1, 1, 2, 2};
  EXPECT_EQ(accuracy_count(logits.data(), labels.data(), XentDims{4, 3}), 2.0);
}

// ---------------------------------------------------------------------------------------------
// add and fill

TEST(Add, Elementwise) {
  const Vec a = {1, 2, 3}, b = {0.5, -2, 10};
  Vec c(3);
  add_forward(a.data(), b.data(), c.data(), 3);
  EXPECT_EQ(c, (Vec{1.5, 0, 13}));
}

TEST(Fill, SetsEveryElement) {
  Vec y(3, std::nan(""));
  fill_forward(y.data(), 3, 1.0);
  EXPECT_EQ(y, (Vec{1, 1, 1}));
}

// ---------------------------------------------------------------------------------------------
// Optimizers: two steps against the formulas of the torch.optim docs, written here in their
// documented form (bias-corrected m_hat and v_hat), which differs in order of operations from
// the implementation's (torch's lr / bc1 and sqrt(v) / sqrt(bc2)); they agree to rounding.

TEST(AdamStep, TwoStepsMatchTheDocumentedFormula) {
  const AdamHyper h{0.1, 0.9, 0.999, 1e-8, 0.0, false};
  Vec p = {1.0}, m = {0.0}, v = {0.0};
  const double g1 = 0.5, g2 = 0.25;
  adam_step(p.data(), &g1, m.data(), v.data(), 1, 1, h);
  // Step 1: m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25: p = 1 - 0.1 * 0.5 / (0.5 + 1e-8).
  EXPECT_NEAR(m[0], 0.05, 1e-16);
  EXPECT_NEAR(v[0], 0.00025, 1e-18);
  EXPECT_NEAR(p[0], 1.0 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-15);
  EXPECT_NEAR(p[0], 0.900000002, 1e-15);  // the first Adam step moves by ~lr * sign(g)

  adam_step(p.data(), &g2, m.data(), v.data(), 1, 2, h);
  // Step 2: m = 0.9*0.05 + 0.1*0.25 = 0.07; v = 0.999*0.00025 + 0.001*0.0625 = 0.00031225;
  // m_hat = 0.07 / (1 - 0.81) = 0.368421...; v_hat = 0.00031225 / (1 - 0.998001) = 0.156203...
  EXPECT_NEAR(m[0], 0.07, 1e-16);
  EXPECT_NEAR(v[0], 0.00031225, 1e-18);
  const double m_hat = 0.07 / 0.19, v_hat = 0.00031225 / 0.001999;
  EXPECT_NEAR(p[0], 0.900000002 - 0.1 * m_hat / (std::sqrt(v_hat) + 1e-8), 1e-14);
  EXPECT_NEAR(p[0], 0.8067820404774624, 1e-14);
}

TEST(AdamStep, WeightDecayIsAddedToTheGradientFirst) {
  const AdamHyper h{0.01, 0.8, 0.99, 1e-6, 0.1, false};
  Vec p = {2.0, -1.0}, m = {0.0, 0.0}, v = {0.0, 0.0};
  const Vec g1 = {0.3, 0.0}, g2 = {-0.2, 0.4};
  Vec ep = p, em = m, ev = v;  // expected, by the documented formula
  double p1_after_step1 = 0.0;
  for (int t = 1; t <= 2; ++t) {
    const Vec& g = (t == 1) ? g1 : g2;
    adam_step(p.data(), g.data(), m.data(), v.data(), 2, t, h);
    if (t == 1) p1_after_step1 = p[1];
    for (size_t i = 0; i < 2; ++i) {
      const double gd = g[i] + h.weight_decay * ep[i];
      em[i] = h.beta1 * em[i] + (1 - h.beta1) * gd;
      ev[i] = h.beta2 * ev[i] + (1 - h.beta2) * gd * gd;
      const double m_hat = em[i] / (1 - std::pow(h.beta1, t)), v_hat = ev[i] / (1 - std::pow(h.beta2, t));
      ep[i] -= h.lr * m_hat / (std::sqrt(v_hat) + h.eps);
    }
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(p[i], ep[i], 1e-14) << "element " << i;
    EXPECT_NEAR(m[i], em[i], 1e-15) << "element " << i;
    EXPECT_NEAR(v[i], ev[i], 1e-16) << "element " << i;
  }
  // Element 1 had a zero gradient on step 1, yet moved up by ~lr: the decay term wd * p = -0.1
  // was its whole gradient (a first Adam step moves by lr * sign(g)).
  EXPECT_NEAR(p1_after_step1, -1.0 + 0.01, 1e-6);
}

TEST(SgdStep, TwoStepsWithMomentum) {
  const SgdHyper h{0.1, 0.9, 0.0, false};
  Vec p = {1.0}, vel = {0.0};
  const double g1 = 0.5, g2 = 0.25;
  sgd_step(p.data(), &g1, vel.data(), 1, h);
  EXPECT_DOUBLE_EQ(vel[0], 0.5);   // v = 0.9*0 + 0.5
  EXPECT_DOUBLE_EQ(p[0], 0.95);    // 1 - 0.1*0.5
  sgd_step(p.data(), &g2, vel.data(), 1, h);
  EXPECT_DOUBLE_EQ(vel[0], 0.7);   // 0.9*0.5 + 0.25
  EXPECT_DOUBLE_EQ(p[0], 0.88);    // 0.95 - 0.1*0.7
}

TEST(SgdStep, WeightDecayAndNoMomentum) {
  Vec p = {1.0}, vel = {0.0};
  const double g1 = 0.5, g2 = 0.25;
  const SgdHyper plain{0.1, 0.0, 0.0, false};
  sgd_step(p.data(), &g1, vel.data(), 1, plain);
  sgd_step(p.data(), &g2, vel.data(), 1, plain);
  EXPECT_DOUBLE_EQ(p[0], 0.925);  // 1 - 0.05 - 0.025
  EXPECT_EQ(vel[0], 0.0);         // momentum 0 keeps no velocity

  Vec q = {2.0}, qv = {0.0};
  const SgdHyper decayed{0.1, 0.9, 0.5, false};
  sgd_step(q.data(), &g1, qv.data(), 1, decayed);
  EXPECT_DOUBLE_EQ(qv[0], 1.5);   // g = 0.5 + 0.5*2
  EXPECT_DOUBLE_EQ(q[0], 1.85);   // 2 - 0.1*1.5
  sgd_step(q.data(), &g2, qv.data(), 1, decayed);
  EXPECT_DOUBLE_EQ(qv[0], 0.9 * 1.5 + (0.25 + 0.5 * 1.85));  // 2.525
  EXPECT_DOUBLE_EQ(q[0], 1.85 - 0.1 * 2.525);
}


// torch 1.13's SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5) on p = 1 with the
// gradients 0.5, then 0.25 (float64 tensors): p = 0.81, then 0.60455.
TEST(SgdStep, NesterovMatchesTorch) {
  const SgdHyper h{0.1, 0.9, 0.5, true};
  Vec p = {1.0}, vel = {0.0};
  const double g1 = 0.5, g2 = 0.25;
  sgd_step(p.data(), &g1, vel.data(), 1, h);
  EXPECT_NEAR(p[0], 0.81, 1e-15);
  sgd_step(p.data(), &g2, vel.data(), 1, h);
  EXPECT_NEAR(p[0], 0.60455, 1e-15);
}

// torch 1.13's AdamW(lr=0.1, weight_decay=0.5) on p = 1 with the gradients 0.5, then -0.25
// (float64): p = 0.8500000019999999, then 0.7808662986078463.
TEST(AdamStep, AdamWMatchesTorch) {
  const AdamHyper h{0.1, 0.9, 0.999, 1e-8, 0.5, true};
  Vec p = {1.0}, m = {0.0}, v = {0.0};
  const double g1 = 0.5, g2 = -0.25;
  adam_step(p.data(), &g1, m.data(), v.data(), 1, 1, h);
  EXPECT_NEAR(p[0], 0.8500000019999999, 1e-15);
  adam_step(p.data(), &g2, m.data(), v.data(), 1, 2, h);
  EXPECT_NEAR(p[0], 0.7808662986078463, 1e-15);
}

// The lr of steps 1..12 under torch 1.13's schedulers, stepped once per optimizer step from
// lr 0.1 (their recursive forms, printed by torch): the closed forms agree to rounding.
TEST(LrSchedule, MatchesTorchSchedulers) {
  parity_lr_schedule step{};
  step.kind = PARITY_LR_STEP;
  step.step_size = 3;
  step.gamma = 0.5f;
  const double step_lr[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125};
  parity_lr_schedule cosine{};
  cosine.kind = PARITY_LR_COSINE;
  cosine.total_steps = 10;
  cosine.min_lr = 0x1p-10f;  // exact in float32 and double alike
  const double cosine_lr[] = {0.1, 0.09757672400016044, 0.09054410313946273, 0.07959053934690273,
                              0.06578824376446274, 0.05048828125000001, 0.03518831873553728, 0.021386023153097285,
                              0.010432459360537277, 0.0033998384998395665, 0.0009765625, 0.0033998384998395665};
  // SequentialLR([LinearLR(start_factor=0.25, total_iters=4), CosineAnnealingLR(T_max=8, eta_min=2^-10)], [4])
  parity_lr_schedule warm = cosine;
  warm.total_steps = 8;
  warm.warmup_steps = 4;
  warm.warmup_start_factor = 0.25f;
  const double warm_lr[] = {0.025, 0.043750000000000004, 0.06250000000000001, 0.08125000000000002, 0.1,
                            0.09623114482258031, 0.08549835332632613, 0.06943559572354498, 0.050488281249999996,
                            0.03154096677645503, 0.01547820917367387, 0.00474541767741969};
  for (int t = 1; t <= 12; ++t) {
    // torch's chainable forms multiply the last lr by a ratio each step, so their rounding
    // accumulates (a few 1e-16 per step); 1e-14 bounds it, while a wrong formula is off by percent.
    EXPECT_NEAR(lr_at_step(0.1, step, t), step_lr[t - 1], 1e-15) << "step schedule, step " << t;
    EXPECT_NEAR(lr_at_step(0.1, cosine, t), cosine_lr[t - 1], 1e-14) << "cosine, step " << t;
    EXPECT_NEAR(lr_at_step(0.1, warm, t), warm_lr[t - 1], 1e-14) << "warmup then cosine, step " << t;
  }
  EXPECT_EQ(lr_at_step(0.1, parity_lr_schedule{}, 1000), 0.1);  // zero-initialised: constant
}

}  // namespace
}  // namespace parity::ref

namespace parity::ref {
namespace {

// ---------------------------------------------------------------------------------------------
// batchnorm2d: the backward of training (through the batch statistics) and of evaluation
// (constant running statistics) against finite differences of the forward; L = sum y r only
// (the saved mean and inverse std are not differentiable outputs). The forward is smooth in x
// (third derivatives ~ invstd^3 / n, ~1e2 at most here: truncation ~1e-10).

struct BatchnormFd {
  FdResult dx, dgamma, dbeta;
};

BatchnormFd batchnorm_gradient_errors(const BatchnormDims& d, bool training, Rng& rng, double offset = 0.0) {
  const size_t count = static_cast<size_t>(d.n * d.c * d.hw), c = static_cast<size_t>(d.c);
  Vec x = uniform(count, rng), gamma = uniform(c, rng), beta = uniform(c, rng);
  for (double& v : x) v += offset;
  const Vec r = uniform(count, rng);
  Vec running_mean = uniform(c, rng), running_var = uniform(c, rng, 0.2, 2.0);
  const BatchnormHyper h{1e-5, 0.1, false};
  Vec y(count), mean(c), invstd(c);
  auto objective = [&] {
    Vec rm = running_mean, rv = running_var;  // the forward's own update is not part of L
    if (training)
      batchnorm_train_forward(x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), y.data(), mean.data(),
                              invstd.data(), d, h);
    else
      batchnorm_eval_forward(x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), y.data(), d, h.eps);
    return dot(y, r);
  };
  objective();
  Vec dx(count), dgamma(c), dbeta(c);
  batchnorm_backward(x.data(), r.data(), gamma.data(), training ? mean.data() : running_mean.data(),
                     training ? invstd.data() : running_var.data(), dx.data(), dgamma.data(), dbeta.data(), d, training,
                     h.eps);
  BatchnormFd f;
  f.dx = compare_with_fd(x, dx, objective, rng);
  f.dgamma = compare_with_fd(gamma, dgamma, objective, rng);
  f.dbeta = compare_with_fd(beta, dbeta, objective, rng);
  return f;
}

TEST(BatchnormGradient, TrainingMatchesFiniteDifferences) {
  Rng rng(61);
  for (const BatchnormDims& d : {BatchnormDims{2, 3, 12}, BatchnormDims{1, 2, 7}, BatchnormDims{5, 1, 1}}) {
    const BatchnormFd f = batchnorm_gradient_errors(d, true, rng);
    EXPECT_LT(f.dx.max_error, kTol) << f.dx.describe("dL_dx");
    EXPECT_LT(f.dgamma.max_error, kTol) << f.dgamma.describe("dL_dgamma");
    EXPECT_LT(f.dbeta.max_error, kTol) << f.dbeta.describe("dL_dbeta");
  }
  // A large common offset changes nothing: the statistics are taken about the mean.
  const BatchnormFd f = batchnorm_gradient_errors(BatchnormDims{2, 2, 9}, true, rng, 1000.0);
  EXPECT_LT(f.dx.max_error, kTol) << f.dx.describe("dL_dx at offset 1000");
}

TEST(BatchnormGradient, EvaluationMatchesFiniteDifferences) {
  Rng rng(62);
  const BatchnormFd f = batchnorm_gradient_errors(BatchnormDims{3, 4, 5}, false, rng);
  EXPECT_LT(f.dx.max_error, kTol) << f.dx.describe("dL_dx");
  EXPECT_LT(f.dgamma.max_error, kTol) << f.dgamma.describe("dL_dgamma");
  EXPECT_LT(f.dbeta.max_error, kTol) << f.dbeta.describe("dL_dbeta");
}

// One channel of x = (1, 2, 3, 6): mean 3, biased variance 3.5, unbiased 14/3.
TEST(BatchnormForward, RunningStatisticsOfBothConventionsByHand) {
  const Vec x = {1, 2, 3, 6}, gamma = {2}, beta = {0.5};
  const BatchnormDims d{2, 1, 2};
  for (bool onnx : {false, true}) {
    Vec rm = {1.0}, rv = {2.0}, y(4), mean(1), invstd(1);
    batchnorm_train_forward(x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), y.data(), mean.data(),
                            invstd.data(), d, BatchnormHyper{1e-5, onnx ? 0.9 : 0.1, onnx});
    EXPECT_DOUBLE_EQ(mean[0], 3.0);
    EXPECT_DOUBLE_EQ(invstd[0], 1.0 / std::sqrt(3.5 + 1e-5));
    EXPECT_DOUBLE_EQ(y[3], 3.0 / std::sqrt(3.5 + 1e-5) * 2.0 + 0.5);
    // PyTorch: 0.1 * batch + 0.9 * old, unbiased; ONNX: 0.9 * old + 0.1 * batch, biased.
    EXPECT_DOUBLE_EQ(rm[0], onnx ? 0.9 * 1.0 + 0.1 * 3.0 : 0.1 * 3.0 + 0.9 * 1.0);
    EXPECT_DOUBLE_EQ(rv[0], onnx ? 0.9 * 2.0 + (1.0 - 0.9) * 3.5 : 0.1 * (14.0 / 3.0) + (1.0 - 0.1) * 2.0);
  }
}

// Variance 0: y = beta exactly, and finite.
TEST(BatchnormForward, ConstantChannelGivesBeta) {
  const Vec x = {0.3, 0.3, 0.3}, gamma = {5.0}, beta = {-0.25};
  Vec rm = {0.0}, rv = {1.0}, y(3), mean(1), invstd(1);
  batchnorm_train_forward(x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), y.data(), mean.data(),
                          invstd.data(), BatchnormDims{3, 1, 1}, BatchnormHyper{1e-5, 0.1, false});
  for (double v : y) EXPECT_EQ(v, -0.25);
  EXPECT_DOUBLE_EQ(invstd[0], 1.0 / std::sqrt(1e-5));
}

// ---------------------------------------------------------------------------------------------
// softmax and log_softmax over one dim (backwards from the output), concat along dim 1 and its
// backward, SLICE. softmax is smooth (third derivatives below ~1 for inputs in [-3, 3]:
// truncation ~1e-13); concat and slice are linear (differences exact up to rounding).

struct SoftmaxCase {
  LaneDims lanes;
  bool log;
};

class SoftmaxGradient : public ::testing::TestWithParam<SoftmaxCase> {};

TEST_P(SoftmaxGradient, MatchesFiniteDifferences) {
  const SoftmaxCase c = GetParam();
  Rng rng(31 + static_cast<uint64_t>(c.lanes.k * 7 + c.lanes.inner));
  const size_t n = static_cast<size_t>(c.lanes.outer * c.lanes.k * c.lanes.inner);
  Vec x = uniform(n, rng, -3.0, 3.0);
  const Vec r = uniform(n, rng);
  Vec y(n), dL_dx(n);
  softmax_forward(x.data(), y.data(), c.lanes, c.log);
  softmax_backward(y.data(), r.data(), dL_dx.data(), c.lanes, c.log);  // from the output
  auto objective = [&] {
    softmax_forward(x.data(), y.data(), c.lanes, c.log);
    return dot(y, r);
  };
  const FdResult f = compare_with_fd(x, dL_dx, objective, rng);
  EXPECT_LT(f.max_error, kTol) << f.describe(c.log ? "log_softmax dL_dx" : "softmax dL_dx");
}

INSTANTIATE_TEST_SUITE_P(RowsAndChannels, SoftmaxGradient,
                         ::testing::Values(SoftmaxCase{{6, 10, 1}, false}, SoftmaxCase{{6, 10, 1}, true},
                                           SoftmaxCase{{2, 3, 35}, false}, SoftmaxCase{{2, 3, 35}, true},
                                           SoftmaxCase{{4, 1, 5}, false}, SoftmaxCase{{4, 1, 5}, true},
                                           SoftmaxCase{{1, 7, 1}, false}, SoftmaxCase{{1, 7, 1}, true}));

TEST(SoftmaxForward, HandWorkedStableAndStrided) {
  // Lanes along dim 1 of [1, 3, 2]: (1, 2, 3) and (1e4, 1e4, -inf), strided by 2.
  const double inf = std::numeric_limits<double>::infinity();
  const Vec x = {1.0, 1e4, 2.0, 1e4, 3.0, -inf};
  const LaneDims d{1, 3, 2};
  Vec y(6), logy(6);
  softmax_forward(x.data(), y.data(), d, false);
  softmax_forward(x.data(), logy.data(), d, true);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(y[0], std::exp(1.0) / z, 1e-15);
  EXPECT_NEAR(y[4], std::exp(3.0) / z, 1e-15);
  EXPECT_NEAR(logy[2], 2.0 - std::log(z), 1e-14);
  EXPECT_EQ(y[1], 0.5);  // a tie at 1e4: unshifted, exp(1e4) is inf and this would be NaN
  EXPECT_EQ(y[3], 0.5);
  EXPECT_EQ(y[5], 0.0);  // -inf: exactly 0, and -inf for log_softmax
  EXPECT_EQ(logy[5], -inf);
  EXPECT_NEAR(logy[1], -std::log(2.0), 1e-15);
}

TEST(SoftmaxGradient, HandWorkedFromTheOutput) {
  const Vec y = {0.25, 0.75};
  const Vec dL_dy = {1.0, 3.0};
  Vec dL_dx(2);
  softmax_backward(y.data(), dL_dy.data(), dL_dx.data(), LaneDims{1, 2, 1}, false);
  // sum(dy * y) = 2.5: y * (dy - 2.5)
  EXPECT_EQ(dL_dx, (Vec{-0.375, 0.375}));
  const Vec logy = {std::log(0.25), std::log(0.75)};
  softmax_backward(logy.data(), dL_dy.data(), dL_dx.data(), LaneDims{1, 2, 1}, true);
  // sum(dy) = 4: dy - exp(y) * 4
  EXPECT_NEAR(dL_dx[0], 0.0, 1e-15);
  EXPECT_NEAR(dL_dx[1], 0.0, 1e-15);
}

TEST(ConcatGradient, SliceIsTheAdjointOfConcat) {
  // x0 [2,1,3], x1 [2,2,3] -> y [2,3,3]; <concat(x0, x1), r> = <x0, slice0(r)> + <x1, slice1(r)>.
  Rng rng(41);
  Vec x0 = uniform(6, rng), x1 = uniform(12, rng);
  const Vec r = uniform(18, rng);
  Vec y(18);
  copy_into_dim1(x0.data(), y.data(), 2, 1, 0, 3, 3);
  copy_into_dim1(x1.data(), y.data(), 2, 2, 1, 3, 3);
  EXPECT_EQ(y[0], x0[0]);
  EXPECT_EQ(y[3], x1[0]);
  EXPECT_EQ(y[9], x0[3]);  // image 1 starts with x0's
  Vec g0(6), g1(12);
  copy_from_dim1(r.data(), g0.data(), 2, 3, 0, 1, 3);
  copy_from_dim1(r.data(), g1.data(), 2, 3, 1, 2, 3);
  auto objective = [&] {
    copy_into_dim1(x0.data(), y.data(), 2, 1, 0, 3, 3);
    copy_into_dim1(x1.data(), y.data(), 2, 2, 1, 3, 3);
    return dot(y, r);
  };
  const FdResult f0 = compare_with_fd(x0, g0, objective, rng);
  const FdResult f1 = compare_with_fd(x1, g1, objective, rng);
  EXPECT_LT(f0.max_error, kTol) << f0.describe("dL_dx0");
  EXPECT_LT(f1.max_error, kTol) << f1.describe("dL_dx1");
}

}  // namespace
}  // namespace parity::ref
