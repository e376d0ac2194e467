// tests/test_cpu_softmax_concat.cpp — the cpu backend's softmax, log_softmax, concat and slice
// give the same bits at any thread count (a fixed split and lane-order sums), over rows, strided
// channel lanes wider than one lane block, and a concat tree with its slices backward.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "graph/compiled_step.h"
#include "parity/parity.h"

namespace parity {
namespace {

std::vector<Tensor> run_on_cpu(int threads, const Graph& g, const std::vector<std::string>& keep,
                               const std::vector<std::pair<std::string, Tensor>>& inputs) {
  BackendOptions bo;
  bo.threads = threads;
  std::unique_ptr<Backend> cpu = create_backend("cpu", bo);
  CompiledStep step(*cpu, g, keep);
  for (const auto& in : inputs) step.write(in.first, in.second);
  step.execute();
  std::vector<Tensor> out;
  for (const std::string& name : keep) out.push_back(step.read(name));
  return out;
}

TEST(CpuSoftmaxConcat, BitwiseTheSameAtAnyThreadCount) {
  GraphBuilder b;
  Value x = b.parameter("x", Shape{8, 24, 13, 11});  // 143 lanes per image: more than one block of 64
  Value rows = b.parameter("rows", Shape{300, 37});
  Value s = b.softmax(x, 1, "s");
  Value ls = b.log_softmax(rows, -1, "ls");
  Value cat = b.concat({s, s, s, s, s, s, s}, "cat");  // seven inputs: a tree of two nodes; 7 slices backward
  Value loss = b.add(b.softmax_xent(b.log_softmax(b.flatten(cat), 1, "lsflat"), b.input("labels", Shape{8}, DType::i32),
                                    "xent"),
                     b.softmax_xent(ls, b.input("labels300", Shape{300}, DType::i32), "xent300"), "loss");
  const Graph g = differentiate(b.graph(), loss, nullptr);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  auto random = [&](const Shape& shape) {
    Tensor t(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
    return t;
  };
  Tensor labels(Shape{8}, DType::i32), labels300(Shape{300}, DType::i32);
  for (int i = 0; i < 8; ++i) labels.i32()[i] = i * 97;
  for (int i = 0; i < 300; ++i) labels300.i32()[i] = i % 37;
  const std::vector<std::pair<std::string, Tensor>> inputs{
      {"x", random(Shape{8, 24, 13, 11})}, {"rows", random(Shape{300, 37})}, {"labels", labels}, {"labels300", labels300}};
  const std::vector<std::string> keep{"s", "ls", "cat", grad_name("x"), grad_name("rows")};
  const std::vector<Tensor> one = run_on_cpu(1, g, keep, inputs);
  const std::vector<Tensor> many = run_on_cpu(4, g, keep, inputs);
  for (size_t i = 0; i < keep.size(); ++i) {
    ASSERT_EQ(one[i].nbytes(), many[i].nbytes()) << keep[i];
    EXPECT_EQ(std::memcmp(one[i].data(), many[i].data(), one[i].nbytes()), 0) << keep[i];
  }
  // Each softmax lane sums to 1 (channels of image 0 at position 0, a row).
  double sum = 0;
  for (int c = 0; c < 24; ++c) sum += one[0].f32()[c * 143];
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

}  // namespace
}  // namespace parity
