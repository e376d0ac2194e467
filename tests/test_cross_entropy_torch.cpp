// tests/test_cross_entropy_torch.cpp — SOFTMAX_XENT and its backward (ABI 7: reduction mean, sum
// or none, ignore_index) on ref, cpu and simt against torch.nn.functional.cross_entropy's loss and
// logits gradient, as torch 1.13 computed them in float64 (tests/data/cross_entropy_torch.json,
// written by tests/torch_cross_entropy.py; CTest's TorchReference.CrossEntropyValues checks that
// the file is still torch's wherever torch is installed). Every reduction, with the ignore_index
// outside the classes, equal to a class, absent, and on every row (the mean's 0 / 0 = NaN).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parity/parity.h"

namespace parity {
namespace {

nlohmann::json torch_values() {
  std::ifstream f(std::string(PARITY_TEST_DATA_DIR) + "/cross_entropy_torch.json");
  EXPECT_TRUE(f.good()) << "tests/data/cross_entropy_torch.json";
  return nlohmann::json::parse(f);
}

parity_reduction reduction_of(const std::string& name) {
  if (name == "sum") return PARITY_REDUCTION_SUM;
  if (name == "none") return PARITY_REDUCTION_NONE;
  EXPECT_EQ(name, "mean");
  return PARITY_REDUCTION_MEAN;
}

// torch's value (JSON null: NaN) against parity's float32 result. The inputs are exact in float32
// and torch's values exact up to float64 rounding, so what remains is float32 exp/log: ~1e-7
// relative per row term of magnitude ~4, ~1e-6 on a sum of six; 1e-5 * max(1, |torch|) holds it.
// A semantic difference is far larger: a mean over 6 rows instead of 4 is 33%, an ignored row
// counted adds a term of 0.3 to 3.8, an ignored row's gradient is not 0 but ~0.1.
void expect_torch_values(const std::vector<float>& got, const nlohmann::json& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (want[i].is_null()) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " [" << i << "]: torch gives nan, got " << got[i];
      continue;
    }
    const double w = want[i].get<double>();
    EXPECT_NEAR(got[i], w, 1e-5 * std::max(1.0, std::fabs(w))) << what << " [" << i << "]";
  }
}

TEST(CrossEntropyAgainstTorch, LossAndGradientOfEveryReductionAndIgnoreIndex) {
  const nlohmann::json values = torch_values();
  const int64_t n = values["n"], k = values["k"];
  const std::vector<float> logits = values["logits"].get<std::vector<float>>();
  ASSERT_EQ(values["cases"].size(), 12u);
  for (const nlohmann::json& c : values["cases"]) {
    const std::string name = c["name"];
    const parity_reduction reduction = reduction_of(c["reduction"]);
    std::optional<int32_t> ignore_index;
    if (!c["ignore_index"].is_null()) ignore_index = c["ignore_index"].get<int32_t>();
    const std::vector<int32_t> labels = c["labels"].get<std::vector<int32_t>>();
    const std::vector<float> dloss = c["dloss"].get<std::vector<float>>();

    GraphBuilder b;
    const Value x = b.input("logits", Shape{n, k});
    const Value y = b.input("labels", Shape{n}, DType::i32);
    b.softmax_xent(x, y, reduction, ignore_index, "loss");
    // The backward with the params the builder gave the forward, as its gradient rule emits it.
    const parity_op_params params = b.graph().nodes().back().params;
    const Value seed = b.input("dloss", Shape{static_cast<int64_t>(dloss.size())});
    b.node(PARITY_OP_SOFTMAX_XENT_BWD, params, {x, y, seed}, "dlogits");
    const Graph g = b.take();
    const Plan plan(g, {"loss", "dlogits"});
    for (const char* backend : {"ref", "cpu", "simt"}) {
      auto exe = create_backend(backend)->compile(plan.c_plan(), {}, nullptr);
      exe->write(plan.value("logits"), logits.data(), logits.size() * sizeof(float));
      exe->write(plan.value("labels"), labels.data(), labels.size() * sizeof(int32_t));
      exe->write(plan.value("dloss"), dloss.data(), dloss.size() * sizeof(float));
      exe->execute();
      std::vector<float> loss(c["loss"].size()), dlogits(static_cast<size_t>(n * k));
      exe->read(plan.value("loss"), loss.data(), loss.size() * sizeof(float));
      exe->read(plan.value("dlogits"), dlogits.data(), dlogits.size() * sizeof(float));
      expect_torch_values(loss, c["loss"], std::string(backend) + ": " + name + ": loss");
      expect_torch_values(dlogits, c["dlogits"], std::string(backend) + ": " + name + ": dlogits");
    }
  }
}

}  // namespace
}  // namespace parity
