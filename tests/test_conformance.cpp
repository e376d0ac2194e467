// tests/test_conformance.cpp — the op conformance suite: every op, forward and backward, on
// each executable backend against the float64 `ref` oracle, through the engine of
// `parity check ops` (check/check_ops.cpp runs the cases each op's rule file lists: batch 1, odd sizes, stride and
// padding edge cases, ties and zeros at the maxpool and relu kinks, large logits; outputs
// NaN-prefilled and between guard regions). Thresholds are the ones argued next to each op in
// ops/*.cpp. Each op family runs in normal mode and in exact mode (small-integer inputs, so
// conv and linear must match ref bit for bit). The simt pass runs at warp 32 and at warp 64
// (CTest sets PARITY_SIMT_WARP).
#include <gtest/gtest.h>

#include <functional>

#include "parity/check.h"
#include "parity/parity.h"

namespace parity {
namespace {

class Conformance : public ::testing::TestWithParam<const char*> {
 protected:
  void check_family(const std::string& family) {
    for (bool exact : {false, true}) {
      OpCheckOptions o;
      o.backends = {GetParam()};
      o.op = family;
      o.exact = exact;
      o.threads = 2;
      const std::vector<OpCaseResult> results = check_ops(o);
      EXPECT_FALSE(results.empty()) << family;
      for (const OpCaseResult& r : results) {
        EXPECT_FALSE(r.skipped) << r.op << " " << r.label << ": " << r.skip_reason;
        for (const TensorDiff& d : r.outputs)
          EXPECT_TRUE(d.pass) << (exact ? "[exact] " : "") << r.op << " " << r.label << " " << d.name << ": nmse "
                              << d.nmse << " (limit " << d.threshold << "), max abs " << d.max_abs
                              << ", non-finite mismatches " << d.nonfinite_mismatch << "; " << d.note;
      }
    }
  }
};

TEST_P(Conformance, Conv2dForwardAndBackward) { check_family("conv2d"); }
TEST_P(Conformance, LinearForwardAndBackward) { check_family("linear"); }
TEST_P(Conformance, ReluForwardAndBackward) { check_family("relu"); }
TEST_P(Conformance, SigmoidForwardAndBackward) { check_family("sigmoid"); }
TEST_P(Conformance, TanhForwardAndBackward) { check_family("tanh"); }
TEST_P(Conformance, LeakyReluForwardAndBackward) { check_family("leaky_relu"); }
TEST_P(Conformance, GeluForwardAndBackward) { check_family("gelu"); }
TEST_P(Conformance, HardtanhForwardAndBackward) { check_family("hardtanh"); }
TEST_P(Conformance, BatchnormTrainingEvaluationAndBackward) { check_family("batchnorm2d"); }
TEST_P(Conformance, DropoutForwardAndBackward) { check_family("dropout"); }
TEST_P(Conformance, SoftmaxAndLogSoftmaxForwardAndBackward) {
  check_family("softmax");
  check_family("log_softmax");
}
TEST_P(Conformance, ConcatAndItsSlices) {
  check_family("concat");
  check_family("slice");
}
TEST_P(Conformance, MaxpoolForwardAndBackward) { check_family("maxpool2d"); }
TEST_P(Conformance, AvgpoolForwardAndBackward) { check_family("avgpool2d"); }
TEST_P(Conformance, GlobalAvgpoolForwardAndBackward) { check_family("global_avgpool"); }
TEST_P(Conformance, SoftmaxCrossEntropyForwardAndBackward) { check_family("softmax_xent"); }
TEST_P(Conformance, ArgmaxAndAccuracy) {
  check_family("argmax");
  check_family("accuracy");
}
TEST_P(Conformance, ReshapeAddFill) {
  check_family("reshape");
  check_family("add");
  check_family("fill");
}
TEST_P(Conformance, OptimizerSteps) {
  check_family("adam_step");
  check_family("sgd_step");
}

// The native op code's own checks (backends/native/native_node.h), on simt: operands that pass
// the kit's plan checks but break their op (an element count, a dtype, a rank) are internal
// errors that name the backend, op, node and value, raised before any kernel runs. (Named
// .../simt, so CTest runs it at both warp widths, labelled simt, as the coverage script counts.)
class NativeNodeChecks : public ::testing::TestWithParam<const char*> {};

TEST_P(NativeNodeChecks, OperandsThatBreakTheirOpAreNamedBeforeAnyKernelRuns) {
  auto simt = create_backend(GetParam());
  GraphBuilder b;
  b.relu(b.input("x", Shape{2, 3}), "r");
  b.linear(b.input("a", Shape{2, 3}), b.parameter("w", Shape{4, 3}), b.parameter("bias", Shape{4}), "y");
  const Graph g = b.take();
  const Plan plan(g, {"r", "y"});
  // The plan with value `name` edited; returns what execute threw.
  auto error_with = [&](const char* name, const std::function<void(parity_value_desc&)>& edit) {
    std::vector<parity_value_desc> values = plan.values();
    edit(values[static_cast<size_t>(plan.value(name))]);
    parity_plan broken = plan.c_plan();
    broken.values = values.data();
    broken.arena_bytes += 1024;  // room for a grown temporary: the kit's arena check passes
    try {
      auto exe = simt->compile(broken, {}, nullptr);
      exe->execute();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::internal) << e.what();
      return std::string(e.what());
    }
    return std::string("nothing was thrown");
  };
  const std::string numel = error_with("r", [](parity_value_desc& v) {
    v.dims[1] = 4;
    v.bytes = 32;
  });
  EXPECT_NE(numel.find("simt: RELU node 'r': value 'r' [2,4] has 8 elements, the op needs 6"), std::string::npos)
      << numel;
  const std::string dtype = error_with("r", [](parity_value_desc& v) { v.dtype = PARITY_I32; });
  EXPECT_NE(dtype.find("simt: RELU node 'r': value 'r' has the wrong dtype for the op"), std::string::npos) << dtype;
  const std::string rank = error_with("w", [](parity_value_desc& v) {
    v.rank = 1;
    v.dims[0] = 12;
    v.dims[1] = 0;
  });
  EXPECT_NE(rank.find("simt: LINEAR node 'y': value 'w' has rank 1, the op needs rank 2"), std::string::npos) << rank;

  // Run-time data the graph cannot have checked: a label outside the classes is a data error.
  GraphBuilder xb;
  xb.softmax_xent(xb.input("logits", Shape{2, 3}), xb.input("labels", Shape{2}, DType::i32), "loss");
  const Graph xg = xb.take();
  const Plan xplan(xg, {"loss"});
  auto xent = simt->compile(xplan.c_plan(), {}, nullptr);
  const float logits[6] = {0, 1, 2, 3, 4, 5};
  const int32_t labels[2] = {0, 5};
  xent->write(xplan.value("logits"), logits, sizeof logits);
  xent->write(xplan.value("labels"), labels, sizeof labels);
  try {
    xent->execute();
    ADD_FAILURE() << "label 5 of 3 classes was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("SOFTMAX_XENT node 'loss': label 5 at row 1 of value 'labels' is outside [0, 3)"),
              std::string::npos)
        << e.what();
  }
}

// A pooling node whose params no rule would pass (a plan from elsewhere) is refused before any
// kernel divides by its stride or reads outside the plane.
TEST_P(NativeNodeChecks, PoolingWindowsNoRulePassesAreRefused) {
  auto simt = create_backend(GetParam());
  GraphBuilder b;
  b.avgpool2d(b.input("x", Shape{1, 2, 4, 4}), 2, 2, "pool");
  const Graph g = b.take();
  const Plan plan(g, {"pool"});
  auto error_with = [&](const std::function<void(parity_avgpool2d_params&)>& edit) {
    std::vector<parity_node_desc> nodes = plan.nodes();
    edit(nodes[0].params.avgpool2d);
    parity_plan broken = plan.c_plan();
    broken.nodes = nodes.data();
    try {
      auto exe = simt->compile(broken, {}, nullptr);
      exe->execute();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("nothing was thrown");
  };
  EXPECT_NE(error_with([](parity_avgpool2d_params& p) { p.stride_w = 0; }).find("kernel 2 stride 0 pad 0 dilation 1"),
            std::string::npos);
  EXPECT_NE(error_with([](parity_avgpool2d_params& p) { p.kernel_h = 5; }).find("the window is larger than the padded input 4x4"),
            std::string::npos);
}

// Softmax, concat and slice on operands or params that pass the kit's plan checks but break the
// op: a dim outside the value, a slice outside dim 1, a concat whose inputs do not fill its output.
TEST_P(NativeNodeChecks, SoftmaxConcatAndSliceRefuseWhatBreaksThem) {
  auto simt = create_backend(GetParam());
  GraphBuilder b;
  b.softmax(b.input("x", Shape{2, 3}), 1, "sm");
  b.concat({b.input("a", Shape{2, 3}), b.input("c", Shape{2, 2})}, "cat");
  parity_op_params p{};
  p.slice.start = 1;
  p.slice.length = 2;
  b.node(PARITY_OP_SLICE, p, {b.input("y", Shape{2, 5})}, "sl");
  const Graph g = b.take();
  const Plan plan(g, {"sm", "cat", "sl"});
  // The plan with node `node` or value `value` edited; returns what compile or execute threw.
  auto error_with = [&](const char* node, const std::function<void(parity_node_desc&)>& edit_node, const char* value,
                        const std::function<void(parity_value_desc&)>& edit_value, ErrorKind kind) {
    std::vector<parity_node_desc> nodes = plan.nodes();
    std::vector<parity_value_desc> values = plan.values();
    for (parity_node_desc& n : nodes)
      if (node && std::string(n.name) == node) edit_node(n);
    if (value) edit_value(values[static_cast<size_t>(plan.value(value))]);
    parity_plan broken = plan.c_plan();
    broken.nodes = nodes.data();
    broken.values = values.data();
    broken.arena_bytes += 1024;
    try {
      auto exe = simt->compile(broken, {}, nullptr);
      exe->execute();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      return std::string(e.what());
    }
    return std::string("nothing was thrown");
  };
  const auto keep_node = [](parity_node_desc&) {};
  const auto keep_value = [](parity_value_desc&) {};
  const std::string dim = error_with("sm", [](parity_node_desc& n) { n.params.softmax = {5, 1}; }, nullptr, keep_value,
                                     ErrorKind::shape);
  EXPECT_NE(dim.find("simt: SOFTMAX node 'sm': dim 5 is outside the 2 dims of value 'x'"), std::string::npos) << dim;
  const std::string slice = error_with("sl", [](parity_node_desc& n) { n.params.slice = {2, 4}; }, nullptr, keep_value,
                                       ErrorKind::shape);
  EXPECT_NE(slice.find("simt: SLICE node 'sl': start 2 and length 4 do not lie inside dim 1 of value 'y' [2,5]"),
            std::string::npos)
      << slice;
  const std::string flat = error_with(nullptr, keep_node, "cat", [](parity_value_desc& v) {
    v.rank = 1;
    v.dims[0] = 10;
    v.dims[1] = 0;
  }, ErrorKind::internal);
  EXPECT_NE(flat.find("simt: CONCAT node 'cat': value 'cat' must have rank >= 2"), std::string::npos) << flat;
  const std::string short_output = error_with(nullptr, keep_node, "cat", [](parity_value_desc& v) {
    v.dims[1] = 4;
    v.bytes = 32;
  }, ErrorKind::internal);
  EXPECT_NE(short_output.find("simt: CONCAT node 'cat': input 'c' [2,2] does not fit output 'cat' [2,4]"),
            std::string::npos)
      << short_output;
  const std::string long_output = error_with(nullptr, keep_node, "cat", [](parity_value_desc& v) {
    v.dims[1] = 7;
    v.bytes = 56;
  }, ErrorKind::internal);
  EXPECT_NE(long_output.find("simt: CONCAT node 'cat': the inputs' dim 1 sum to 5, output 'cat' has 7"),
            std::string::npos)
      << long_output;
}

INSTANTIATE_TEST_SUITE_P(Backend, NativeNodeChecks, ::testing::Values("simt"),
                         [](const auto& info) { return std::string(info.param); });

INSTANTIATE_TEST_SUITE_P(Backend, Conformance, ::testing::Values("cpu", "simt"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
}  // namespace parity
