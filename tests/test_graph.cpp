// tests/test_graph.cpp — the graph layer: build-time validation messages, autodiff structure
// (gradient summation), memory-plan safety, and the text dump.
#include <gtest/gtest.h>

#include "parity/parity.h"

namespace parity {
namespace {

// Expects `fn` to throw parity::Error whose message contains every fragment.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<const char*> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected parity::Error";
  } catch (const Error& e) {
    for (const char* f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

TEST(GraphBuilder, InfersShapesOfTheSeedCnn) {
  Graph g = build_forward(model_spec("seed-cnn"), 5);
  EXPECT_EQ(g.value(g.find("conv1")).shape, (Shape{5, 16, 28, 28}));
  EXPECT_EQ(g.value(g.find("pool2")).shape, (Shape{5, 32, 7, 7}));
  EXPECT_EQ(g.value(g.find("flatten")).shape, (Shape{5, 1568}));
  EXPECT_EQ(g.value(g.find("logits")).shape, (Shape{5, 10}));
  EXPECT_EQ(g.value(g.find("loss")).shape, (Shape{1}));
  Graph g112 = build_forward(model_spec("seed-cnn-112"), 2);
  EXPECT_EQ(g112.value(g112.find("fc1.weight")).shape, (Shape{128, 25088}));
}

TEST(GraphBuilder, RejectsBadOpsWithMessagesNamingOpValueAndRule) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3, 8, 8});
  Value w = b.parameter("w", Shape{4, 2, 3, 3});
  Value w3 = b.parameter("w3", Shape{4, 3, 3, 3});
  Value bias = b.parameter("b", Shape{4});
  expect_error([&] { b.conv2d(x, w, bias, 1, 1, "c1"); }, {"conv2d 'c1'", "input channels"});
  expect_error([&] { b.conv2d(x, w3, bias, 0, 1, "c2"); }, {"conv2d 'c2'", "stride must be > 0, got 0"});
  expect_error([&] { b.conv2d(x, w3, bias, 1, -1, "c3"); }, {"padding must be >= 0"});
  expect_error([&] { b.maxpool2d(x, 9, 1, "p"); }, {"maxpool2d 'p'", "larger than the input"});
  expect_error([&] { b.reshape(x, Shape{5, 5}, "r"); }, {"reshape 'r'", "element counts differ"});
  Value flat = b.input("f", Shape{2, 7});
  Value lw = b.parameter("lw", Shape{3, 8});
  Value lb = b.parameter("lb", Shape{3});
  expect_error([&] { b.linear(flat, lw, lb, "fc"); }, {"linear 'fc'", "input features"});
  Value labels = b.input("labels", Shape{3}, DType::i32);
  Value logits = b.input("logits", Shape{2, 10});
  expect_error([&] { b.softmax_xent(logits, labels, "xent"); }, {"softmax_xent 'xent'", "one entry per row"});
  expect_error([&] { b.input("x", Shape{1}); }, {"'x' is taken"});
  expect_error([&] { b.input("zero", Shape{0, 3}); }, {"'zero'", "dimensions must be > 0"});
}

TEST(Autodiff, SumsGradientsOfAValueThatFeedsSeveralNodes) {
  GraphBuilder b;
  Value x = b.input("x", Shape{4, 3});
  Value y = b.input("y", Shape{4}, DType::i32);
  Value w = b.parameter("w", Shape{5, 3});
  Value bias = b.parameter("b", Shape{5});
  Value h = b.linear(x, w, bias, "h");
  Value twice = b.add(h, h, "twice");  // h feeds both operands of one node
  Value r = b.relu(h, "r");            // and a second node
  Value z = b.add(twice, r, "z");
  Value loss = b.softmax_xent(z, y, "loss");
  Graph g = differentiate(b.graph(), loss, nullptr);
  int adds_into_h = 0;
  for (const Node& n : g.nodes())
    if (n.op == PARITY_OP_ADD && n.name.rfind("grad/h.sum", 0) == 0) ++adds_into_h;
  EXPECT_EQ(adds_into_h, 2);  // three contributions to dL/dh: two from `twice`, one from `r`
  EXPECT_TRUE(g.has("grad/w"));
  EXPECT_TRUE(g.has("grad/b"));
  EXPECT_FALSE(g.has("grad/x"));  // inputs get no gradient: nothing asks for it
}

TEST(Autodiff, AppendsOneOptimizerNodePerParameter) {
  Graph fwd = build_forward(model_spec("seed-cnn"), 2);
  OptimizerConfig adam;
  Graph g = differentiate(fwd, fwd.find("loss"), &adam);
  int steps = 0;
  for (const Node& n : g.nodes()) steps += n.op == PARITY_OP_ADAM_STEP;
  EXPECT_EQ(steps, 8);
  EXPECT_TRUE(g.has("optimizer.conv1.weight.exp_avg"));
  EXPECT_TRUE(g.has("optimizer.fc2.bias.exp_avg_sq"));
  EXPECT_TRUE(g.has(optimizer_step_name()));
  // conv1's input gradient is not needed (x is data): no backward-data node for it.
  for (const Node& n : g.nodes()) EXPECT_NE(n.name, "conv1.bwd_data");
  OptimizerConfig sgd;
  sgd.kind = OptimizerConfig::Kind::sgd;
  sgd.momentum = 0.9f;
  Graph gs = differentiate(fwd, fwd.find("loss"), &sgd);
  EXPECT_TRUE(gs.has("optimizer.fc1.weight.momentum_buffer"));
  EXPECT_TRUE(gs.has(optimizer_step_name()));  // ABI 5: the lr schedule counts SGD steps too
}

// clip_grad_norm: every gradient's squares summed to one element, the sums added, one CLIP_COEF,
// and each step fed its gradient times the factor; refused when not a finite number > 0.
TEST(Autodiff, GradientClippingScalesEveryGradientByOneFactor) {
  Graph fwd = build_forward(model_spec("seed-cnn"), 2);
  OptimizerConfig adam;
  adam.clip_grad_norm = 1.0f;
  Graph g = differentiate(fwd, fwd.find("loss"), &adam);
  int coefs = 0, sums = 0;
  for (const Node& n : g.nodes()) {
    coefs += n.op == PARITY_OP_CLIP_COEF;
    sums += n.op == PARITY_OP_REDUCE_SUM;
    if (n.op == PARITY_OP_ADAM_STEP) {
      const ValueInfo& grad = g.value(Value{n.inputs[1]});
      ASSERT_GE(grad.producer, 0) << grad.name;
      EXPECT_EQ(g.nodes()[static_cast<size_t>(grad.producer)].op, PARITY_OP_MUL) << n.name << " reads " << grad.name;
    }
  }
  EXPECT_EQ(coefs, 1);
  EXPECT_EQ(sums, 8);  // one per parameter
  adam.clip_grad_norm = -1.0f;
  try {
    differentiate(fwd, fwd.find("loss"), &adam);
    ADD_FAILURE() << "a negative clip_grad_norm was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("clip_grad_norm must be a finite number > 0"), std::string::npos) << e.what();
  }
}

TEST(Plan, ValuesAliveAtTheSameTimeNeverShareBytes) {
  Graph fwd = build_forward(model_spec("seed-cnn"), 3);
  OptimizerConfig adam;
  Graph g = differentiate(fwd, fwd.find("loss"), &adam);
  Plan plan(g, {"loss"});
  const auto& values = plan.values();
  const auto& nodes = plan.nodes();
  // Live interval per arena value: [producer, last reader]; kept values and inputs live to the end.
  std::vector<int> first(values.size(), 0), last(values.size(), -1);
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (int i = 0; i < nodes[n].num_outputs; ++i) first[static_cast<size_t>(nodes[n].outputs[i])] = static_cast<int>(n);
    for (int i = 0; i < nodes[n].num_outputs; ++i) last[static_cast<size_t>(nodes[n].outputs[i])] = static_cast<int>(n);
  }
  for (size_t n = 0; n < nodes.size(); ++n)
    for (int i = 0; i < nodes[n].num_inputs; ++i) last[static_cast<size_t>(nodes[n].inputs[i])] = static_cast<int>(n);
  int64_t total = 0;
  for (size_t v = 0; v < values.size(); ++v) {
    if (values[v].keep) last[v] = static_cast<int>(nodes.size());
    if (values[v].offset >= 0) total += values[v].bytes;
  }
  int overlaps = 0, aliases = 0;
  for (size_t a = 0; a < values.size(); ++a)
    for (size_t b = a + 1; b < values.size(); ++b) {
      if (values[a].offset < 0 || values[b].offset < 0) continue;
      bool live_together = first[a] <= last[b] && first[b] <= last[a];
      bool bytes_overlap = values[a].offset < values[b].offset + values[b].bytes &&
                           values[b].offset < values[a].offset + values[a].bytes;
      // The one exception: a reshape's output placed exactly on its input, which dies there.
      const parity_node_desc& maker = nodes[static_cast<size_t>(first[b])];
      const bool reshape_alias = values[a].offset == values[b].offset && first[b] == last[a] &&
                                 maker.op == PARITY_OP_RESHAPE && maker.inputs[0] == static_cast<int32_t>(a) &&
                                 maker.outputs[0] == static_cast<int32_t>(b);
      if (reshape_alias) ++aliases;
      if (live_together && bytes_overlap && !reshape_alias) {
        ++overlaps;
        ADD_FAILURE() << values[a].name << " and " << values[b].name << " share bytes while both alive";
      }
      EXPECT_LE(values[a].offset + values[a].bytes, plan.arena_bytes());
    }
  EXPECT_EQ(overlaps, 0);
  EXPECT_EQ(aliases, 2);  // flatten and its gradient: no copies
  EXPECT_LT(plan.arena_bytes(), total);  // the plan does reuse memory
  EXPECT_EQ(plan.values()[static_cast<size_t>(plan.value("conv1.weight"))].offset, -1);  // persistent: not in the arena
}

TEST(Dump, ListsValuesAndNodesWithParams) {
  Graph g = build_forward(model_spec("seed-cnn"), 1);
  std::string text = g.dump();
  EXPECT_NE(text.find("param conv1.weight f32 [16,1,3,3]"), std::string::npos) << text;
  EXPECT_NE(text.find("CONV2D(%0, %2, %3) 'conv1' stride=1x1 pad=1x1"), std::string::npos) << text;
  EXPECT_NE(text.find("MAXPOOL2D"), std::string::npos);
}

}  // namespace
}  // namespace parity
