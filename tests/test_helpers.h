// tests/test_helpers.h — random tensors, labels and model batches for tests, bitwise comparison,
// and running a program as a user would.
#pragma once

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
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

// A model input batch: pixels uniform in [0, 1), labels uniform over the classes.
inline std::pair<Tensor, Tensor> random_batch(const ModelSpec& spec, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  return {random_tensor(rng, Shape{n, spec.channels, spec.height, spec.width}, 0.0f, 1.0f),
          random_labels(rng, n, spec.num_classes)};
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

struct CommandRun {
  int status;  // exit status; -1 when the program did not exit normally (a crash)
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, stderr joined to stdout.
inline CommandRun run_command(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace parity::testing
