// tests/test_batcher.cpp — the counter RNG (known answers), epoch order and batch filling.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <vector>

#include "util/counter_rng.h"
#include "parity/data.h"
#include "parity/error.h"

namespace parity {
namespace {

// Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
TEST(CounterRng, PhiloxMatchesRandom123KnownAnswers) {
  EXPECT_EQ(philox4x32({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}),
            (std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}),
            (std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(CounterRng, StreamIdIsFnv1a64) {
  EXPECT_EQ(stream_id(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(stream_id("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_NE(stream_id("conv1.weight"), stream_id("conv1.bias"));
}

TEST(CounterRng, UniformFloatStaysInRangeAndIsDeterministic) {
  double sum = 0;
  for (uint64_t i = 0; i < 20000; ++i) {
    const float v = uniform_float(42, 7, i, -0.5f, 0.25f);
    ASSERT_GE(v, -0.5f);
    ASSERT_LT(v, 0.25f);
    ASSERT_EQ(v, uniform_float(42, 7, i, -0.5f, 0.25f));
    sum += v;
  }
  EXPECT_NEAR(sum / 20000, -0.125, 0.01);
  EXPECT_NE(uniform_float(42, 7, 0, 0, 1), uniform_float(43, 7, 0, 0, 1));
  EXPECT_NE(uniform_float(42, 7, 0, 0, 1), uniform_float(42, 8, 0, 0, 1));
  // A span where lo + span * (1 - 2^-24) rounds to hi must still stay below hi.
  for (uint64_t i = 0; i < 20000; ++i) ASSERT_LT(uniform_float(1, 2, i, 1.0f, 1.0000001f), 1.0000001f);
}

bool is_permutation_of_iota(const std::vector<int64_t>& order) {
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != static_cast<int64_t>(i)) return false;
  return true;
}

TEST(EpochOrder, IdentityWithoutShuffle) {
  const auto order = epoch_order(5, 123, 3, false);
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(epoch_order(0, 1, 0, true).empty());
  EXPECT_EQ(epoch_order(1, 1, 0, true), (std::vector<int64_t>{0}));
}

TEST(EpochOrder, ShuffleIsADeterministicPermutationPerEpoch) {
  const auto e0 = epoch_order(1000, 7, 0, true);
  const auto e1 = epoch_order(1000, 7, 1, true);
  EXPECT_TRUE(is_permutation_of_iota(e0));
  EXPECT_TRUE(is_permutation_of_iota(e1));
  EXPECT_EQ(e0, epoch_order(1000, 7, 0, true));  // resuming at epoch 0 reproduces it
  EXPECT_EQ(e1, epoch_order(1000, 7, 1, true));
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, epoch_order(1000, 8, 0, true));
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  EXPECT_NE(e0, identity);
}

TEST(EpochOrder, ShuffleIsRoughlyUniform) {
  // Where element 0 lands, over many epochs of a 4-element order: each slot about 1/4.
  std::array<int, 4> slot{};
  for (int64_t epoch = 0; epoch < 4000; ++epoch) {
    const auto order = epoch_order(4, 99, epoch, true);
    ++slot[static_cast<size_t>(std::find(order.begin(), order.end(), 0) - order.begin())];
  }
  for (int n : slot) EXPECT_NEAR(n, 1000, 120);
}

TEST(EpochOrder, RejectsNegativeArguments) {
  EXPECT_THROW(epoch_order(-1, 0, 0, true), Error);
  EXPECT_THROW(epoch_order(3, 0, -1, true), Error);
}

// Three 2x2 images whose pixel values encode (sample, row, col).
Dataset tiny_dataset() {
  Dataset d;
  d.count = 3;
  d.rows = 2;
  d.cols = 2;
  for (int s = 0; s < 3; ++s)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 2; ++c) d.images.push_back(static_cast<float>(100 * s + 10 * r + c));
  d.labels = {4, 5, 6};
  return d;
}

TEST(FillBatch, CopiesSamplesInOrder) {
  const Dataset d = tiny_dataset();
  const std::vector<int64_t> order = {2, 0, 1};
  std::vector<float> x(2 * 4, NAN);
  std::vector<int32_t> y(2, -1);
  fill_batch(d, order, 0, 2, BatchGeometry{}, x.data(), y.data());
  EXPECT_EQ(x, (std::vector<float>{200, 201, 210, 211, 0, 1, 10, 11}));
  EXPECT_EQ(y, (std::vector<int32_t>{6, 4}));
}

TEST(FillBatch, UpsamplesNearestAndRepeatsChannels) {
  const Dataset d = tiny_dataset();
  const std::vector<int64_t> order = {1, 2, 0};
  const BatchGeometry g{3, 2};
  const int64_t n = 2, h = 4, w = 4;
  std::vector<float> x(static_cast<size_t>(n * 3 * h * w), NAN);
  std::vector<int32_t> y(2, -1);
  fill_batch(d, order, 1, n, g, x.data(), y.data());  // samples 2 and 0
  EXPECT_EQ(y, (std::vector<int32_t>{6, 4}));
  const int64_t samples[] = {2, 0};
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < w; ++c) {
          const float want = static_cast<float>(100 * samples[b] + 10 * (r / 2) + c / 2);
          ASSERT_EQ(x[static_cast<size_t>(((b * 3 + ch) * h + r) * w + c)], want)
              << "b=" << b << " ch=" << ch << " r=" << r << " c=" << c;
        }
}

TEST(FillBatch, LastPartialBatch) {
  const Dataset d = tiny_dataset();
  const auto order = epoch_order(3, 5, 0, true);
  const int64_t batch = 2;
  std::vector<int32_t> seen;
  for (int64_t first = 0; first < d.count; first += batch) {
    const int64_t n = std::min(batch, d.count - first);
    std::vector<float> x(static_cast<size_t>(n * 4) + 1, -7.0f);  // one guard element past the end
    std::vector<int32_t> y(static_cast<size_t>(n));
    fill_batch(d, order, first, n, BatchGeometry{}, x.data(), y.data());
    EXPECT_EQ(x.back(), -7.0f) << "wrote past the batch";
    for (int64_t b = 0; b < n; ++b) {
      EXPECT_EQ(x[static_cast<size_t>(b * 4)], 100.0f * static_cast<float>(order[static_cast<size_t>(first + b)]));
    }
    seen.insert(seen.end(), y.begin(), y.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int32_t>{4, 5, 6}));
}

TEST(FillBatch, RejectsBadRangesIndicesAndGeometry) {
  const Dataset d = tiny_dataset();
  std::vector<float> x(64);
  std::vector<int32_t> y(4);
  const std::vector<int64_t> order = {0, 1, 2};
  EXPECT_THROW(fill_batch(d, order, 2, 2, BatchGeometry{}, x.data(), y.data()), Error);
  EXPECT_THROW(fill_batch(d, order, -1, 1, BatchGeometry{}, x.data(), y.data()), Error);
  EXPECT_THROW(fill_batch(d, {0, 3}, 0, 2, BatchGeometry{}, x.data(), y.data()), Error);
  EXPECT_THROW(fill_batch(d, order, 0, 1, BatchGeometry{0, 1}, x.data(), y.data()), Error);
  EXPECT_THROW(fill_batch(d, order, 0, 1, BatchGeometry{1, 0}, x.data(), y.data()), Error);
}

TEST(FillBatch, TensorOverloadChecksShapes) {
  const Dataset d = tiny_dataset();
  const std::vector<int64_t> order = {0, 1, 2};
  Tensor x(Shape{2, 3, 4, 4}, DType::f32);
  Tensor y(Shape{2}, DType::i32);
  fill_batch(d, order, 1, BatchGeometry{3, 2}, x, y);
  EXPECT_EQ(y.i32()[0], 5);
  EXPECT_EQ(x.f32()[2 * 16 + 5], 100.0f);  // sample 1, channel 2, (1,1) → source (0,0)
  Tensor wrong(Shape{2, 1, 4, 4}, DType::f32);
  try {
    fill_batch(d, order, 0, BatchGeometry{3, 2}, wrong, y);
    ADD_FAILURE() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape);
    EXPECT_NE(std::string(e.what()).find("[2,3,4,4]"), std::string::npos) << e.what();
  }
  Tensor wrong_y(Shape{2}, DType::i64);
  EXPECT_THROW(fill_batch(d, order, 0, BatchGeometry{3, 2}, x, wrong_y), Error);
}

TEST(HoldOut, SeededFractionSplitsEverySampleOnce) {
  const HoldOut parts = hold_out(1000, 0.1, 7);
  EXPECT_EQ(parts.validation.size(), 100u);
  EXPECT_EQ(parts.train.size(), 900u);
  EXPECT_TRUE(std::is_sorted(parts.train.begin(), parts.train.end()));
  EXPECT_TRUE(std::is_sorted(parts.validation.begin(), parts.validation.end()));
  std::vector<int64_t> all = parts.train;
  all.insert(all.end(), parts.validation.begin(), parts.validation.end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(1000);
  std::iota(expected.begin(), expected.end(), int64_t{0});
  EXPECT_EQ(all, expected);
  // The same seed draws the same part; another seed another; not just the first or last samples.
  EXPECT_EQ(hold_out(1000, 0.1, 7).validation, parts.validation);
  EXPECT_NE(hold_out(1000, 0.1, 8).validation, parts.validation);
  EXPECT_LT(parts.validation.front(), 500);
  EXPECT_GE(parts.validation.back(), 500);
  EXPECT_EQ(hold_out(10, 0.25, 1).validation.size(), 3u);  // round(2.5) away from zero
}

TEST(HoldOut, ZeroHoldsOutNothingAndBadFractionsAreRefused) {
  const HoldOut none = hold_out(5, 0.0, 3);
  EXPECT_TRUE(none.validation.empty());
  EXPECT_EQ(none.train, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  for (double bad : {-0.1, 1.0, 1.5, std::nan("")}) {
    try {
      hold_out(100, bad, 0);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("must be in [0, 1)"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(hold_out(10, 0.01, 0), Error);  // holds out round(0.1) = 0
  EXPECT_THROW(hold_out(10, 0.99, 0), Error);  // leaves nothing to train on
}

TEST(HoldOut, SubsetCopiesTheChosenSamples) {
  Dataset d;
  d.count = 3;
  d.rows = 1;
  d.cols = 2;
  d.images = {0.f, 0.1f, 1.f, 1.1f, 2.f, 2.1f};
  d.labels = {4, 5, 6};
  d.num_classes = 7;
  const Dataset s = subset(d, {2, 0});
  EXPECT_EQ(s.count, 2);
  EXPECT_EQ(s.images, (std::vector<float>{2.f, 2.1f, 0.f, 0.1f}));
  EXPECT_EQ(s.labels, (std::vector<int32_t>{6, 4}));
  EXPECT_EQ(s.num_classes, 7);
  EXPECT_THROW(subset(d, {3}), Error);
}

}  // namespace
}  // namespace parity
