// tests/test_gpu_hooks.cpp — node hooks and value addresses (plugin ABI 8) of the GPU executor,
// run on the emulated device (the gpu_emu plugin) with its ordering checks: hooks called in plan
// order with the compute stream as the nodes are queued, a hook changing a kept value in place
// through work on that stream before the next node reads it, every execute calling them (no graph
// is captured or replayed while they are set), a failing hook stopping the execute with its error
// and leaving the executable usable, and bad points and values without a stable address refused.
// The hooks reach the emulated device through the stream they are given (emu::StreamOnDevice),
// with this test's own copy of the runtime linked in, as a CUDA caller would use the cudaStream_t.
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/gpu_emu/emu_runtime.h"
#include "graph/compiled_step.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/graph.h"

namespace parity {
namespace {

// x [4] -> relu "y" -> add(y, y) "z" -> relu "w": three nodes, each output kept (as in
// tests/test_node_hooks.cpp).
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

std::vector<float> read4(CompiledStep& step, const std::string& name) {
  const Tensor t = step.read(name);
  return std::vector<float>(t.f32(), t.f32() + 4);
}

// The stream a hook is given, checked to be the emulated device's.
emu::StreamOnDevice& on_device(void* stream) {
  EXPECT_NE(stream, nullptr);
  auto* on = static_cast<emu::StreamOnDevice*>(stream);
  EXPECT_NE(on->device, nullptr);
  EXPECT_TRUE(static_cast<bool>(on->stream));
  return *on;
}

// Device bytes to the host through the stream: the copy into pageable memory returns once the
// stream's work up to it has run, as cudaMemcpyAsync into pageable memory does.
std::vector<float> device_floats(emu::StreamOnDevice& on, const void* device, size_t count) {
  std::vector<float> host(count);
  on.device->memcpy_async(host.data(), device, count * 4, emu::CopyKind::device_to_host, on.stream, "hook: read");
  return host;
}

// Five executes with hooks: the first of each input slot eager, the later ones where the
// executor would capture (the second use of a slot) and replay (the third) without hooks. Every
// one calls the hooks in plan order with the compute stream, and the hook after relu, reading y
// on that stream and writing 2y back on it, changes what add reads. Then the hooks go, and the
// plain result comes back on the following executes (captured and replayed again).
TEST(GpuHooks, EveryExecuteCallsThemInPlanOrderAndAKeptValueChangedOnTheStreamIsRead) {
  std::unique_ptr<Backend> backend = create_backend("gpu_emu");
  CompiledStep step(*backend, three_nodes(), {"y", "z", "w"});
  const int32_t relu = node_named(step.plan(), "y"), add = node_named(step.plan(), "z"), last = node_named(step.plan(), "w");
  ASSERT_LT(relu, add);
  ASSERT_LT(add, last);
  const std::vector<parity_hook_point> points = {
      {relu, PARITY_HOOK_BEFORE}, {relu, PARITY_HOOK_AFTER}, {add, PARITY_HOOK_BEFORE}, {last, PARITY_HOOK_AFTER}};
  float* y = static_cast<float*>(step.executable().value_address(step.value("y")));
  ASSERT_NE(y, nullptr);
  std::vector<int32_t> calls;
  std::vector<void*> streams;
  std::vector<float> y_at_after;
  step.executable().set_node_hooks(points, [&](int32_t point, void* stream) {
    calls.push_back(point);
    streams.push_back(stream);
    if (point != 1) return;
    // After relu is queued: y read through the stream is relu's output (were the hook called
    // before relu is queued, it would read the previous execute's y, or NaN on the first).
    emu::StreamOnDevice& on = on_device(stream);
    y_at_after = device_floats(on, y, 4);
    std::vector<float> doubled = y_at_after;
    for (float& v : doubled) v *= 2.0f;
    // Pageable source: read now, written on the stream before add, which is queued after this.
    on.device->memcpy_async(y, doubled.data(), 16, emu::CopyKind::host_to_device, on.stream, "hook: 2y");
  });
  for (int round = 0; round < 5; ++round) {
    const float x[4] = {-1.0f, 0.5f + static_cast<float>(round), 2.0f, -3.0f};
    calls.clear();
    streams.clear();
    y_at_after.clear();
    step.write(step.value("x"), x, sizeof x);
    step.execute();
    EXPECT_EQ(calls, (std::vector<int32_t>{0, 1, 2, 3})) << "execute " << round;
    ASSERT_EQ(streams.size(), 4u);
    for (void* s : streams) EXPECT_EQ(s, streams[0]) << "one compute stream";
    EXPECT_EQ(y_at_after, (std::vector<float>{0.0f, x[1], 2.0f, 0.0f})) << "execute " << round;
    // z = 2y + 2y, from the y the hook doubled: exact in float32 (small integers and halves).
    EXPECT_EQ(read4(step, "z"), (std::vector<float>{0.0f, 4 * x[1], 8.0f, 0.0f})) << "execute " << round;
    EXPECT_EQ(read4(step, "y"), (std::vector<float>{0.0f, 2 * x[1], 4.0f, 0.0f})) << "execute " << round;
  }

  // Removed: the next executes call nothing and compute the plain result (the slots now capture
  // and replay their graphs).
  step.executable().set_node_hooks({}, nullptr);
  for (int round = 0; round < 3; ++round) {
    const float x[4] = {-1.0f, 0.5f + static_cast<float>(round), 2.0f, -3.0f};
    calls.clear();
    step.write(step.value("x"), x, sizeof x);
    step.execute();
    EXPECT_TRUE(calls.empty());
    EXPECT_EQ(read4(step, "z"), (std::vector<float>{0.0f, 2 * x[1], 4.0f, 0.0f})) << "plain execute " << round;
  }
}

// The hook fails at the AFTER point of the first node, with relu already queued reading the
// input slot: execute throws the hook's error, the second point is never reached, and the next
// write into that slot waits for the queued part (otherwise the ordering checks report it racing
// that part: host_write_while_queued on the slot's staging memory), so the executable computes on.
TEST(GpuHooks, AFailingHookStopsTheExecuteWithItsErrorAndTheExecutableRunsOn) {
  std::unique_ptr<Backend> backend = create_backend("gpu_emu");
  CompiledStep step(*backend, three_nodes(), {"y", "z", "w"});
  int calls = 0;
  step.executable().set_node_hooks({{0, PARITY_HOOK_AFTER}, {2, PARITY_HOOK_BEFORE}}, [&](int32_t, void*) {
    ++calls;
    throw Error(ErrorKind::io, "rank 1 is gone");
  });
  const float x[4] = {1.0f, -2.0f, 3.0f, 0.25f};
  step.write(step.value("x"), x, sizeof x);
  try {
    step.execute();
    FAIL() << "execute did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("rank 1 is gone"), std::string::npos) << e.what();
  }
  EXPECT_EQ(calls, 1);  // the second point is never reached

  step.executable().set_node_hooks({}, nullptr);
  for (int round = 0; round < 3; ++round) {
    const float again[4] = {1.0f, -2.0f, 3.0f + static_cast<float>(round), 0.25f};
    step.write(step.value("x"), again, sizeof again);
    step.execute();
    EXPECT_EQ(read4(step, "z"), (std::vector<float>{2.0f, 0.0f, 2 * again[2], 0.5f})) << "execute " << round;
  }
}

TEST(GpuHooks, BadPointsAndValuesWithoutAStableAddressAreRefused) {
  std::unique_ptr<Backend> backend = create_backend("gpu_emu");
  CompiledStep step(*backend, three_nodes(), {"z"});
  auto noop = [](int32_t, void*) {};
  const std::string outside = error_of([&] { step.executable().set_node_hooks({{3, PARITY_HOOK_AFTER}}, noop); });
  EXPECT_NE(outside.find("gpu_emu: set_node_hooks: point 0 (node 3, when 1) is outside the plan's 3 nodes"),
            std::string::npos)
      << outside;
  const std::string order =
      error_of([&] { step.executable().set_node_hooks({{1, PARITY_HOOK_AFTER}, {1, PARITY_HOOK_BEFORE}}, noop); });
  EXPECT_NE(order.find("points must be in plan order"), std::string::npos) << order;
  const std::string when = error_of([&] { step.executable().set_node_hooks({{1, 7}}, noop); });
  EXPECT_NE(when.find("when must be PARITY_HOOK_BEFORE or PARITY_HOOK_AFTER"), std::string::npos) << when;
  // "y" is not kept: its memory may be reused, so it has no address to give.
  const std::string unkept = error_of([&] { step.executable().value_address(step.value("y")); });
  EXPECT_NE(unkept.find("'y'"), std::string::npos) << unkept;
  EXPECT_NE(unkept.find("keep"), std::string::npos) << unkept;
  // An INPUT moves between the two input slots.
  const std::string input = error_of([&] { step.executable().value_address(step.value("x")); });
  EXPECT_NE(input.find("'x'"), std::string::npos) << input;
  EXPECT_NE(input.find("INPUT"), std::string::npos) << input;
  const std::string unknown = error_of([&] { step.executable().value_address(1000); });
  EXPECT_NE(unknown.find("no such value"), std::string::npos) << unknown;
  EXPECT_NE(step.executable().value_address(step.value("z")), nullptr);
}

// The address of a PARAM is its own storage: a hook reading it through the stream sees what
// write gave it, and the kept output the one the plan computes from it.
TEST(GpuHooks, AParamsAddressHoldsItsBytes) {
  GraphBuilder b;
  b.add(b.relu(b.input("x", Shape{4}), "y"), b.parameter("p", Shape{4}), "z");
  std::unique_ptr<Backend> backend = create_backend("gpu_emu");
  CompiledStep step(*backend, b.take(), {"z"});
  const void* p_at = step.executable().value_address(step.value("p"));
  const void* z_at = step.executable().value_address(step.value("z"));
  ASSERT_NE(p_at, nullptr);
  ASSERT_NE(z_at, nullptr);
  const float x[4] = {-1.0f, 1.0f, 2.0f, -2.0f}, pv[4] = {10.0f, 20.0f, 30.0f, 40.0f};
  step.write(step.value("x"), x, sizeof x);
  step.write(step.value("p"), pv, sizeof pv);
  std::vector<float> p_seen, z_seen;
  const int32_t last = static_cast<int32_t>(step.plan().nodes().size()) - 1;
  step.executable().set_node_hooks({{last, PARITY_HOOK_AFTER}}, [&](int32_t, void* stream) {
    emu::StreamOnDevice& on = on_device(stream);
    p_seen = device_floats(on, p_at, 4);
    z_seen = device_floats(on, z_at, 4);
  });
  step.execute();
  EXPECT_EQ(p_seen, (std::vector<float>{10.0f, 20.0f, 30.0f, 40.0f}));
  EXPECT_EQ(z_seen, (std::vector<float>{10.0f, 21.0f, 32.0f, 40.0f}));
  EXPECT_EQ(read4(step, "z"), z_seen);
}

}  // namespace
}  // namespace parity
