// tests/test_bench_precision.cpp — `parity bench --precision`: the refusals of bad lists, the
// half step tolerance the bench validates with, a smoke run that prints a bf16 row beside f32
// with its ratio, simt's bf16 row (the native kernels run half values), and (when the LibTorch
// peer is built) the peer under CPU bf16 autocast and its refusal of fp16. No timing is asserted.
#include <fstream>
#include <regex>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bench/cases.h"
#include "model/autocast.h"
#include "parity/backend.h"
#include "parity/model.h"
#include "tests/test_helpers.h"

namespace {

using namespace parity;

parity::testing::CommandRun run_cli(const std::string& args) {
  return parity::testing::run_command(std::string(PARITY_CLI_PATH) + " " + args);
}

// The cheapest run that still validates and times a training step at each precision.
const std::string kTiny =
    "--models seed-cnn --batch 4 --validate-batch 4 --infer-batch 4 --min-time 0.01 --warmup 1 --rounds 2 "
    "--no-ops --no-rss --no-scaling";

const nlohmann::json* find_case(const nlohmann::json& doc, const std::string& name, const std::string& backend) {
  for (const nlohmann::json& c : doc.at("cases"))
    if (c.value("name", "") == name && c.value("backend", "") == backend) return &c;
  return nullptr;
}

// A ratio line: a number, or inconclusive with the rule's reason.
std::regex ratio_line(const std::string& what) {
  return std::regex(what + R"( images/s: ([0-9]+\.[0-9]{2}x \(median of 2 per-round ratios|inconclusive \(.*\) \(per-round ratios [0-9.]+ [0-9.]+\)))");
}

TEST(BenchPrecision, HalfStepToleranceIsTheLoosestHalfOpsOwn) {
  const ModelSpec spec = model_spec("seed-cnn");
  ForwardOptions training;
  training.training = true;
  const Graph f32 = build_forward(spec, 2, training);
  EXPECT_EQ(bench::half_step_nmse(f32), 0.0) << "an f32 graph keeps the bench's f32 bounds";
  // conv2d and linear write half values with kHalfRoundedSupport's step bounds (ops/op_rule.cpp).
  EXPECT_EQ(bench::half_step_nmse(autocast(f32, Precision::bf16)), 1e-5);
  EXPECT_EQ(bench::half_step_nmse(autocast(f32, Precision::f16)), 2e-7);
}

TEST(BenchPrecision, BadListsAreRefusedBeforeAnythingIsTimed) {
  const struct {
    std::string args, fragment;
  } cases[] = {
      {"--precision fp17", "precision must be f32, bf16 or fp16, got 'fp17'"},
      {"--precision bf16,bf16", "bench --precision: bf16 is given twice"},
      {"--precision f32,BF16", "got 'BF16'"},
      {"--precision bf16 --thread-scaling 1,2", "only the ordinary bench times half precisions, not --thread-scaling"},
      {"--precision f32,bf16 --distributed mpi", "only the ordinary bench times half precisions, not --distributed mpi"},
  };
  for (const auto& c : cases) {
    const parity::testing::CommandRun r = run_cli("bench " + c.args + " " + kTiny);
    EXPECT_NE(r.status, 0) << c.args << "\n" << r.output;
    EXPECT_NE(r.status, -1) << c.args << ": did not exit normally\n" << r.output;
    EXPECT_NE(r.output.find(c.fragment), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("train step"), std::string::npos) << c.args << ": refused after timing?\n" << r.output;
  }
}

TEST(BenchPrecision, PrintsABf16RowBesideF32WithItsRatio) {
  const std::string json_path = ::testing::TempDir() + "bench-precision.json";
  const parity::testing::CommandRun r =
      run_cli("bench --backend cpu --threads 1 --precision f32,bf16 --json " + json_path + " " + kTiny);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nseed-cnn train step +cpu +4 )"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nseed-cnn train step, bf16 +cpu +4 )"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, ratio_line("bf16/f32"))) << r.output;
  std::ifstream f(json_path);
  ASSERT_TRUE(f) << json_path;
  const nlohmann::json doc = nlohmann::json::parse(f);
  const nlohmann::json* f32 = find_case(doc, "seed-cnn train step", "cpu");
  const nlohmann::json* bf16 = find_case(doc, "seed-cnn train step, bf16", "cpu");
  ASSERT_TRUE(f32 && bf16) << doc.dump(2);
  EXPECT_EQ(f32->at("precision"), "f32");
  EXPECT_EQ(bf16->at("precision"), "bf16");
  EXPECT_TRUE(bf16->at("valid").get<bool>()) << bf16->dump(2);
  EXPECT_GT(bf16->at("images_per_s").get<double>(), 0);
  // Validated at the half bound: worse than f32's 1e-9 is allowed, beyond 1e-5 is not.
  EXPECT_LE(bf16->at("validation_nmse").get<double>(), 1e-5);
  const nlohmann::json& ratio = bf16->at("ratio_to_f32");
  EXPECT_EQ(ratio.at("rounds"), 2);
  EXPECT_EQ(ratio.at("round_ratios").size(), 2u);
  EXPECT_EQ(bf16->at("round_images_per_s").size(), 2u);
  EXPECT_EQ(ratio.at("ratio").is_number(), ratio.at("verdict").get<std::string>().find("inconclusive") ==
                                                 std::string::npos)
      << ratio.dump(2);
  EXPECT_FALSE(f32->contains("ratio_to_f32"));
  EXPECT_EQ(doc.at("options").at("precisions"), nlohmann::json::array({"f32", "bf16"}));
  // Inference stays f32: no half inference row.
  EXPECT_EQ(find_case(doc, "seed-cnn inference, bf16", "cpu"), nullptr);
  EXPECT_NE(find_case(doc, "seed-cnn inference", "cpu"), nullptr);
}

// simt runs half values (the native kernels, backends/native/cast.cuh): its bf16 row is
// validated and timed beside f32, nothing skipped. (A backend without bf16 is skipped with its
// reason by the same code path the peer's fp16 refusal takes.)
TEST(BenchPrecision, SimtRunsTheBf16Row) {
  bool simt = false;
  for (const BackendInfo& b : list_backends()) simt = simt || b.name == "simt";
  if (!simt) GTEST_SKIP() << "simt is not built (PARITY_WITH_SIMT=OFF)";
  const parity::testing::CommandRun r = run_cli("bench --backend simt --threads 1 --precision f32,bf16 " + kTiny);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find("skipped"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nseed-cnn train step, bf16 +simt +4 )"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nseed-cnn train step +simt +4 )"))) << r.output;
}

#ifdef PARITY_TEST_TORCH_PEER
TEST(BenchPrecision, ThePeerRunsBf16AutocastAndNoFp16) {
  const std::string json_path = ::testing::TempDir() + "bench-precision-peer.json";
  const parity::testing::CommandRun r =
      run_cli("bench --backend cpu --threads 1 --against torch --precision f32,bf16,fp16 --peer " PARITY_TEST_TORCH_PEER
              " --json " + json_path + " " + kTiny);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* row : {R"(\n  torch peer +torch +4 )", R"(\n  torch peer, autocast bf16 +torch +4 )",
                          R"(\nseed-cnn train step, fp16 +cpu +4 )"})
    EXPECT_TRUE(std::regex_search(r.output, std::regex(row))) << row << "\n" << r.output;
  EXPECT_NE(r.output.find("autocast cpu bf16)"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, ratio_line("torch bf16/f32"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, ratio_line("fp16/f32"))) << r.output;
  EXPECT_NE(r.output.find("torch peer at fp16: not run: PyTorch 1.13's CPU autocast runs bf16 only"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("LOSSES DISAGREE"), std::string::npos) << r.output;
  // Autocast took effect: the peer's bf16 first loss is not its f32 one (same weights, same batch).
  std::ifstream f(json_path);
  ASSERT_TRUE(f) << json_path;
  const nlohmann::json doc = nlohmann::json::parse(f);
  const nlohmann::json* f32 = find_case(doc, "seed-cnn train step", "cpu");
  const nlohmann::json* bf16 = find_case(doc, "seed-cnn train step, bf16", "cpu");
  ASSERT_TRUE(f32 && bf16) << doc.dump(2);
  const nlohmann::json& peer16 = bf16->at("peer");
  EXPECT_EQ(peer16.at("rounds").at(0).at("autocast"), "cpu bf16") << peer16.dump(2);
  EXPECT_EQ(f32->at("peer").at("rounds").at(0).at("autocast"), "off");
  EXPECT_NE(peer16.at("loss0").get<double>(), f32->at("peer").at("loss0").get<double>()) << doc.dump(2);
  EXPECT_TRUE(peer16.at("ratio_to_f32").contains("verdict"));
}

TEST(BenchPrecision, ThePeerRefusesFp16Autocast) {
  const parity::testing::CommandRun r = parity::testing::run_command(
      std::string(PARITY_TEST_TORCH_PEER) + " --model-file none.json --weights none.safetensors --autocast fp16");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--autocast fp16: PyTorch 1.13's CPU autocast runs bfloat16 only"), std::string::npos)
      << r.output;
}
#endif

}  // namespace
