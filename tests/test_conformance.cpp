// tests/test_conformance.cpp — the op conformance suite: every op, forward and backward, on
// each executable backend against the float64 `ref` oracle, through the engine of
// `parity check ops` (check/check_ops.cpp runs the cases each op's rule file lists: batch 1, odd sizes, stride and
// padding edge cases, ties and zeros at the maxpool and relu kinks, large logits; outputs
// NaN-prefilled and between guard regions). Thresholds are the ones argued next to each op in
// ops/*.cpp. Each op family runs in normal mode and in exact mode (small-integer inputs, so
// conv and linear must match ref bit for bit). The simt pass runs at warp 32 and at warp 64
// (CTest sets PARITY_SIMT_WARP). onednn runs it where it is built (oneDNN's convolutions and
// inner products, cpu's kernels for the rest). The ops that accept bf16 and f16 add those cases
// (ops/conformance.cpp); simt, which stores neither, must skip exactly them, naming the dtype.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "backends/native/dispatch.h"
#include "backends/simt/simt_kernels.h"
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
      const std::string backend = GetParam();
      // simt runs half values on the native kernels (backends/native/cast.cuh), at cpu's thresholds.
      const bool stores_half = backend == "cpu" || backend == "onednn" || backend == "simt";
      for (const OpCaseResult& r : results) {
        // A backend without bf16 and f16 skips the half cases only, refusing them by name.
        const bool half_case = r.label.size() > 4 && (r.label.compare(r.label.size() - 5, 5, " bf16") == 0 ||
                                                      r.label.compare(r.label.size() - 4, 4, " f16") == 0);
        if (half_case && !stores_half) {
          EXPECT_TRUE(r.skipped) << r.op << " " << r.label;
          EXPECT_NE(r.skip_reason.find("backend '" + backend + "' cannot run"), std::string::npos) << r.skip_reason;
          continue;
        }
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
TEST_P(Conformance, BroadcastMulAddReduceSumAndClipCoef) {
  check_family("mul");
  check_family("reduce_sum");
  check_family("clip_coef");
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

// What `backend` threw compiling `plan` and running it once (after `write_inputs`), or a test
// failure when it accepted the plan.
struct Refusal {
  ErrorKind kind;
  std::string message;
};
Refusal refusal_of(const std::string& backend, const parity_plan& plan,
                   const std::function<void(Executable&)>& write_inputs = nullptr) {
  try {
    auto exe = create_backend(backend)->compile(plan, {}, nullptr);
    if (write_inputs) write_inputs(*exe);
    exe->execute();
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  ADD_FAILURE() << backend << " accepted the plan";
  return {ErrorKind::internal, "nothing was thrown"};
}

// Broadcast operands that do not fit the output, and a reduce_sum whose mask does not give its
// output: refused by the native host code (internal errors naming node and shapes), as by ref.
TEST_P(NativeNodeChecks, BroadcastAndReduceShapesThatDoNotFitAreRefused) {
  GraphBuilder b;
  const Value c = b.mul(b.input("a", Shape{2, 3, 1, 1}), b.input("b", Shape{2, 3, 4, 4}), "c");
  parity_op_params sum{};
  sum.reduce_sum.dims = 0xdu;
  b.node(PARITY_OP_REDUCE_SUM, sum, {c}, "s");
  const Graph g = b.take();
  const Plan plan(g, {"c", "s"});
  auto broken = [&](const std::function<void(std::vector<parity_node_desc>&, std::vector<parity_value_desc>&)>& edit,
                    const char* backend) {
    std::vector<parity_node_desc> nodes = plan.nodes();
    std::vector<parity_value_desc> values = plan.values();
    edit(nodes, values);
    parity_plan p = plan.c_plan();
    p.nodes = nodes.data();
    p.values = values.data();
    return refusal_of(backend, p);
  };
  // b's dim 2 of 5 neither 1 nor the output's 4 (same element count as a [2,3,4,5] would need).
  const auto wide_b = [&](std::vector<parity_node_desc>&, std::vector<parity_value_desc>& values) {
    parity_value_desc& v = values[static_cast<size_t>(plan.value("b"))];
    v.dims[2] = 1;
    v.dims[1] = 12;
  };
  for (const char* backend : {GetParam(), "ref"}) {
    const Refusal r = broken(wide_b, backend);
    EXPECT_EQ(r.kind, ErrorKind::internal) << r.message;
    EXPECT_NE(r.message.find("do not broadcast to [2,3,4,4]"), std::string::npos) << backend << ": " << r.message;
  }
  const auto wrong_mask = [&](std::vector<parity_node_desc>& nodes, std::vector<parity_value_desc>&) {
    for (parity_node_desc& n : nodes)
      if (std::string(n.name) == "s") n.params.reduce_sum.dims = 0x1u;
  };
  for (const char* backend : {GetParam(), "ref"}) {
    const Refusal r = broken(wrong_mask, backend);
    EXPECT_EQ(r.kind, ErrorKind::internal) << r.message;
    EXPECT_NE(r.message.find("[2,3,4,4]"), std::string::npos) << backend << ": " << r.message;
  }
  const Refusal simt = broken(wrong_mask, GetParam());
  EXPECT_NE(simt.message.find("simt: REDUCE_SUM node 's': dims mask 1 does not reduce [2,3,4,4] to [1,3,1,1]"),
            std::string::npos)
      << simt.message;
}

// Convolution params no rule would pass (a plan from elsewhere): refused as shape errors, as
// ref refuses them, before any kernel divides by the stride or sizes columns from them.
TEST_P(NativeNodeChecks, ConvolutionParamsNoRulePassesAreRefusedAsRefRefusesThem) {
  GraphBuilder b;
  b.conv2d(b.input("x", Shape{1, 2, 5, 5}), b.parameter("w", Shape{4, 2, 3, 3}), b.parameter("bias", Shape{4}), 1, 0,
           "conv");
  const Graph g = b.take();
  const Plan plan(g, {"conv"});
  auto message_with = [&](const std::function<void(parity_conv2d_params&)>& edit) {
    std::vector<parity_node_desc> nodes = plan.nodes();
    edit(nodes[0].params.conv2d);
    parity_plan broken = plan.c_plan();
    broken.nodes = nodes.data();
    const Refusal simt = refusal_of(GetParam(), broken), ref = refusal_of("ref", broken);
    EXPECT_EQ(simt.kind, ErrorKind::shape) << simt.message;
    EXPECT_EQ(ref.kind, ErrorKind::shape) << ref.message;
    return simt.message;
  };
  const std::string out_of_range =
      "simt: CONV2D node 'conv': stride must be > 0, padding >= 0, dilation and groups >= 0 (0 reads as 1)";
  EXPECT_EQ(message_with([](parity_conv2d_params& p) { p.stride_h = 0; }), out_of_range);
  EXPECT_EQ(message_with([](parity_conv2d_params& p) {
              p.pad_end_given = 1;
              p.pad_right = -1;
            }),
            out_of_range);
  EXPECT_EQ(message_with([](parity_conv2d_params& p) { p.dilation_w = -1; }), out_of_range);
  // Weight [4, 2, 3, 3] is [K, C, R, S]: with 2 groups it would have to be [4, 1, 3, 3].
  EXPECT_EQ(message_with([](parity_conv2d_params& p) { p.groups = 2; }),
            "simt: CONV2D node 'conv': groups 2 must divide C 2 and K 4, and the weight be [K, C/groups, R, S]");
  // A 3x3 kernel at dilation 3 spans 7 rows of a 5-row input.
  EXPECT_EQ(message_with([](parity_conv2d_params& p) { p.dilation_h = 3; }),
            "simt: CONV2D node 'conv': the dilated kernel is larger than the padded input");
}

// Training batchnorm with one value per channel: ONNX's convention allows it (the variance is 0,
// so y = beta exactly), PyTorch's is refused, as on ref (its unbiased variance divides by n - 1).
TEST_P(NativeNodeChecks, BatchnormTrainingWithOneValuePerChannelFollowsItsConvention) {
  GraphBuilder b;
  b.batchnorm2d_train(b.input("x", Shape{1, 2, 1, 1}), b.parameter("gamma", Shape{2}), b.parameter("beta", Shape{2}),
                      b.state("running_mean", Shape{2}), b.state("running_var", Shape{2}), 1e-5f, 0.9f,
                      PARITY_BATCHNORM_ONNX, "bn");
  const Graph g = b.take();
  const Plan plan(g, {"bn"});
  const float x[2] = {7.0f, -9.0f}, gamma[2] = {3.0f, 4.0f}, beta[2] = {0.5f, -2.0f}, var[2] = {1.0f, 1.0f};
  auto write_inputs = [&](Executable& exe) {
    exe.write(plan.value("x"), x, sizeof x);
    exe.write(plan.value("gamma"), gamma, sizeof gamma);
    exe.write(plan.value("beta"), beta, sizeof beta);
    exe.write(plan.value("running_var"), var, sizeof var);
  };
  auto onnx = create_backend(GetParam())->compile(plan.c_plan(), {}, nullptr);
  write_inputs(*onnx);
  onnx->execute();
  float y[2] = {};
  onnx->read(plan.value("bn"), y, sizeof y);
  EXPECT_EQ(y[0], beta[0]);
  EXPECT_EQ(y[1], beta[1]);

  std::vector<parity_node_desc> nodes = plan.nodes();
  nodes[0].params.batchnorm2d.convention = PARITY_BATCHNORM_PYTORCH;
  parity_plan pytorch = plan.c_plan();
  pytorch.nodes = nodes.data();
  const Refusal simt = refusal_of(GetParam(), pytorch, write_inputs), ref = refusal_of("ref", pytorch, write_inputs);
  EXPECT_EQ(simt.kind, ErrorKind::invalid_argument);
  EXPECT_EQ(ref.kind, ErrorKind::invalid_argument);
  EXPECT_EQ(simt.message,
            "simt: BATCHNORM2D_TRAIN node 'bn': training needs more than 1 value per channel, got N*H*W = 1");
}

// Run-time data the graph cannot have checked, refused on the host before any kernel reads it,
// with the kind ref gives: a step count of 0 (steps count from 1), a maxpool index outside its
// plane (only -1, no input element, may lie outside).
TEST_P(NativeNodeChecks, StepCountsAndPoolingIndicesAreCheckedAsOnRef) {
  GraphBuilder db;
  db.dropout(db.input("x", Shape{2, 3}), db.input("step", Shape{1}, DType::i32), 0.5f, 7, 0, "drop");
  const Graph dg = db.take();
  const Plan dplan(dg, {"drop"});
  auto step_zero = [&](Executable& exe) {
    const int32_t step = 0;
    exe.write(dplan.value("step"), &step, sizeof step);
  };
  const Refusal simt_step = refusal_of(GetParam(), dplan.c_plan(), step_zero);
  const Refusal ref_step = refusal_of("ref", dplan.c_plan(), step_zero);
  EXPECT_EQ(simt_step.kind, ErrorKind::invalid_argument);
  EXPECT_EQ(ref_step.kind, ErrorKind::invalid_argument);
  EXPECT_EQ(simt_step.message, "simt: DROPOUT node 'drop': step 0 in value 'step' must be >= 1 (steps count from 1)");

  // dy and idx [1, 1, 2, 2] of a 2x2, stride 2 pooling of a 4x4 plane: indices in [0, 16) or -1.
  GraphBuilder pb;
  parity_op_params p{};
  p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = 2;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = 2;
  p.maxpool2d.input_h = p.maxpool2d.input_w = 4;
  const Value dy = pb.input("dy", Shape{1, 1, 2, 2}), idx = pb.input("idx", Shape{1, 1, 2, 2}, DType::i32);
  pb.node(PARITY_OP_MAXPOOL2D_BWD, p, {dy, idx}, "pool_bwd");
  const Graph pg = pb.take();
  const Plan pplan(pg, {"pool_bwd"});
  auto message_with = [&](std::vector<int32_t> idx) {
    auto write_idx = [&](Executable& exe) { exe.write(pplan.value("idx"), idx.data(), idx.size() * sizeof(int32_t)); };
    const Refusal simt = refusal_of(GetParam(), pplan.c_plan(), write_idx);
    const Refusal ref = refusal_of("ref", pplan.c_plan(), write_idx);
    EXPECT_EQ(simt.kind, ErrorKind::data) << simt.message;
    EXPECT_EQ(ref.kind, ErrorKind::data) << ref.message;
    return simt.message;
  };
  EXPECT_EQ(message_with({0, 16, -1, 10}),
            "simt: MAXPOOL2D_BWD node 'pool_bwd': index 16 at element 1 is outside its 4x4 plane and not -1");
  EXPECT_EQ(message_with({0, 3, -1, -2}),
            "simt: MAXPOOL2D_BWD node 'pool_bwd': index -2 at element 3 is outside its 4x4 plane and not -1");
}

// The native op code's own guard of its operand slots (native_node.h): a node that reaches an
// op's host code without an operand the op reads is an internal error naming the node, not a
// read of an unset slot. Every backend here runs the kit's arity check first, so this drives
// both simt tables directly, as a backend without that check would.
TEST_P(NativeNodeChecks, ANodeWithoutAnOperandItsOpReadsIsNamed) {
  struct Failure {
    parity_status status;
    std::string message;
  };
  struct ThrowingMemory {  // nothing is read: the check pass fails before any operand's storage
    float* f32(int32_t) { return nullptr; }
    int32_t* i32(int32_t) { return nullptr; }
    const int32_t* host_i32(int32_t) { return nullptr; }
    float* workspace() { return nullptr; }
    [[noreturn]] void fail(parity_status status, const std::string& message) { throw Failure{status, message}; }
  };
  GraphBuilder b;
  b.conv2d(b.input("x", Shape{1, 2, 5, 5}), b.parameter("w", Shape{4, 2, 3, 3}), b.parameter("bias", Shape{4}), 1, 0,
           "conv");
  b.relu(b.input("a", Shape{2, 3}), "r");
  const Graph g = b.take();
  const Plan plan(g, {"conv", "r"});
  parity_node_desc conv = plan.nodes()[0], relu = plan.nodes()[1];
  conv.num_inputs = 1;  // x without w
  relu.num_outputs = 0;
  ThrowingMemory memory;
  for (const native::NativeOps* ops : {&native::simt_w32::native_ops(), &native::simt_w64::native_ops()}) {
    const native::NodeDispatcher<ThrowingMemory> check("simt", parity_op_name, *ops, plan.values(), memory,
                                                       native::NodePass::check);
    auto failure_of = [&](const parity_node_desc& node) {
      try {
        check.run(node);
      } catch (const Failure& f) {
        EXPECT_EQ(f.status, PARITY_STATUS_INTERNAL) << f.message;
        return f.message;
      }
      return std::string("nothing was reported");
    };
    EXPECT_EQ(failure_of(conv), "simt: CONV2D node 'conv' has 1 inputs; the op needs input 1") << ops->target;
    EXPECT_EQ(failure_of(relu), "simt: RELU node 'r' has 0 outputs; the op needs output 0") << ops->target;
  }
}

// ABI 7's softmax_xent on the host: a label outside the classes that is not the ignore_index is a
// data error on ref, cpu and simt alike (and the ignore_index itself is no error, whatever its
// value); a reduction no rule passes (a plan from elsewhere) is an invalid argument.
TEST_P(NativeNodeChecks, SoftmaxXentLabelsAndReductionAreCheckedOnEveryBackend) {
  GraphBuilder b;
  b.softmax_xent(b.input("logits", Shape{3, 3}), b.input("labels", Shape{3}, DType::i32), PARITY_REDUCTION_NONE, -100,
                 "loss");
  const Graph g = b.take();
  const Plan plan(g, {"loss"});
  const float logits[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  for (const std::string& backend : {std::string(GetParam()), std::string("ref"), std::string("cpu")}) {
    const int32_t bad[3] = {-100, 3, 0};
    const Refusal r = refusal_of(backend, plan.c_plan(), [&](Executable& exe) {
      exe.write(plan.value("logits"), logits, sizeof logits);
      exe.write(plan.value("labels"), bad, sizeof bad);
    });
    EXPECT_EQ(r.kind, ErrorKind::data) << backend << ": " << r.message;
    EXPECT_NE(r.message.find("label 3"), std::string::npos) << backend << ": " << r.message;
    EXPECT_NE(r.message.find("ignore_index -100"), std::string::npos) << backend << ": " << r.message;

    auto exe = create_backend(backend)->compile(plan.c_plan(), {}, nullptr);
    const int32_t good[3] = {-100, 2, 0};
    exe->write(plan.value("logits"), logits, sizeof logits);
    exe->write(plan.value("labels"), good, sizeof good);
    exe->execute();
    float loss[3];
    exe->read(plan.value("loss"), loss, sizeof loss);
    EXPECT_EQ(loss[0], 0.0f) << backend;  // ignored
    EXPECT_NEAR(loss[1], std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-6) << backend;  // the row's maximum
    EXPECT_NEAR(loss[2], 2 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-6) << backend;

    std::vector<parity_node_desc> nodes = plan.nodes();
    nodes[0].params.softmax_xent.reduction = 9;
    parity_plan broken = plan.c_plan();
    broken.nodes = nodes.data();
    const Refusal unknown = refusal_of(backend, broken);
    EXPECT_EQ(unknown.kind, ErrorKind::invalid_argument) << backend << ": " << unknown.message;
    EXPECT_NE(unknown.message.find("reduction 9"), std::string::npos) << backend << ": " << unknown.message;
  }
}

// Where the labels exist only on the device (a GPU backend's labels that no INPUT shadows on the
// host), nothing checks them before the kernels run: a label outside the classes then gives its
// row a NaN term and a NaN gradient, and no logit outside the row is read. Both simt tables run
// the kernels here on storage whose labels the host "cannot see".
TEST_P(NativeNodeChecks, SoftmaxXentKernelsGiveAnUncheckedBadLabelNaNAndReadOnlyItsRow) {
  GraphBuilder b;
  const Value logits = b.input("logits", Shape{3, 3}), labels = b.input("labels", Shape{3}, DType::i32);
  const Value none = b.softmax_xent(logits, labels, PARITY_REDUCTION_NONE, -100, "none");
  b.softmax_xent(logits, labels, PARITY_REDUCTION_MEAN, -100, "mean");
  parity_op_params p{};
  p.softmax_xent.reduction = PARITY_REDUCTION_NONE;
  p.softmax_xent.has_ignore_index = 1;
  p.softmax_xent.ignore_index = -100;
  b.node(PARITY_OP_SOFTMAX_XENT_BWD, p, {logits, labels, b.input("dloss", Shape{3})}, "bwd");
  (void)none;
  const Graph g = b.take();
  const Plan plan(g, {"none", "mean", "bwd"});
  struct DeviceOnlyLabels {
    std::vector<std::vector<float>> f;
    std::vector<std::vector<int32_t>> i;
    std::vector<float> ws;
    float* f32(int32_t v) { return f[static_cast<size_t>(v)].data(); }
    int32_t* i32(int32_t v) { return i[static_cast<size_t>(v)].data(); }
    const int32_t* host_i32(int32_t) { return nullptr; }
    float* workspace() { return ws.data(); }
    [[noreturn]] void fail(parity_status, const std::string& message) { throw Error(ErrorKind::internal, message); }
  };
  for (const native::NativeOps* ops : {&native::simt_w32::native_ops(), &native::simt_w64::native_ops()}) {
    DeviceOnlyLabels memory;
    for (const parity_value_desc& v : plan.values()) {
      memory.f.emplace_back(static_cast<size_t>(kit::numel_of(v)), std::nanf(""));
      memory.i.emplace_back(static_cast<size_t>(kit::numel_of(v)), 0);
    }
    // Row 0 takes class 1, row 1 the label 7 of 3 classes, row 2 is ignored.
    memory.f[static_cast<size_t>(plan.value("logits"))] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    memory.i[static_cast<size_t>(plan.value("labels"))] = {1, 7, -100};
    memory.f[static_cast<size_t>(plan.value("dloss"))] = {1, 1, 1};
    const native::NodeDispatcher<DeviceOnlyLabels> run("simt", parity_op_name, *ops, plan.values(), memory);
    memory.ws.assign(static_cast<size_t>(run.workspace_floats(plan.nodes()) + 1), 0.0f);
    for (const parity_node_desc& n : plan.nodes()) run.run(n);
    const std::vector<float>& each = memory.f[static_cast<size_t>(plan.value("none"))];
    EXPECT_NEAR(each[0], 1 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-6) << ops->target;
    EXPECT_TRUE(std::isnan(each[1])) << ops->target;
    EXPECT_EQ(each[2], 0.0f) << ops->target;
    EXPECT_TRUE(std::isnan(memory.f[static_cast<size_t>(plan.value("mean"))][0])) << ops->target;
    const std::vector<float>& dlogits = memory.f[static_cast<size_t>(plan.value("bwd"))];
    for (int k = 0; k < 3; ++k) {
      EXPECT_TRUE(std::isfinite(dlogits[static_cast<size_t>(k)])) << ops->target << " " << k;
      EXPECT_TRUE(std::isnan(dlogits[static_cast<size_t>(3 + k)])) << ops->target << " " << k;
      EXPECT_EQ(dlogits[static_cast<size_t>(6 + k)], 0.0f) << ops->target << " " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backend, NativeNodeChecks, ::testing::Values("simt"),
                         [](const auto& info) { return std::string(info.param); });

INSTANTIATE_TEST_SUITE_P(Backend, Conformance, ::testing::Values("cpu", "simt"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });
#ifdef PARITY_TEST_ONEDNN
INSTANTIATE_TEST_SUITE_P(Backend_onednn, Conformance, ::testing::Values("onednn"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });
#endif

}  // namespace
}  // namespace parity
