// tests/test_model_summary.cpp — `parity summary`'s numbers (model/model_summary.h) against the
// formulas of its FLOP convention, its training-step memory, its JSON, and the DOT of a graph
// (graph/dot.h).
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "graph/dot.h"
#include "model/model_summary.h"
#include "parity/error.h"
#include "parity/model.h"

namespace {

using namespace parity;

const LayerSummary& row(const ModelSummary& s, const std::string& name) {
  for (const LayerSummary& l : s.layers)
    if (l.name == name) return l;
  throw std::runtime_error("no row " + name);
}

TEST(ModelSummary, SeedCnnRowsFollowTheFlopConvention) {
  const int64_t n = 8;
  const ModelSummary s = summarize_model(model_spec("seed-cnn"), n);
  ASSERT_EQ(s.layers.size(), 12u);  // 10 layers, the loss and the accuracy count
  EXPECT_EQ(s.input, (Shape{n, 1, 28, 28}));
  const LayerSummary& conv1 = row(s, "conv1");
  EXPECT_EQ(conv1.op, "conv2d");
  EXPECT_EQ(conv1.output, (Shape{n, 16, 28, 28}));
  EXPECT_EQ(conv1.params, 16 * 1 * 3 * 3 + 16);
  const double outputs = double(n) * 16 * 28 * 28;
  EXPECT_DOUBLE_EQ(conv1.flops_forward, outputs * (2.0 * 1 * 3 * 3 + 1));  // 2*N*K*P*Q*C*R*S + bias
  // The first layer's input needs no gradient: only bwd_weight (2x the products, plus the bias sum).
  EXPECT_DOUBLE_EQ(conv1.flops_backward, outputs * (2.0 * 1 * 3 * 3 + 1));
  const LayerSummary& conv2 = row(s, "conv2");
  const double outputs2 = double(n) * 32 * 14 * 14;
  EXPECT_DOUBLE_EQ(conv2.flops_backward, 2 * outputs2 * 2.0 * 16 * 9 + outputs2);  // data + weight: ~2x forward
  const LayerSummary& fc1 = row(s, "fc1");
  EXPECT_DOUBLE_EQ(fc1.flops_forward, double(n) * 128 * (2.0 * 1568 + 1));
  EXPECT_EQ(row(s, "flatten").flops_forward, 0);
  EXPECT_EQ(row(s, "relu1").flops_forward, outputs);
  // maxpool's outputs include its i32 indices.
  EXPECT_EQ(row(s, "pool1").activation_bytes, 2 * n * 16 * 14 * 14 * 4);
  EXPECT_EQ(row(s, "pool1").op, "maxpool2d");
  EXPECT_EQ(row(s, "loss").op, "softmax_xent");
  // Totals are the sums of the rows; the backward total also holds the gradient seed and sums.
  double forward = 0, backward = 0;
  int64_t params = 0, activations = 0;
  for (const LayerSummary& l : s.layers) {
    forward += l.flops_forward;
    backward += l.flops_backward;
    params += l.params;
    activations += l.activation_bytes;
  }
  EXPECT_DOUBLE_EQ(s.flops_forward, forward);
  EXPECT_GE(s.flops_backward, backward);
  EXPECT_NEAR(s.flops_backward, backward, 1e-6 * backward);
  EXPECT_EQ(s.params, params);
  EXPECT_EQ(s.params, 206922);
  EXPECT_EQ(s.param_bytes, 4 * s.params);
  EXPECT_EQ(s.activation_bytes, activations);
  EXPECT_DOUBLE_EQ(s.flops_optimizer, 12.0 * s.params);  // adam
  EXPECT_EQ(s.persistent_bytes, 3 * s.param_bytes);      // weights, exp_avg, exp_avg_sq
  EXPECT_GT(s.arena_bytes, 0);
  EXPECT_GT(s.training_nodes, static_cast<int64_t>(s.layers.size()));
}

// with_input: the same layers on another geometry, the parameters re-derived; the model's own
// geometry gives the model back.
TEST(ModelSummary, AnotherInputGeometryRederivesTheParameters) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const ModelSpec same = with_input(spec, 1, 28, 28);
  EXPECT_EQ(same.name, "seed-cnn");
  ASSERT_EQ(same.params.size(), spec.params.size());
  const ModelSpec wide = with_input(spec, 3, 32, 32);
  EXPECT_EQ(wide.name, "seed-cnn at 3x32x32");
  const ModelSummary s = summarize_model(wide, 2);
  EXPECT_EQ(s.input, Shape({2, 3, 32, 32}));
  EXPECT_EQ(s.params, 448 + 4640 + 262272 + 1290);  // conv1, conv2, fc1 (2048 -> 128), fc2
  EXPECT_THROW(with_input(spec, 0, 28, 28), Error);
  EXPECT_THROW(with_input(spec, 1, 2, 2), Error);  // pool2 has no 2x2 window left
}

TEST(ModelSummary, RefusesABatchOfZero) {
  EXPECT_THROW(summarize_model(model_spec("seed-cnn"), 0), Error);
}

TEST(ModelSummary, MemoryOfACompiledStepOrWhyNot) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const BackendMemory cpu = training_step_memory(spec, 4, "cpu");
  EXPECT_TRUE(cpu.available) << cpu.why;
  EXPECT_EQ(cpu.backend, "cpu");
  EXPECT_GE(cpu.bytes, summarize_model(spec, 4).persistent_bytes);
  const BackendMemory cuda = training_step_memory(spec, 4, "cuda");
  if (!cuda.available) {
    EXPECT_NE(cuda.why.find("unavailable"), std::string::npos) << cuda.why;
  }
  EXPECT_THROW(training_step_memory(spec, 4, "nosuch"), Error);  // a typo is an error, not "unavailable"
}

// An unavailable backend with a device-free planner gives its upper bound beside the reason: the
// C test plugin `nodevice` answers the plan's arena plus its persistent values, so the figure is
// the summary's own; the JSON carries it.
TEST(ModelSummary, AnUnavailableBackendThatPlansWithoutADeviceGivesItsBound) {
  ::setenv("PARITY_BACKEND_PATH", PARITY_TEST_PLUGIN_DIR, 1);
  const ModelSpec& spec = model_spec("seed-cnn");
  const BackendMemory m = training_step_memory(spec, 4, "nodevice");
  ::unsetenv("PARITY_BACKEND_PATH");
  EXPECT_FALSE(m.available);
  EXPECT_NE(m.why.find("no device: the test driver reports 0 devices"), std::string::npos) << m.why;
  ASSERT_TRUE(m.planned.has_value());
  const ModelSummary s = summarize_model(spec, 4);
  EXPECT_EQ(m.planned->device_bytes, s.arena_bytes + s.persistent_bytes);
  EXPECT_EQ(m.planned->host_bytes, 4096);
  const nlohmann::json j = nlohmann::json::parse(model_summary_json(s, &m));
  const nlohmann::json& planned = j["training_step"]["backend"]["planned_without_device"];
  EXPECT_EQ(planned["device_bytes"], s.arena_bytes + s.persistent_bytes);
  EXPECT_EQ(planned["host_bytes"], 4096);
  EXPECT_EQ(planned["upper_bound"], true);
}

TEST(ModelSummary, JsonHoldsRowsTotalsAndTheBackend) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const ModelSummary s = summarize_model(spec, 2);
  BackendMemory m;
  m.backend = "cuda";
  m.why = "no driver";
  const nlohmann::json j = nlohmann::json::parse(model_summary_json(s, &m));
  EXPECT_EQ(j["model"], "seed-cnn");
  EXPECT_EQ(j["batch"], 2);
  EXPECT_EQ(j["layers"].size(), s.layers.size());
  EXPECT_EQ(j["layers"][0]["output"], nlohmann::json::array({2, 16, 28, 28}));
  EXPECT_EQ(j["totals"]["params"], s.params);
  EXPECT_EQ(j["training_step"]["arena_bytes"], s.arena_bytes);
  EXPECT_EQ(j["training_step"]["backend"]["available"], false);
  EXPECT_EQ(j["training_step"]["backend"]["reason"], "no driver");
  EXPECT_FALSE(j["flop_convention"].get<std::string>().empty());
}

TEST(GraphDot, ForwardAndTrainingGraphs) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const std::string fwd = graph_dot(build_forward(spec, 2), "seed-cnn \"forward\"");
  EXPECT_EQ(fwd.rfind("digraph \"seed-cnn \\\"forward\\\"\" {", 0), 0u) << fwd.substr(0, 80);
  EXPECT_NE(fwd.find("label=\"conv1\\nconv2d\""), std::string::npos);
  EXPECT_NE(fwd.find("conv1.weight\\n[16,1,3,3]"), std::string::npos);
  EXPECT_EQ(fwd.find("bwd"), std::string::npos);
  EXPECT_EQ(fwd.back(), '\n');
  const std::string train = graph_dot(build_training_step(spec, 2, {}), "step");
  EXPECT_NE(train.find("conv2.bwd_data"), std::string::npos);
  EXPECT_NE(train.find("adam/conv1.weight"), std::string::npos);
  EXPECT_NE(train.find("#fce5cd"), std::string::npos);  // the optimizer's colour
  EXPECT_EQ(dot_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
