// tests/test_conformance.cpp — the op conformance suite: every op, forward and backward, on
// each executable backend against the float64 `ref` oracle, through the engine of
// `parity check ops` (check/check_ops.cpp runs the cases each op's rule file lists: batch 1, odd sizes, stride and
// padding edge cases, ties and zeros at the maxpool and relu kinks, large logits; outputs
// NaN-prefilled and between guard regions). Thresholds are the ones argued next to each op in
// ops/*.cpp. Each op family runs in normal mode and in exact mode (small-integer inputs, so
// conv and linear must match ref bit for bit). The simt pass runs at warp 32 and at warp 64
// (CTest sets PARITY_SIMT_WARP).
#include <gtest/gtest.h>

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
TEST_P(Conformance, MaxpoolForwardAndBackward) { check_family("maxpool2d"); }
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

INSTANTIATE_TEST_SUITE_P(Backend, Conformance, ::testing::Values("cpu", "simt"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
}  // namespace parity
