// tests/test_memory_need.cpp — Backend::memory_need (ABI 3) of the built-in backends: exactly what
// compile then holds, without allocating, and less by the shared values when sharing.
#include <gtest/gtest.h>

#include "parity/parity.h"

namespace parity {
namespace {

Plan training_plan(const std::string& model, int64_t batch) {
  Graph fwd = build_forward(model_spec(model), batch);
  OptimizerConfig adam;
  return Plan(differentiate(fwd, fwd.find("loss"), &adam), {"loss", "correct"});
}

int64_t persistent_bytes(const Plan& plan) {
  int64_t bytes = 0;
  for (const parity_value_desc& v : plan.values())
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) bytes += v.bytes;
  return bytes;
}

class MemoryNeed : public ::testing::TestWithParam<const char*> {};

TEST_P(MemoryNeed, IsWhatTheCompiledExecutableHolds) {
  BackendOptions bo;
  bo.threads = 2;
  auto backend = create_backend(GetParam(), bo);
  for (const bool poison : {false, true}) {
    const Plan plan = training_plan("seed-cnn", 32);
    CompileOptions co;
    co.poison_outputs = poison;
    const std::optional<parity::MemoryNeed> need = backend->memory_need(plan.c_plan(), co, nullptr);
    ASSERT_TRUE(need.has_value()) << GetParam();
    EXPECT_EQ(need->device_bytes, 0);
    auto exe = backend->compile(plan.c_plan(), co, nullptr);
    EXPECT_EQ(need->host_bytes, exe->memory_bytes()) << GetParam() << " poison " << poison;

    // A second plan sharing the weights needs less: the shared values are already held.
    const Plan eval = training_plan("seed-cnn", 8);
    const auto shared_need = backend->memory_need(eval.c_plan(), co, exe.get());
    const auto alone_need = backend->memory_need(eval.c_plan(), co, nullptr);
    ASSERT_TRUE(shared_need && alone_need);
    EXPECT_LT(shared_need->host_bytes, alone_need->host_bytes) << GetParam();
    EXPECT_GT(persistent_bytes(eval), 0);
  }
}

TEST_P(MemoryNeed, GrowsWithTheBatch) {
  auto backend = create_backend(GetParam(), {});
  const auto small = backend->memory_need(training_plan("seed-cnn", 16).c_plan(), {}, nullptr);
  const auto large = backend->memory_need(training_plan("seed-cnn", 64).c_plan(), {}, nullptr);
  ASSERT_TRUE(small && large);
  EXPECT_GT(large->host_bytes, small->host_bytes);
}

INSTANTIATE_TEST_SUITE_P(BuiltIn, MemoryNeed, ::testing::Values("cpu", "simt", "ref"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace parity
