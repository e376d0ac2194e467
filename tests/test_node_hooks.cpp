// tests/test_node_hooks.cpp — node hooks and value addresses (plugin ABI 8) through the table every
// backend is reached by: called in plan order, able to change a kept value in place between its
// producer and its reader, refusing bad points, stopping an execute with the hook's error, and
// refused clearly by backends that have none.
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "graph/compiled_step.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/graph.h"

namespace parity {
namespace {

// x [4] -> relu "y" -> add(y, y) "z" -> relu "w": three nodes, each output kept.
Graph three_nodes() {
  GraphBuilder b;
  Value x = b.input("x", Shape{4});
  Value y = b.relu(x, "y");
  Value z = b.add(y, y, "z");
  b.relu(z, "w");
  return b.take();
}

int32_t node_named(const Plan& plan, const std::string& name) {
  for (size_t i = 0; i < plan.nodes().size(); ++i)
    if (name == plan.nodes()[i].name) return static_cast<int32_t>(i);
  ADD_FAILURE() << "no node " << name;
  return -1;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class NodeHooks : public ::testing::TestWithParam<std::string> {};

TEST_P(NodeHooks, AreCalledInPlanOrderAndMayChangeAKeptValueBeforeItsReader) {
  std::unique_ptr<Backend> backend = create_backend(GetParam());
  CompiledStep step(*backend, three_nodes(), {"y", "z", "w"});
  const int32_t relu = node_named(step.plan(), "y"), add = node_named(step.plan(), "z"), last = node_named(step.plan(), "w");
  ASSERT_LT(relu, add);
  ASSERT_LT(add, last);
  const std::vector<parity_hook_point> points = {
      {relu, PARITY_HOOK_BEFORE}, {relu, PARITY_HOOK_AFTER}, {add, PARITY_HOOK_BEFORE}, {last, PARITY_HOOK_AFTER}};
  float* y = static_cast<float*>(step.executable().value_address(step.value("y")));
  ASSERT_NE(y, nullptr);
  std::vector<int32_t> calls;
  std::vector<float> y_at_after;
  step.executable().set_node_hooks(points, [&](int32_t point, void* stream) {
    EXPECT_EQ(stream, nullptr);  // host backends have no stream
    calls.push_back(point);
    if (point == 1) {  // after relu: y is complete; double it in place before add reads it
      y_at_after.assign(y, y + 4);
      for (int i = 0; i < 4; ++i) y[i] *= 2.0f;
    }
  });
  const float x[4] = {-1.0f, 0.5f, 2.0f, -3.0f};
  step.write(step.value("x"), x, sizeof x);
  step.execute();
  EXPECT_EQ(calls, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(y_at_after, (std::vector<float>{0.0f, 0.5f, 2.0f, 0.0f}));
  const Tensor z = step.read("z");
  EXPECT_EQ(std::vector<float>(z.f32(), z.f32() + 4), (std::vector<float>{0.0f, 2.0f, 8.0f, 0.0f}));

  // Removed: the next execute calls nothing and computes the plain result.
  step.executable().set_node_hooks({}, nullptr);
  calls.clear();
  step.execute();
  EXPECT_TRUE(calls.empty());
  const Tensor plain = step.read("z");
  EXPECT_EQ(std::vector<float>(plain.f32(), plain.f32() + 4), (std::vector<float>{0.0f, 1.0f, 4.0f, 0.0f}));
}

TEST_P(NodeHooks, AHookThatThrowsStopsTheExecuteWithItsError) {
  std::unique_ptr<Backend> backend = create_backend(GetParam());
  CompiledStep step(*backend, three_nodes(), {"y", "z", "w"});
  int calls = 0;
  step.executable().set_node_hooks({{0, PARITY_HOOK_AFTER}, {2, PARITY_HOOK_BEFORE}}, [&](int32_t, void*) {
    ++calls;
    throw Error(ErrorKind::io, "rank 1 is gone");
  });
  const float x[4] = {};
  step.write(step.value("x"), x, sizeof x);
  try {
    step.execute();
    FAIL() << "execute did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("rank 1 is gone"), std::string::npos) << e.what();
  }
  EXPECT_EQ(calls, 1);  // the second point is never reached
}

TEST_P(NodeHooks, PointsOutsideThePlanOrOutOfOrderAndUnkeptValuesAreRefused) {
  std::unique_ptr<Backend> backend = create_backend(GetParam());
  CompiledStep step(*backend, three_nodes(), {"z"});
  auto noop = [](int32_t, void*) {};
  const std::string outside = error_of([&] { step.executable().set_node_hooks({{3, PARITY_HOOK_AFTER}}, noop); });
  EXPECT_NE(outside.find("point 0 (node 3, when 1) is outside the plan's 3 nodes"), std::string::npos) << outside;
  const std::string order =
      error_of([&] { step.executable().set_node_hooks({{1, PARITY_HOOK_AFTER}, {1, PARITY_HOOK_BEFORE}}, noop); });
  EXPECT_NE(order.find("points must be in plan order"), std::string::npos) << order;
  const std::string when = error_of([&] { step.executable().set_node_hooks({{1, 7}}, noop); });
  EXPECT_NE(when.find("when must be PARITY_HOOK_BEFORE or PARITY_HOOK_AFTER"), std::string::npos) << when;
  // "y" is not kept: its memory may be reused, so it has no address to give.
  const std::string unkept = error_of([&] { step.executable().value_address(step.value("y")); });
  EXPECT_NE(unkept.find("'y'"), std::string::npos) << unkept;
  EXPECT_NE(unkept.find("keep"), std::string::npos) << unkept;
  EXPECT_NE(step.executable().value_address(step.value("z")), nullptr);
}

INSTANTIATE_TEST_SUITE_P(HostBackends, NodeHooks, ::testing::Values("cpu", "simt"));

TEST(NodeHooksRef, TheFloat64OracleHasNone) {
  // ref holds values in float64, so it has no f32 address to give a communicator.
  std::unique_ptr<Backend> backend = create_backend("ref");
  CompiledStep step(*backend, three_nodes(), {"z"});
  const std::string error = error_of([&] { step.executable().set_node_hooks({{0, PARITY_HOOK_AFTER}}, [](int32_t, void*) {}); });
  EXPECT_NE(error.find("no node hooks"), std::string::npos) << error;
}

}  // namespace
}  // namespace parity
