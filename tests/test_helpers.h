// tests/test_helpers.h — random tensors and labels for tests, and bitwise comparison.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "parity/parity.h"

namespace parity::testing {

inline Tensor random_tensor(std::mt19937& rng, const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(shape, DType::f32);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return t;
}

inline Tensor random_labels(std::mt19937& rng, int64_t n, int classes) {
  Tensor t(Shape{n}, DType::i32);
  std::uniform_int_distribution<int> dist(0, classes - 1);
  for (int64_t i = 0; i < n; ++i) t.i32()[i] = dist(rng);
  return t;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace parity::testing
