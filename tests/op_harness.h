// tests/op_harness.h — runs one op (or a small graph) on a named backend through the public
// API with NaN-poisoned outputs, and compares results with the error metrics of DESIGN.md.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "parity/parity.h"

namespace parity::testing {

// A operand of an op under test: its tensor and, for optimizer steps, its value kind.
struct Operand {
  Tensor tensor;
  parity_value_kind kind = PARITY_VALUE_INPUT;
};

// Builds a one-node graph, compiles it on `backend` with poisoned outputs, writes the operands,
// executes, and returns the outputs followed by the updated PARAM/STATE operands.
inline std::vector<Tensor> run_op(const std::string& backend, parity_op op, const parity_op_params& params,
                                  const std::vector<Operand>& operands, int threads = 0) {
  GraphBuilder b;
  std::vector<Value> ins;
  for (size_t i = 0; i < operands.size(); ++i) {
    const Operand& o = operands[i];
    std::string name = "in" + std::to_string(i);
    if (o.kind == PARITY_VALUE_PARAM) ins.push_back(b.parameter(name, o.tensor.shape()));
    else if (o.kind == PARITY_VALUE_STATE) ins.push_back(b.state(name, o.tensor.shape()));
    else ins.push_back(b.input(name, o.tensor.shape(), o.tensor.dtype()));
  }
  std::vector<Value> outs = b.node(op, params, ins, "op");
  Graph g = b.take();
  std::vector<std::string> keep;
  for (Value v : outs) keep.push_back(g.value(v).name);
  Plan plan(g, keep);
  BackendOptions bo;
  bo.threads = threads;
  auto be = create_backend(backend, bo);
  CompileOptions co;
  co.poison_outputs = true;
  auto exe = be->compile(plan.c_plan(), co, nullptr);
  for (size_t i = 0; i < operands.size(); ++i)
    exe->write(plan.value("in" + std::to_string(i)), operands[i].tensor.data(), operands[i].tensor.nbytes());
  exe->execute();
  std::vector<Tensor> results;
  for (Value v : outs) {
    const ValueInfo& info = g.value(v);
    Tensor t(info.shape, info.dtype);
    exe->read(plan.value(info.name), t.data(), t.nbytes());
    results.push_back(std::move(t));
  }
  for (size_t i = 0; i < operands.size(); ++i)
    if (operands[i].kind != PARITY_VALUE_INPUT) {
      Tensor t(operands[i].tensor.shape(), DType::f32);
      exe->read(plan.value("in" + std::to_string(i)), t.data(), t.nbytes());
      results.push_back(std::move(t));
    }
  return results;
}

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

struct Comparison {
  double nmse = 0;         // sum (a-b)^2 / sum b^2  (b the reference)
  double max_abs = 0;
  int64_t mismatched_nonfinite = 0;  // NaN/Inf in one and not the other
};

inline Comparison compare(const Tensor& got, const Tensor& want) {
  Comparison c;
  EXPECT_EQ(got.shape(), want.shape());
  EXPECT_EQ(got.dtype(), want.dtype());
  double err = 0, norm = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    double a = got.dtype() == DType::f32 ? got.f32()[i] : got.i32()[i];
    double b = want.dtype() == DType::f32 ? want.f32()[i] : want.i32()[i];
    if (std::isfinite(a) != std::isfinite(b)) {
      ++c.mismatched_nonfinite;
      continue;
    }
    if (!std::isfinite(b)) continue;
    err += (a - b) * (a - b);
    norm += b * b;
    c.max_abs = std::max(c.max_abs, std::fabs(a - b));
  }
  c.nmse = norm > 0 ? err / norm : err;
  return c;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace parity::testing
