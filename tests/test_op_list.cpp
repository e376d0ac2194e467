// tests/test_op_list.cpp — the op list (parity/op_list.h) against what it feeds: every rule's
// name and arity, the lower-case names, the generated builder methods, the op named in shared
// shape errors, gradients emitted through NodeEmitter, and conformance cases for every op.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "graph/compiled_step.h"
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
  EXPECT_EQ(parity_op_info_of(PARITY_OP_COUNT).min_inputs, -1);
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
  EXPECT_EQ(PARITY_OP_TANH, 21);  // ABI 4: the activations of issue #12, appended
  EXPECT_EQ(PARITY_OP_TANH_BWD, 22);
  EXPECT_EQ(PARITY_OP_LEAKY_RELU, 23);
  EXPECT_EQ(PARITY_OP_LEAKY_RELU_BWD, 24);
  EXPECT_EQ(PARITY_OP_GELU, 25);
  EXPECT_EQ(PARITY_OP_GELU_BWD, 26);
  EXPECT_EQ(PARITY_OP_HARDTANH, 27);
  EXPECT_EQ(PARITY_OP_HARDTANH_BWD, 28);
  EXPECT_EQ(PARITY_OP_SOFTMAX, 29);  // ABI 5: softmax, log_softmax, concat of issue #12, appended
  EXPECT_EQ(PARITY_OP_SOFTMAX_BWD, 30);
  EXPECT_EQ(PARITY_OP_LOG_SOFTMAX, 31);
  EXPECT_EQ(PARITY_OP_LOG_SOFTMAX_BWD, 32);
  EXPECT_EQ(PARITY_OP_CONCAT, 33);
  EXPECT_EQ(PARITY_OP_SLICE, 34);
  EXPECT_EQ(PARITY_OP_COUNT, 35);
  EXPECT_EQ(sizeof(parity_op_params), 64u);  // the params structs fit in `reserved`
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

// The backwards of leaky_relu, gelu and hardtanh read the forward *input* (torch's gradients at
// the kinks need x), tanh's the output; the params travel to the backward node.
TEST(OpList, ActivationsDifferentiateThroughTheirInputOrOutput) {
  GraphBuilder b;
  Value x = b.input("x", Shape{4, 3});
  Value w = b.parameter("w", Shape{5, 3});
  Value bias = b.parameter("bias", Shape{5});
  Value h = b.linear(x, w, bias, "fc");
  Value a = b.add(b.add(b.tanh(h, "t"), b.leaky_relu(h, 0.2f, "lr"), "s1"), b.add(b.gelu(h, "g"), b.relu6(h, "r6"), "s2"),
                  "s");
  Value loss = b.softmax_xent(b.hardtanh(a, -0.5f, 2.0f, "ht"), b.input("labels", Shape{4}, DType::i32), "loss");
  const Graph g = differentiate(b.graph(), loss, nullptr);
  int found = 0;
  for (const Node& n : g.nodes()) {
    const std::string first = g.values()[static_cast<size_t>(n.inputs.empty() ? 0 : n.inputs[0])].name;
    if (n.op == PARITY_OP_TANH_BWD) {
      EXPECT_EQ(first, "t");  // y, not x
      ++found;
    }
    if (n.op == PARITY_OP_LEAKY_RELU_BWD) {
      EXPECT_EQ(first, "fc");  // x
      EXPECT_EQ(n.params.leaky_relu.negative_slope, 0.2f);
      ++found;
    }
    if (n.op == PARITY_OP_GELU_BWD) {
      EXPECT_EQ(first, "fc");
      ++found;
    }
    if (n.op == PARITY_OP_HARDTANH_BWD) {
      EXPECT_TRUE(first == "fc" || first == "s") << first;
      EXPECT_EQ(first == "fc" ? n.params.hardtanh.max_val : n.params.hardtanh.min_val,
                first == "fc" ? 6.0f : -0.5f);  // relu6's max_val; the clamp's min_val
      ++found;
    }
  }
  EXPECT_EQ(found, 5) << g.dump();
  const std::string dump = b.graph().dump();
  EXPECT_NE(dump.find("LEAKY_RELU(%"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'lr' negative_slope=0.2"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'r6' min_val=0 max_val=6"), std::string::npos) << dump;
}

// Bad params are refused when the node is built, naming the op, the node, the param and the rule.
TEST(OpList, ActivationParamsAreCheckedAtBuildTime) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3});
  auto message_of = [&](auto&& build) -> std::string {
    try {
      build();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message_of([&] { b.hardtanh(x, 1.0f, -1.0f, "clamp"); })
                .find("hardtanh 'clamp': min_val must be <= max_val, got min_val 1 > max_val -1"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.hardtanh(x, std::nanf(""), 1.0f, "clamp_nan"); })
                .find("hardtanh 'clamp_nan': min_val and max_val must not be NaN"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.leaky_relu(x, INFINITY, "lr"); })
                .find("leaky_relu 'lr': negative_slope must be finite, got inf"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.leaky_relu(x, std::nanf(""), "lr_nan"); }).find("negative_slope must be finite"),
            std::string::npos);
  b.hardtanh(x, 0.5f, 0.5f, "point");  // min_val == max_val is allowed, as in torch
  b.leaky_relu(x, -2.0f, "negative");  // any finite slope
  EXPECT_EQ(b.graph().nodes().size(), 2u);
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

// ---------------------------------------------------------------------------------------------
// softmax, log_softmax (a dim param, negative from the end, 1 by default) and concat (variadic
// up to PARITY_MAX_NODE_INPUTS, longer ones split by the builder; one SLICE per input backward).

TEST(OpList, ConcatIsTheOnlyVariadicOp) {
  for (int i = 0; i < PARITY_OP_COUNT; ++i) {
    const parity_op_info info = parity_op_info_of(static_cast<parity_op>(i));
    if (i == PARITY_OP_CONCAT) {
      EXPECT_EQ(info.min_inputs, 1);
      EXPECT_EQ(info.num_inputs, PARITY_MAX_NODE_INPUTS);
    } else {
      EXPECT_EQ(info.min_inputs, info.num_inputs) << info.name;
    }
  }
}

TEST(OpList, SoftmaxTakesItsDimAndDifferentiatesThroughItsOutput) {
  GraphBuilder b;
  Value x = b.parameter("x", Shape{4, 3, 2, 2});
  Value s = b.softmax(x, 1, "s");
  Value ls = b.log_softmax(s, -3, "ls");  // dim 1 of a rank-4 value, counted from the end
  Value loss = b.softmax_xent(b.flatten(ls, "flat"), b.input("labels", Shape{4}, DType::i32), "loss");
  EXPECT_EQ(b.graph().value(s).shape, (Shape{4, 3, 2, 2}));
  const std::string dump = b.graph().dump();
  EXPECT_NE(dump.find("'s' dim=1"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'ls' dim=-3"), std::string::npos) << dump;
  const Graph g = differentiate(b.graph(), loss, nullptr);
  int found = 0;
  for (const Node& n : g.nodes()) {
    if (n.op != PARITY_OP_SOFTMAX_BWD && n.op != PARITY_OP_LOG_SOFTMAX_BWD) continue;
    const std::string first = g.values()[static_cast<size_t>(n.inputs[0])].name;
    EXPECT_EQ(first, n.op == PARITY_OP_SOFTMAX_BWD ? "s" : "ls");  // y, not x
    EXPECT_EQ(n.params.softmax.dim, n.op == PARITY_OP_SOFTMAX_BWD ? 1 : -3);
    ++found;
  }
  EXPECT_EQ(found, 2) << g.dump();
  // Zero-initialised params mean dim 1 (has_dim == 0), as plugins and old code build them.
  parity_op_params zero{};
  EXPECT_EQ(b.graph().value(b.node(PARITY_OP_SOFTMAX, zero, {x}, "zero")[0]).shape, (Shape{4, 3, 2, 2}));
}

std::string message_of(const std::function<void()>& build, ErrorKind* kind = nullptr) {
  try {
    build();
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    return e.what();
  }
  return "";
}

TEST(OpList, SoftmaxRefusesADimOutsideTheValue) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3});
  ErrorKind kind = ErrorKind::internal;
  EXPECT_NE(message_of([&] { b.softmax(x, 2, "sm"); }, &kind).find("softmax 'sm': dim must be in [-2, 2) for 'x' [2,3], got 2"),
            std::string::npos);
  EXPECT_EQ(kind, ErrorKind::invalid_argument);
  EXPECT_NE(message_of([&] { b.log_softmax(x, -3, "lsm"); }).find("log_softmax 'lsm': dim must be in [-2, 2)"),
            std::string::npos);
  Value v = b.input("v", Shape{5});
  parity_op_params zero{};
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_SOFTMAX, zero, {v}, "default"); }).find("got 1 (the default)"),
            std::string::npos);
  Value labels = b.input("labels", Shape{2}, DType::i32);
  EXPECT_NE(message_of([&] { b.softmax(labels, 0, "ints"); }).find("must be f32"), std::string::npos);
  b.softmax(v, 0, "rank1");  // dim 0 of a vector is fine
  b.softmax(x, -1, "last");
}

TEST(OpList, ConcatJoinsDim1AndDifferentiatesIntoSlices) {
  GraphBuilder b;
  Value a = b.input("a", Shape{2, 3, 4, 4});
  Value c = b.input("c", Shape{2, 5, 4, 4});
  Value y = b.concat({a, c}, "cat");
  EXPECT_EQ(b.graph().value(y).shape, (Shape{2, 8, 4, 4}));
  Value w = b.parameter("w", Shape{3, 128});
  Value bias = b.parameter("bias", Shape{3});
  Value loss = b.softmax_xent(b.linear(b.flatten(y), w, bias, "fc"), b.input("labels", Shape{2}, DType::i32), "loss");
  (void)loss;
  GraphBuilder g2;
  Value p = g2.parameter("p", Shape{2, 3});
  Value q = g2.parameter("q", Shape{2, 1});
  Value j = g2.concat({p, q, p}, "join");
  EXPECT_EQ(g2.graph().value(j).shape, (Shape{2, 7}));
  Value l = g2.softmax_xent(j, g2.input("labels", Shape{2}, DType::i32), "loss");
  const Graph g = differentiate(g2.graph(), l, nullptr);
  std::vector<std::pair<int32_t, int32_t>> slices;
  for (const Node& n : g.nodes())
    if (n.op == PARITY_OP_SLICE) slices.emplace_back(n.params.slice.start, n.params.slice.length);
  EXPECT_EQ(slices, (std::vector<std::pair<int32_t, int32_t>>{{0, 3}, {3, 1}, {4, 3}})) << g.dump();
  const std::string dump = g.dump();
  EXPECT_NE(dump.find("start=3 length=1"), std::string::npos) << dump;
}

TEST(OpList, ConcatOfMoreInputsThanANodeHoldsIsATree) {
  GraphBuilder b;
  std::vector<Value> inputs;
  int64_t channels = 0;
  for (int i = 0; i < 15; ++i) {
    inputs.push_back(b.input("x" + std::to_string(i), Shape{2, i + 1, 3}));
    channels += i + 1;
  }
  Value y = b.concat(inputs, "big");
  EXPECT_EQ(b.graph().value(y).shape, (Shape{2, channels, 3}));
  int nodes = 0;
  for (const Node& n : b.graph().nodes()) {
    EXPECT_EQ(n.op, PARITY_OP_CONCAT);
    EXPECT_LE(n.inputs.size(), static_cast<size_t>(PARITY_MAX_NODE_INPUTS));
    ++nodes;
  }
  EXPECT_EQ(nodes, 4);  // parts of 6, 6 and (the last 3) 3, then one of the three parts
  EXPECT_EQ(b.graph().nodes().back().name, "big");
  EXPECT_NE(b.graph().dump().find("big.part0"), std::string::npos);
  // The order of the channels is the inputs' order: ref computes it like one big concat.
  std::vector<Tensor> values;
  std::unique_ptr<Backend> ref = create_backend("ref");
  CompiledStep step(b.graph(), {"big"});
  step.compile(*ref);
  std::vector<float> expected;
  for (int i = 0; i < 15; ++i) {
    Tensor t(Shape{2, i + 1, 3}, DType::f32);
    for (int64_t e = 0; e < t.numel(); ++e) t.f32()[e] = float(i * 1000 + e);
    step.write("x" + std::to_string(i), t);
    values.push_back(t);
  }
  step.execute();
  const Tensor got = step.read("big");
  int64_t at = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int i = 0; i < 15; ++i)
      for (int64_t e = 0; e < (i + 1) * 3; ++e) EXPECT_EQ(got.f32()[at++], values[size_t(i)].f32()[n * (i + 1) * 3 + e]);
}

TEST(OpList, ConcatRefusesMismatchesNamingTheNodeAndTheRule) {
  GraphBuilder b;
  Value a = b.input("a", Shape{2, 3, 4, 4});
  Value other_n = b.input("other_n", Shape{3, 3, 4, 4});
  Value other_hw = b.input("other_hw", Shape{2, 3, 4, 5});
  Value ints = b.input("ints", Shape{2, 3, 4, 4}, DType::i32);
  Value flat = b.input("flat", Shape{2, 48});
  EXPECT_NE(message_of([&] { b.concat({a, other_n}, "cat_n"); })
                .find("concat 'cat_n': input 1 'other_n' [3,3,4,4] must match input 0 'a' [2,3,4,4] in every dim but "
                      "dim 1"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.concat({a, other_hw}, "cat_hw"); }).find("concat 'cat_hw': input 1 'other_hw'"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.concat({a, flat}, "cat_rank"); }).find("in every dim but dim 1"), std::string::npos);
  EXPECT_NE(message_of([&] { b.concat({a, ints}, "cat_dtype"); })
                .find("concat 'cat_dtype': input 1 'ints' is i32, input 0 'a' is f32: every input must have the same "
                      "dtype"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.concat({}, "cat_none"); }).find("concat 'cat_none': needs at least one input, got none"),
            std::string::npos);
  // A long concat is checked as a whole first: the refusal names it, not one of its parts.
  std::vector<Value> many(9, a);
  many.push_back(other_n);
  EXPECT_NE(message_of([&] { b.concat(many, "long"); }).find("concat 'long': input 9 'other_n'"), std::string::npos);
  // More inputs than a node holds, through node() itself, are refused with the range.
  std::vector<Value> seven(7, a);
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_CONCAT, parity_op_params{}, seven, "direct"); })
                .find("CONCAT 'direct': takes 1 to 6 inputs, got 7"),
            std::string::npos);
  // SLICE outside dim 1.
  parity_op_params p{};
  p.slice.start = 2;
  p.slice.length = 2;
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_SLICE, p, {a}, "sl"); })
                .find("slice 'sl': start 2 and length 2 must satisfy 0 <= start, 0 < length, start + length <= 3"),
            std::string::npos);
  p.slice.length = 0;
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_SLICE, p, {a}, "empty"); }).find("0 < length"), std::string::npos);
}

}  // namespace
}  // namespace parity
