// tests/test_op_list.cpp — the op list (parity/op_list.h) against what it feeds: every rule's
// name and arity, the lower-case names, the generated builder methods, the op named in shared
// shape errors, gradients emitted through NodeEmitter, and conformance cases for every op.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ops/conformance.h"
#include "ops/op_rule.h"
#include "parity/parity.h"

namespace parity {
namespace {

TEST(OpList, EveryRuleHasTheListsNameAndArity) {
  for (int i = 0; i < PARITY_OP_COUNT; ++i) {
    const parity_op op = static_cast<parity_op>(i);
    const ops::OpRule& rule = ops::rule(op);
    EXPECT_STREQ(rule.name, parity_op_name(op)) << i;
    EXPECT_EQ(rule.num_inputs, parity_op_info_of(op).num_inputs) << rule.name;
    EXPECT_EQ(rule.num_outputs, parity_op_info_of(op).num_outputs) << rule.name;
    std::string upper = ops::lower_name(op);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(upper, rule.name);
  }
}

TEST(OpList, NamesOutsideTheListAreUnknown) {
  EXPECT_STREQ(parity_op_name(PARITY_OP_COUNT), "UNKNOWN");
  EXPECT_STREQ(parity_op_name(static_cast<parity_op>(-1)), "UNKNOWN");
  EXPECT_EQ(parity_op_info_of(PARITY_OP_COUNT).num_inputs, -1);
  EXPECT_EQ(parity_op_info_of(PARITY_OP_COUNT).num_outputs, -1);
  EXPECT_STREQ(ops::lower_name(PARITY_OP_COUNT), "unknown");
  EXPECT_THROW(ops::rule(PARITY_OP_COUNT), Error);
}

// Appending ops must leave the ABI 1 values where they were.
TEST(OpList, EarlierEnumValuesAreUnchanged) {
  EXPECT_EQ(PARITY_OP_CONV2D, 0);
  EXPECT_EQ(PARITY_OP_RELU, 3);
  EXPECT_EQ(PARITY_OP_SOFTMAX_XENT, 11);
  EXPECT_EQ(PARITY_OP_FILL, 18);
  EXPECT_EQ(PARITY_OP_SIGMOID, 19);
  EXPECT_EQ(PARITY_OP_SIGMOID_BWD, 20);
  EXPECT_EQ(PARITY_ABI_VERSION, 4);  // 4: memory_need_without_device appended to the table
}

TEST(OpList, GeneratedBuilderMethodsAddTheirOp) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3});
  Value y = b.sigmoid(x, "s");
  EXPECT_EQ(b.graph().nodes().back().op, PARITY_OP_SIGMOID);
  EXPECT_EQ(b.graph().value(y).name, "s");
  EXPECT_EQ(b.graph().value(y).shape, (Shape{2, 3}));
  b.add(b.relu(x), y);
  EXPECT_EQ(b.graph().nodes().back().op, PARITY_OP_ADD);
  EXPECT_EQ(b.graph().nodes().back().name, "add_2");  // unnamed nodes take the lower-case op name
}

TEST(OpList, SharedShapeChecksNameTheOp) {
  GraphBuilder b;
  Value x = b.input("x", Shape{1, 2, 3, 3});
  Value w = b.input("w", Shape{4, 2, 3});
  Value bias = b.input("b", Shape{4});
  try {
    b.conv2d(x, w, bias, 1, 0, "c");
    ADD_FAILURE() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d 'c': weight 'w' must have rank 4, got shape [4,2,3]"),
              std::string::npos)
        << e.what();
  }
  Value labels = b.input("labels", Shape{2}, DType::f32);
  try {
    b.softmax_xent(b.input("logits", Shape{2, 5}), labels, "xent");
    ADD_FAILURE() << "expected a dtype error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("softmax_xent 'xent': labels 'labels' must be i32"), std::string::npos)
        << e.what();
  }
}

TEST(OpList, SigmoidDifferentiatesThroughItsOutput) {
  GraphBuilder b;
  Value x = b.input("x", Shape{4, 3});
  Value w = b.parameter("w", Shape{5, 3});
  Value bias = b.parameter("bias", Shape{5});
  Value logits = b.sigmoid(b.linear(x, w, bias, "fc"), "act");
  Value loss = b.softmax_xent(logits, b.input("labels", Shape{4}, DType::i32), "loss");
  const Graph g = differentiate(b.graph(), loss, nullptr);
  bool found = false;
  for (const Node& n : g.nodes())
    if (n.op == PARITY_OP_SIGMOID_BWD) {
      found = true;
      EXPECT_EQ(g.values()[static_cast<size_t>(n.inputs[0])].name, "act");  // y, not x
    }
  EXPECT_TRUE(found) << g.dump();
}

// A new op cannot be left out of `parity check ops`: every op appears in the built-in cases.
TEST(OpList, EveryOpHasConformanceCases) {
  ops::Draw draw(1, false);
  std::set<int> seen;
  for (const ops::OpCase& c : ops::builtin_cases(draw)) seen.insert(c.op);
  for (int op = 0; op < PARITY_OP_COUNT; ++op)
    EXPECT_TRUE(seen.count(op)) << parity_op_name(static_cast<parity_op>(op)) << " has no conformance case";
}

// `--op NAME --shape ...` finds a family through its rule file, and names them all when it cannot.
TEST(OpList, UserCasesComeFromTheRuleFiles) {
  ops::Draw draw(3, false);
  const std::vector<ops::OpCase> cases = ops::user_cases(draw, "sigmoid", {3, 5});
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].op, PARITY_OP_SIGMOID);
  EXPECT_EQ(cases[1].op, PARITY_OP_SIGMOID_BWD);
  EXPECT_EQ(cases[0].operands[0].tensor.shape(), (Shape{3, 5}));
  EXPECT_EQ(ops::user_cases(draw, "conv2d_bwd_data", {1, 1, 4, 4, 1, 3, 3}).size(), 3u);
  try {
    ops::user_cases(draw, "nosuchop", {1});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not an op family: conv2d, linear, relu"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sigmoid"), std::string::npos) << e.what();
  }
  EXPECT_NE(ops::shape_meanings().find("conv2d N,C,H,W,K,R,S[,stride[,pad]]"), std::string::npos);
}

}  // namespace
}  // namespace parity
