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

// What building threw, or "" when it did not throw.
template <class Build>
std::string message_of(Build&& build) {
  try {
    build();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

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
  EXPECT_EQ(PARITY_OP_DROPOUT, 29);  // ABI 5: dropout, appended
  EXPECT_EQ(PARITY_OP_DROPOUT_BWD, 30);
  EXPECT_EQ(PARITY_OP_BATCHNORM2D_TRAIN, 31);  // ABI 5: batch normalization, appended
  EXPECT_EQ(PARITY_OP_BATCHNORM2D_EVAL, 32);
  EXPECT_EQ(PARITY_OP_BATCHNORM2D_BWD, 33);
  EXPECT_EQ(PARITY_OP_AVGPOOL2D, 34);  // ABI 5: the pooling ops of issue #12, appended
  EXPECT_EQ(PARITY_OP_AVGPOOL2D_BWD, 35);
  EXPECT_EQ(PARITY_OP_GLOBAL_AVGPOOL, 36);
  EXPECT_EQ(PARITY_OP_GLOBAL_AVGPOOL_BWD, 37);
  EXPECT_EQ(PARITY_OP_SOFTMAX, 38);  // ABI 5: softmax, log_softmax, concat, slice, appended
  EXPECT_EQ(PARITY_OP_SOFTMAX_BWD, 39);
  EXPECT_EQ(PARITY_OP_LOG_SOFTMAX, 40);
  EXPECT_EQ(PARITY_OP_LOG_SOFTMAX_BWD, 41);
  EXPECT_EQ(PARITY_OP_CONCAT, 42);
  EXPECT_EQ(PARITY_OP_SLICE, 43);
  EXPECT_EQ(PARITY_OP_MUL, 44);  // ABI 6: broadcasting mul, reduce_sum, clip_coef, appended
  EXPECT_EQ(PARITY_OP_REDUCE_SUM, 45);
  EXPECT_EQ(PARITY_OP_CLIP_COEF, 46);
  EXPECT_EQ(PARITY_OP_CAST, 47);  // ABI 9
  EXPECT_EQ(PARITY_OP_COUNT, 48);
  EXPECT_EQ(sizeof(parity_op_params), 64u);  // the params structs fit in `reserved`
  EXPECT_EQ(PARITY_ABI_VERSION, 9);  // 5: the op set of issue #12; 6: broadcasting, clipping; 7: softmax_xent's
                                     // reduction and ignore_index; 8: node hooks; 9: bf16, f16, CAST (CHANGELOG.md)
  // ABI 9: the half dtypes appended; the C++ DType has the same numbers.
  EXPECT_EQ(PARITY_F32, 0);
  EXPECT_EQ(PARITY_I32, 1);
  EXPECT_EQ(PARITY_I64, 2);
  EXPECT_EQ(PARITY_BF16, 3);
  EXPECT_EQ(PARITY_F16, 4);
  EXPECT_EQ(static_cast<int>(parity::DType::bf16), PARITY_BF16);
  EXPECT_EQ(static_cast<int>(parity::DType::f16), PARITY_F16);
  EXPECT_EQ(sizeof(parity_cast_params), 4u);
  EXPECT_EQ(PARITY_HOOK_BEFORE, 0);  // ABI 8
  EXPECT_EQ(PARITY_HOOK_AFTER, 1);
  // ABI 7's params: zero-initialised, ABI 6's mean with nothing ignored.
  EXPECT_EQ(PARITY_REDUCTION_MEAN, 0);
  EXPECT_EQ(PARITY_REDUCTION_SUM, 1);
  EXPECT_EQ(PARITY_REDUCTION_NONE, 2);
  EXPECT_EQ(sizeof(parity_softmax_xent_params), 12u);
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

// conv2d's general form: shapes, the optional bias, and every refusal naming node, parameter and rule.
TEST(OpList, Conv2dGeneralFormShapesAndOptionalBias) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 4, 9, 8});
  Conv2dOptions depthwise;
  depthwise.groups = 4, depthwise.pad_h = depthwise.pad_w = 1;
  Value y = b.conv2d(x, b.parameter("dw", Shape{8, 1, 3, 3}), depthwise, "depthwise");
  EXPECT_EQ(b.graph().value(y).shape, (Shape{2, 8, 9, 8}));
  EXPECT_EQ(b.graph().nodes().back().inputs.size(), 2u);  // no bias: x, w
  Conv2dOptions asym;
  asym.stride_h = asym.stride_w = 2, asym.pad_end = true, asym.pad_bottom = asym.pad_right = 1;
  asym.dilation_w = 2;
  // H: (9 + 0 + 1 - 3) / 2 + 1 = 4; W: (8 + 0 + 1 - 5) / 2 + 1 = 3
  Value z = b.conv2d(y, b.parameter("w2", Shape{3, 8, 3, 3}), b.parameter("b2", Shape{3}), asym, "asym");
  EXPECT_EQ(b.graph().value(z).shape, (Shape{2, 3, 4, 3}));
  const std::string dump = b.graph().dump();
  EXPECT_NE(dump.find("stride=1x1 pad=1x1 groups=4"), std::string::npos) << dump;
  EXPECT_NE(dump.find("stride=2x2 pad=0x0 pad_end=1x1 dilation=1x2"), std::string::npos) << dump;

  // The gradient of a conv without bias: CONV2D_BWD_WEIGHT with the one output dw.
  GraphBuilder t;
  Value tx = t.input("x", Shape{2, 4, 6, 6});
  Value logits = t.flatten(t.conv2d(tx, t.parameter("w", Shape{4, 1, 3, 3}), depthwise, "c"));
  Value labels = t.input("labels", Shape{2}, DType::i32);
  const Value loss = t.softmax_xent(logits, labels, "loss");
  const Graph training = differentiate(t.graph(), loss, nullptr);
  int bwd_weight = 0;
  for (const Node& n : training.nodes())
    if (n.op == PARITY_OP_CONV2D_BWD_WEIGHT) {
      ++bwd_weight;
      EXPECT_EQ(n.outputs.size(), 1u);
      EXPECT_EQ(n.params.conv2d.groups, 4);
    }
  EXPECT_EQ(bwd_weight, 1);
}

TEST(OpList, Conv2dGeneralFormRefusalsNameNodeParameterAndRule) {
  auto error_of = [](auto&& build) {
    try {
      build();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  GraphBuilder b;
  Value x = b.input("x", Shape{1, 6, 7, 7});
  Value w3 = b.parameter("w3", Shape{4, 3, 3, 3});
  auto with = [](auto edit) {
    Conv2dOptions o;
    edit(o);
    return o;
  };
  EXPECT_NE(error_of([&] { b.conv2d(x, w3, with([](Conv2dOptions& o) { o.groups = 4; }), "g4"); })
                .find("conv2d 'g4': groups 4 must divide the input channels 6"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b.conv2d(x, b.parameter("w5", Shape{5, 3, 3, 3}), with([](Conv2dOptions& o) { o.groups = 2; }), "k5"); })
                .find("conv2d 'k5': groups 2 must divide the output channels 5"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b.conv2d(x, b.parameter("w63", Shape{6, 3, 3, 3}), with([](Conv2dOptions& o) { o.groups = 3; }), "cg"); })
                .find("conv2d 'cg': weight [6,3,3,3] expects 3 input channels per group, input [1,6,7,7] with groups 3 has 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b.conv2d(x, w3, with([](Conv2dOptions& o) { o.groups = 2, o.dilation_h = 0; }), "d0"); })
                .find("conv2d 'd0': dilation must be >= 1, got 0x1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b.conv2d(x, w3, with([](Conv2dOptions& o) { o.groups = 0; }), "g0"); })
                .find("conv2d 'g0': groups must be >= 1, got 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b.conv2d(x, w3, with([](Conv2dOptions& o) { o.groups = 2, o.dilation_h = 4; }), "big"); })
                .find("conv2d 'big': kernel 3x3 (dilation 4x1: spans 9x3) is larger than the padded input 7x7"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b.conv2d(x, w3, with([](Conv2dOptions& o) { o.groups = 2, o.pad_w = -1; }), "neg"); })
                .find("conv2d 'neg': padding must be >= 0, got 0x-1"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              b.conv2d(x, w3, with([](Conv2dOptions& o) { o.groups = 2, o.pad_end = true, o.pad_bottom = -2; }), "end");
            }).find("conv2d 'end': end padding (bottom x right) must be >= 0, got -2x0"),
            std::string::npos);
  // Params made by hand: a negative dilation or groups is refused by the rule itself.
  parity_op_params p{};
  p.conv2d.stride_h = p.conv2d.stride_w = 1;
  p.conv2d.dilation_w = -1;
  EXPECT_NE(error_of([&] { b.node(PARITY_OP_CONV2D, p, {x, b.parameter("w6", Shape{4, 6, 3, 3})}, "raw"); })
                .find("conv2d 'raw': dilation must be >= 1 (0 reads as 1), got 0x-1"),
            std::string::npos);
  // Zero-initialised params keep ABI 4's meaning: groups and dilation 0 read as 1.
  p.conv2d.dilation_w = 0;
  EXPECT_EQ(b.graph().value(b.node(PARITY_OP_CONV2D, p, {x, b.parameter("w7", Shape{4, 6, 3, 3})}, "zero")[0]).shape,
            (Shape{1, 4, 5, 5}));
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

// batchnorm2d's gradient is one BATCHNORM2D_BWD: training's reads the saved statistics (outputs
// 1, 2, which get no gradient of their own), evaluation's the running ones; the running
// statistics (state) get none. The dump prints the params.
TEST(OpList, BatchnormDifferentiatesThroughOneBackwardNode) {
  for (bool training : {true, false}) {
    GraphBuilder b;
    const Shape channels{3};
    Value x = b.input("x", Shape{4, 3, 2, 2});
    Value gamma = b.parameter("bn.weight", channels), beta = b.parameter("bn.bias", channels);
    Value rm = b.state("bn.running_mean", channels), rv = b.state("bn.running_var", channels);
    Value y = training ? b.batchnorm2d_train(x, gamma, beta, rm, rv, 1e-3f, 0.2f, PARITY_BATCHNORM_ONNX, "bn")
                       : b.batchnorm2d_eval(x, gamma, beta, rm, rv, 1e-5f, "bn");
    Value w = b.parameter("fc.weight", Shape{5, 12});
    Value loss = b.softmax_xent(b.linear(b.flatten(y), w, b.parameter("fc.bias", Shape{5}), "fc"),
                                b.input("labels", Shape{4}, DType::i32), "loss");
    const Graph forward = b.take();
    const Graph g = differentiate(forward, loss, nullptr);
    int backwards = 0;
    for (const Node& n : g.nodes()) {
      if (n.op != PARITY_OP_BATCHNORM2D_BWD) continue;
      ++backwards;
      EXPECT_EQ(n.params.batchnorm2d.training, training ? 1 : 0);
      EXPECT_EQ(n.inputs[0], x.id);
      EXPECT_EQ(n.inputs[3], training ? forward.nodes()[0].outputs[1] : rm.id);
      EXPECT_EQ(n.inputs[4], training ? forward.nodes()[0].outputs[2] : rv.id);
    }
    EXPECT_EQ(backwards, 1);
    EXPECT_TRUE(g.has("grad/bn.weight"));
    EXPECT_TRUE(g.has("grad/bn.bias"));
    EXPECT_FALSE(g.has("grad/bn.running_mean"));
    const std::string dump = g.dump();
    EXPECT_NE(dump.find(training ? "'bn' eps=0.001 momentum=0.2 convention=onnx" : "'bn' eps=1e-05"),
              std::string::npos)
        << dump;
  }
  EXPECT_EQ(ops::rule(PARITY_OP_BATCHNORM2D_TRAIN).nondifferentiable_outputs, 6u);
}

// eps, momentum, the [C] operands, one value per channel in PyTorch's training, a temporary as
// running statistics: refused when the node is built, naming the op, the node and the rule.
TEST(OpList, BatchnormParamsAndShapesAreCheckedAtBuildTime) {
  GraphBuilder b;
  const Shape channels{3};
  Value x = b.input("x", Shape{2, 3, 4, 4});
  Value gamma = b.input("gamma", channels), beta = b.input("beta", channels);
  Value rm = b.state("rm", channels), rv = b.state("rv", channels);
  auto train = [&](float eps, float momentum, const std::string& name) {
    return message_of([&] { b.batchnorm2d_train(x, gamma, beta, rm, rv, eps, momentum, PARITY_BATCHNORM_PYTORCH, name); });
  };
  EXPECT_NE(train(0.0f, 0.1f, "z").find("batchnorm2d_train 'z': eps must be finite and > 0, got 0"), std::string::npos);
  EXPECT_NE(train(-1e-5f, 0.1f, "neg").find("eps must be finite and > 0"), std::string::npos);
  EXPECT_NE(train(INFINITY, 0.1f, "inf").find("eps must be finite and > 0, got inf"), std::string::npos);
  EXPECT_NE(train(1e-5f, 1.5f, "m").find("batchnorm2d_train 'm': momentum must be in [0, 1], got 1.5"), std::string::npos);
  EXPECT_NE(train(1e-5f, std::nanf(""), "mnan").find("momentum must be in [0, 1]"), std::string::npos);
  EXPECT_NE(message_of([&] { b.batchnorm2d_eval(x, gamma, beta, rm, rv, 0.0f, "ev"); })
                .find("batchnorm2d_eval 'ev': eps must be finite and > 0"),
            std::string::npos);
  Value wide = b.input("wide", Shape{4});
  EXPECT_NE(message_of([&] { b.batchnorm2d_eval(x, wide, beta, rm, rv, 1e-5f, "g4"); })
                .find("batchnorm2d_eval 'g4': gamma 'wide' must be [C] = [3] for input [2,3,4,4], got [4]"),
            std::string::npos);
  Value square = b.state("square", Shape{3, 1});
  EXPECT_NE(message_of([&] { b.batchnorm2d_train(x, gamma, beta, rm, square, 1e-5f, 0.1f, PARITY_BATCHNORM_PYTORCH, "rv2"); })
                .find("running_var 'square' must be [C] = [3]"),
            std::string::npos);
  Value temp = b.relu(rm, "temp");
  EXPECT_NE(message_of([&] { b.batchnorm2d_train(x, gamma, beta, temp, rv, 1e-5f, 0.1f, PARITY_BATCHNORM_PYTORCH, "t"); })
                .find("'temp' is updated in place, so it must be a state"),
            std::string::npos);
  Value single = b.input("single", Shape{1, 3, 1, 1});
  EXPECT_NE(message_of([&] { b.batchnorm2d_train(single, gamma, beta, rm, rv, 1e-5f, 0.1f, PARITY_BATCHNORM_PYTORCH, "one"); })
                .find("batchnorm2d_train 'one': training needs more than 1 value per channel"),
            std::string::npos);
  parity_op_params p{};
  p.batchnorm2d.eps = 1e-5f;
  p.batchnorm2d.convention = 7;
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_BATCHNORM2D_TRAIN, p, {x, gamma, beta, rm, rv}, "conv7"); })
                .find("convention must be PARITY_BATCHNORM_PYTORCH (0) or PARITY_BATCHNORM_ONNX (1), got 7"),
            std::string::npos);
  const size_t before = b.graph().nodes().size();
  // Allowed: momentum 0 and 1, ONNX's convention with one value per channel.
  b.batchnorm2d_train(x, gamma, beta, rm, rv, 1e-5f, 0.0f, PARITY_BATCHNORM_PYTORCH, "m0");
  b.batchnorm2d_train(x, gamma, beta, rm, rv, 1e-5f, 1.0f, PARITY_BATCHNORM_PYTORCH, "m1");
  b.batchnorm2d_train(single, gamma, beta, rm, rv, 1e-5f, 0.9f, PARITY_BATCHNORM_ONNX, "onnx_one");
  EXPECT_EQ(b.graph().nodes().size(), before + 3);
}

// Pooling (ABI 5): the general maxpool, avgpool and global_avgpool through the builder, with
// PyTorch's output sizes, padding beyond half the kernel accepted (ONNX), and the params printed.
TEST(OpList, PoolingBuilderMethodsShapesAndDump) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3, 5, 5});
  EXPECT_EQ(b.graph().value(b.maxpool2d(x, 2, 2, "plain")).shape, (Shape{2, 3, 2, 2}));
  EXPECT_EQ(b.graph().value(b.maxpool2d(x, 2, 2, 0, true, 1, "ceil")).shape, (Shape{2, 3, 3, 3}));
  EXPECT_EQ(b.graph().value(b.maxpool2d(x, 3, 2, 1, false, 2, "dilated")).shape, (Shape{2, 3, 2, 2}));
  EXPECT_EQ(b.graph().value(b.maxpool2d(x, 2, 1, 3, false, 1, "wide_pad")).shape, (Shape{2, 3, 10, 10}));
  EXPECT_EQ(b.graph().value(b.avgpool2d(x, 3, 2, 1, true, false, "avg")).shape, (Shape{2, 3, 3, 3}));
  EXPECT_EQ(b.graph().value(b.avgpool2d(x, 5, 1, "whole")).shape, (Shape{2, 3, 1, 1}));
  EXPECT_EQ(b.graph().value(b.global_avgpool(x, "gap")).shape, (Shape{2, 3, 1, 1}));
  // ceil_mode drops a last window that would start in the right padding: 6 + 2 - 2 = 6, /2 = 3, +1 = 4;
  // ceil gives 4 too, but window 4 would start at 8 - 1 = 7 >= 6 + 1.
  Value x6 = b.input("x6", Shape{1, 1, 6, 6});
  EXPECT_EQ(b.graph().value(b.maxpool2d(x6, 2, 2, 1, true, 1, "ceil6")).shape, (Shape{1, 1, 4, 4}));
  const std::string dump = b.graph().dump();
  EXPECT_NE(dump.find("'plain' kernel=2x2 stride=2x2\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'ceil' kernel=2x2 stride=2x2 ceil_mode"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'dilated' kernel=3x3 stride=2x2 pad=1x1 dilation=2x2"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'avg' kernel=3x3 stride=2x2 pad=1x1 ceil_mode count_include_pad=false"), std::string::npos)
      << dump;
}

// maxpool params zero-initialised as before ABI 5 (dilation 0) keep their meaning.
TEST(OpList, ZeroInitialisedMaxpoolParamsAreAbi4s) {
  GraphBuilder b;
  Value x = b.input("x", Shape{1, 1, 7, 7});
  parity_op_params p{};
  p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = 3;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = 2;
  EXPECT_EQ(b.graph().value(b.node(PARITY_OP_MAXPOOL2D, p, {x}, "pool")[0]).shape, (Shape{1, 1, 3, 3}));
}

TEST(OpList, PoolingParamsAreCheckedAtBuildTime) {
  GraphBuilder b;
  Value x = b.input("x", Shape{1, 2, 4, 4});
  auto message_of = [&](auto&& build) -> std::string {
    try {
      build();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  auto maxpool = [&](int kernel, int stride, int pad, int dilation, const char* name = "mp") {
    parity_op_params p{};
    p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = kernel;
    p.maxpool2d.stride_h = p.maxpool2d.stride_w = stride;
    p.maxpool2d.pad_h = p.maxpool2d.pad_w = pad;
    p.maxpool2d.dilation_h = p.maxpool2d.dilation_w = dilation;
    return message_of([&] { b.node(PARITY_OP_MAXPOOL2D, p, {x}, name); });
  };
  EXPECT_NE(maxpool(2, 0, 0, 1).find("maxpool2d 'mp': stride must be > 0, got 0x0"), std::string::npos);
  EXPECT_NE(maxpool(0, 1, 0, 1).find("maxpool2d 'mp': kernel must be > 0, got 0x0"), std::string::npos);
  EXPECT_NE(maxpool(2, 1, -1, 1).find("maxpool2d 'mp': padding must be >= 0, got -1x-1"), std::string::npos);
  EXPECT_NE(maxpool(2, 1, 0, -1).find("maxpool2d 'mp': dilation must be >= 1 (0 reads as 1), got -1x-1"),
            std::string::npos);
  EXPECT_NE(maxpool(5, 1, 0, 1).find("maxpool2d 'mp': kernel 5x5 is larger than the input 4x4 padded by 0x0"),
            std::string::npos);
  EXPECT_NE(maxpool(3, 1, 0, 2).find("maxpool2d 'mp': kernel 3x3 (dilated to 5x5) is larger than the input 4x4"),
            std::string::npos);
  EXPECT_EQ(maxpool(5, 1, 1, 1, "fits"), "no error");  // padding makes room; pad < kernel / 2 is not required
  EXPECT_EQ(maxpool(2, 1, 3, 1, "wide"), "no error");  // padding above the kernel: windows entirely in padding
  EXPECT_NE(message_of([&] { b.avgpool2d(x, 2, 0, 0, false, true, "ap"); }).find("avgpool2d 'ap': stride must be > 0"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.avgpool2d(x, 0, 1, 0, false, true, "ap"); }).find("avgpool2d 'ap': kernel must be > 0"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.avgpool2d(x, 2, 1, -2, false, true, "ap"); })
                .find("avgpool2d 'ap': padding must be >= 0, got -2x-2"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.avgpool2d(x, 7, 1, 1, false, true, "ap"); })
                .find("avgpool2d 'ap': kernel 7x7 is larger than the input 4x4 padded by 1x1"),
            std::string::npos);
  Value flat = b.input("flat", Shape{2, 8});
  EXPECT_NE(message_of([&] { b.global_avgpool(flat, "gap"); }).find("global_avgpool 'gap': input 'flat' must have rank 4"),
            std::string::npos);
}

// The gradients of the pooling ops: their backward nodes with the forward input's size.
TEST(OpList, PoolingGradientsEmitTheirBackwards) {
  GraphBuilder b;
  Value x = b.parameter("x", Shape{2, 3, 5, 5});
  Value a = b.avgpool2d(x, 3, 2, 1, true, false, "avg");
  Value g = b.global_avgpool(a, "gap");
  Value m = b.maxpool2d(x, 3, 2, 2, true, 2, "mp");
  Value loss = b.add(b.softmax_xent(b.flatten(g), b.input("labels", Shape{2}, DType::i32)),
                     b.softmax_xent(b.flatten(m), b.input("labels2", Shape{2}, DType::i32)), "loss");
  const Graph grad = differentiate(b.graph(), loss, nullptr);
  std::set<parity_op> ops;
  for (const Node& n : grad.nodes()) ops.insert(n.op);
  EXPECT_TRUE(ops.count(PARITY_OP_AVGPOOL2D_BWD));
  EXPECT_TRUE(ops.count(PARITY_OP_GLOBAL_AVGPOOL_BWD));
  EXPECT_TRUE(ops.count(PARITY_OP_MAXPOOL2D_BWD));
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
  // conv2d, its two backwards, then the same three in bf16 and in f16 (ops/conformance.cpp)
  const std::vector<ops::OpCase> conv = ops::user_cases(draw, "conv2d_bwd_data", {1, 1, 4, 4, 1, 3, 3});
  ASSERT_EQ(conv.size(), 9u);
  EXPECT_EQ(conv[3].operands[0].tensor.dtype(), DType::bf16);
  EXPECT_EQ(conv[3].operands[2].tensor.dtype(), DType::f32);  // the bias stays f32
  EXPECT_EQ(conv[8].operands[1].tensor.dtype(), DType::f16);
  try {
    ops::user_cases(draw, "nosuchop", {1});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not an op family: conv2d, linear, relu"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sigmoid"), std::string::npos) << e.what();
  }
  EXPECT_NE(ops::shape_meanings().find("conv2d N,C,H,W,K,R,S[,stride[,pad[,dilation[,groups]]]]"), std::string::npos);
  // groups 2 of 4 channels: w [6, 2, 3, 3]; dilation 2 with padding 2 keeps 7x7
  const std::vector<ops::OpCase> grouped = ops::user_cases(draw, "conv2d", {1, 4, 7, 7, 6, 3, 3, 1, 2, 2, 2});
  ASSERT_EQ(grouped.size(), 9u);
  EXPECT_EQ(grouped[0].operands[1].tensor.shape(), (Shape{6, 2, 3, 3}));
  EXPECT_EQ(grouped[0].params.conv2d.groups, 2);
  EXPECT_EQ(grouped[0].params.conv2d.dilation_h, 2);
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
    } else if (i == PARITY_OP_CONV2D) {
      EXPECT_EQ(info.min_inputs, info.num_inputs - 1);  // the optional bias (PARITY_OP_OPTIONAL_TRAILING)
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

// ABI 7: torch's cross_entropy reduction and ignore_index. The plain builder method stays ABI 6's
// mean (zero params, nothing in the dump); none gives one term per row; the backward takes the
// forward's params and a dloss of the loss's shape.
TEST(OpList, SoftmaxXentTakesAReductionAndAnIgnoreIndex) {
  GraphBuilder b;
  Value logits = b.parameter("logits", Shape{4, 5});
  Value labels = b.input("labels", Shape{4}, DType::i32);
  Value mean = b.softmax_xent(logits, labels, "mean");
  Value sum = b.softmax_xent(logits, labels, PARITY_REDUCTION_SUM, std::nullopt, "sum");
  Value each = b.softmax_xent(logits, labels, PARITY_REDUCTION_NONE, -100, "each");
  Value class2 = b.softmax_xent(logits, labels, PARITY_REDUCTION_MEAN, 2, "class2");
  EXPECT_EQ(b.graph().value(mean).shape, (Shape{1}));
  EXPECT_EQ(b.graph().value(sum).shape, (Shape{1}));
  EXPECT_EQ(b.graph().value(each).shape, (Shape{4}));
  EXPECT_EQ(b.graph().value(class2).shape, (Shape{1}));
  const parity_softmax_xent_params& plain = b.graph().nodes()[0].params.softmax_xent;
  EXPECT_EQ(plain.reduction, PARITY_REDUCTION_MEAN);
  EXPECT_EQ(plain.has_ignore_index, 0);
  const parity_softmax_xent_params& ignoring = b.graph().nodes()[2].params.softmax_xent;
  EXPECT_EQ(ignoring.reduction, PARITY_REDUCTION_NONE);
  EXPECT_EQ(ignoring.has_ignore_index, 1);
  EXPECT_EQ(ignoring.ignore_index, -100);
  const std::string dump = b.graph().dump();
  EXPECT_NE(dump.find("SOFTMAX_XENT(%0, %1) 'mean'\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'sum' reduction=sum\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'each' reduction=none ignore_index=-100\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("'class2' ignore_index=2\n"), std::string::npos) << dump;

  // A loss of none made [1] by a differentiable op after it (here a second cross-entropy over the
  // row terms): the backward reads the per-row gradient [4].
  Value total = b.softmax_xent(b.reshape(each, Shape{1, 4}), b.input("one", Shape{1}, DType::i32), "total");
  const Graph g = differentiate(b.graph(), total, nullptr);
  int backward = 0;
  for (const Node& n : g.nodes()) {
    if (n.op != PARITY_OP_SOFTMAX_XENT_BWD || n.name != "each.bwd") continue;
    ++backward;
    EXPECT_EQ(n.params.softmax_xent.reduction, PARITY_REDUCTION_NONE);
    EXPECT_EQ(n.params.softmax_xent.ignore_index, -100);
    EXPECT_EQ(g.values()[static_cast<size_t>(n.inputs[2])].shape, (Shape{4}));
  }
  EXPECT_EQ(backward, 1) << g.dump();
}

TEST(OpList, SoftmaxXentRefusesAnUnknownReductionAndADlossOfTheWrongShape) {
  GraphBuilder b;
  Value logits = b.input("logits", Shape{4, 5});
  Value labels = b.input("labels", Shape{4}, DType::i32);
  ErrorKind kind = ErrorKind::internal;
  const std::string unknown =
      message_of([&] { b.softmax_xent(logits, labels, static_cast<parity_reduction>(7), std::nullopt, "bad"); }, &kind);
  EXPECT_NE(unknown.find("softmax_xent 'bad': reduction must be 0 (mean), 1 (sum) or 2 (none), got 7"),
            std::string::npos)
      << unknown;
  EXPECT_EQ(kind, ErrorKind::invalid_argument);
  parity_op_params none{};
  none.softmax_xent.reduction = PARITY_REDUCTION_NONE;
  const std::string scalar =
      message_of([&] { b.node(PARITY_OP_SOFTMAX_XENT_BWD, none, {logits, labels, b.input("d1", Shape{1})}, "bwd"); });
  EXPECT_NE(scalar.find("softmax_xent_bwd 'bwd': dloss 'd1' must have the loss's shape [4] (reduction none), got [1]"),
            std::string::npos)
      << scalar;
  const std::string rows = message_of(
      [&] { b.node(PARITY_OP_SOFTMAX_XENT_BWD, parity_op_params{}, {logits, labels, b.input("d4", Shape{4})}, "bwd2"); });
  EXPECT_NE(rows.find("dloss 'd4' must have the loss's shape [1] (reduction mean), got [4]"), std::string::npos) << rows;
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

// Broadcasting refusals name the node, both shapes and the dim; reduce_sum's mask and
// clip_coef's max_norm are checked at build time too.
TEST(OpList, BroadcastReduceAndClipRefuseWhatBreaksThem) {
  GraphBuilder b;
  const Value a = b.input("a", Shape{2, 3, 4, 4});
  EXPECT_NE(message_of([&] { b.mul(a, b.input("s", Shape{2, 3, 2, 1}), "se"); })
                .find("mul 'se': 'a' [2,3,4,4] and 's' [2,3,2,1] do not broadcast: dim 2 is 4 and 2"),
            std::string::npos);
  EXPECT_NE(message_of([&] { b.add(a, b.input("v", Shape{3, 4, 4}), "res"); }).find("must have one rank to broadcast"),
            std::string::npos);
  EXPECT_EQ(b.graph().value(b.mul(a, b.input("g", Shape{2, 3, 1, 1}), "ok")).shape, (Shape{2, 3, 4, 4}));
  parity_op_params p{};
  p.reduce_sum.dims = 0x10u;
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_REDUCE_SUM, p, {a}, "r"); }).find("reduce_sum 'r': dims mask 0x10"),
            std::string::npos);
  p.reduce_sum.dims = 0;
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_REDUCE_SUM, p, {a}, "r0"); }).find("must name at least one dim"),
            std::string::npos);
  parity_op_params c{};
  c.clip_coef.max_norm = 0.0f;
  EXPECT_NE(message_of([&] { b.node(PARITY_OP_CLIP_COEF, c, {b.input("n", Shape{1})}, "clip"); })
                .find("clip_coef 'clip': max_norm must be finite and > 0, got 0"),
            std::string::npos);
}

}  // namespace
}  // namespace parity
