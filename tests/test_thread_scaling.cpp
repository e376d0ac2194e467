// tests/test_thread_scaling.cpp — `parity bench --thread-scaling`: the statistics of the alternated
// rounds and the inconclusive rule (bench/thread_scaling.h, pure functions on given numbers: no
// timing is asserted), the refusal of bad thread counts, a smoke run of the option, and the
// head-to-head of two backends that ends a `parity bench` run with several.
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bench/cases.h"
#include "bench/thread_scaling.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/model.h"
#include "tests/test_helpers.h"

namespace {

using namespace parity;
using namespace parity::bench;

TEST(ThreadScaling, MedianOfOddAndEvenCounts) {
  EXPECT_DOUBLE_EQ(median_of({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(median_of({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(median_of({7}), 7);
  EXPECT_DOUBLE_EQ(median_of({}), 0);
}

TEST(ThreadScaling, SpreadIsRangeOverMedian) {
  EXPECT_DOUBLE_EQ(relative_spread({90, 100, 110, 100, 105}), 20.0 / 100);
  EXPECT_DOUBLE_EQ(relative_spread({5, 5, 5, 5, 5}), 0);
  EXPECT_DOUBLE_EQ(relative_spread({5}), 0);  // one round: no spread to measure
}

TEST(ThreadScaling, QuietRoundsGiveTheMedianOfThePerRoundRatios) {
  const ScalingSummary s = summarize_scaling({1000, 1010, 990, 1005, 995}, {1900, 1880, 1910, 1895, 1905});
  EXPECT_EQ(s.rounds, 5);
  EXPECT_DOUBLE_EQ(s.median_low, 1000);
  EXPECT_DOUBLE_EQ(s.median_high, 1900);
  EXPECT_DOUBLE_EQ(s.noise_low, 20.0 / 1000);
  EXPECT_DOUBLE_EQ(s.noise_high, 30.0 / 1900);
  EXPECT_DOUBLE_EQ(s.noise, 20.0 / 1000);
  EXPECT_DOUBLE_EQ(s.ratio, 1.9);  // ratios 1.9, 1.861, 1.929, 1.886, 1.915
  EXPECT_TRUE(s.conclusive);
  EXPECT_EQ(scaling_verdict(s), "1.90x");
}

// The load drops between rounds 3 and 4 (both counts slow by the same factor): each round's own
// ratio is unaffected, while the ratio of the medians pairs a median of the fast rounds with one
// of the slow rounds.
TEST(ThreadScaling, APairedRatioCancelsDriftThatTheRatioOfMediansDoesNot) {
  const ScalingSummary s = summarize_scaling({100, 100, 100, 80, 80}, {200, 200, 152, 152, 152});
  EXPECT_DOUBLE_EQ(s.ratio, 1.9);  // per round: 2, 2, 1.52, 1.9, 1.9
  EXPECT_DOUBLE_EQ(s.ratio_of_medians, 1.52);
  // The drift is also noise across rounds (20% and 32%), so the verdict is not a number: the
  // larger of the two spreads is the one named.
  EXPECT_DOUBLE_EQ(s.noise_low, 0.2);
  EXPECT_DOUBLE_EQ(s.noise_high, 48.0 / 152);
  EXPECT_DOUBLE_EQ(s.noise, 48.0 / 152);
  EXPECT_FALSE(s.conclusive);
  EXPECT_EQ(scaling_verdict(s), "inconclusive (noise 31.6% > 10.0%)");
}

TEST(ThreadScaling, NoiseOfEitherCountAboveTheLimitMakesItInconclusive) {
  const std::vector<double> quiet = {100, 100, 100, 100, 100};
  const ScalingSummary at_limit = summarize_scaling(quiet, {200, 180, 200, 200, 200});  // 20/200 = 10%
  EXPECT_DOUBLE_EQ(at_limit.noise_high, kScalingNoiseLimit);
  EXPECT_TRUE(at_limit.conclusive) << "the limit itself still gives a number";
  EXPECT_EQ(scaling_verdict(at_limit), "2.00x");
  const ScalingSummary above = summarize_scaling(quiet, {200, 178, 200, 200, 200});  // 11%
  EXPECT_FALSE(above.conclusive);
  EXPECT_DOUBLE_EQ(above.noise_low, 0);
  EXPECT_EQ(scaling_verdict(above), "inconclusive (noise 11.0% > 10.0%)");
  const ScalingSummary low_noisy = summarize_scaling({100, 80, 100, 100, 100}, {200, 200, 200, 200, 200});
  EXPECT_FALSE(low_noisy.conclusive);
  EXPECT_DOUBLE_EQ(low_noisy.noise, 0.2);
  // A caller's own limit is honoured and named.
  const ScalingSummary loose = summarize_scaling({100, 80, 100, 100, 100}, {200, 200, 200, 200, 200}, 0.25);
  EXPECT_TRUE(loose.conclusive);
  EXPECT_EQ(scaling_verdict(summarize_scaling(quiet, {200, 178, 200, 200, 200}, 0.05)),
            "inconclusive (noise 11.0% > 5.0%)");
}

TEST(ThreadScaling, OneRoundMeasuresNoNoiseAndGivesNoNumber) {
  const ScalingSummary s = summarize_scaling({100}, {190});
  EXPECT_DOUBLE_EQ(s.ratio, 1.9);
  EXPECT_DOUBLE_EQ(s.noise, 0);
  EXPECT_FALSE(s.conclusive);
  EXPECT_EQ(scaling_verdict(s), "inconclusive (1 round: no noise measured)");
}

// Load that stays lowers the HIGH count in every round alike, which the spread does not see.
TEST(ThreadScaling, OtherProcessesBusyAboveTheLimitMakeItInconclusive) {
  const std::vector<double> low = {1000, 1000, 1000, 1000, 1000}, high = {1000, 1000, 1000, 1000, 1000};
  EXPECT_EQ(scaling_verdict(summarize_scaling(low, high, kScalingNoiseLimit, 0.10)), "1.00x");
  EXPECT_EQ(scaling_verdict(summarize_scaling(low, high, kScalingNoiseLimit, -1)), "1.00x") << "unknown: not ruled on";
  const ScalingSummary busy = summarize_scaling(low, high, kScalingNoiseLimit, 0.543);
  EXPECT_FALSE(busy.conclusive);
  EXPECT_DOUBLE_EQ(busy.others_share, 0.543);
  EXPECT_EQ(scaling_verdict(busy), "inconclusive (other processes kept 54.3% of the CPUs busy > 10.0%)");
  EXPECT_EQ(scaling_verdict(summarize_scaling({100, 80, 100, 100, 100}, high, kScalingNoiseLimit, 0.2)),
            "inconclusive (noise 20.0% > 10.0%; other processes kept 20.0% of the CPUs busy > 10.0%)");
}

void expect_invalid(const std::vector<double>& low, const std::vector<double>& high, const std::string& fragment) {
  try {
    summarize_scaling(low, high);
    ADD_FAILURE() << "no error; expected one with '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ThreadScaling, RoundsThatCannotBeSummarisedAreRefused) {
  expect_invalid({}, {}, "at least one; got 0 and 0");
  expect_invalid({1, 2}, {1}, "got 2 and 1");
  expect_invalid({1, 0}, {1, 2}, "positive finite number, got 0");
  expect_invalid({1, 2}, {1, std::numeric_limits<double>::quiet_NaN()}, "got nan");
  expect_invalid({1, 2}, {1, -3}, "got -3");
}

TEST(ThreadScaling, ThreadCountsMustBeTwoAscendingCountsTheMachineHas) {
  EXPECT_EQ(thread_scaling_counts_error({1, 2}, 2), "");
  EXPECT_EQ(thread_scaling_counts_error({2, 8}, 16), "");
  EXPECT_EQ(thread_scaling_counts_error({1}, 2), "give two thread counts, LOW,HIGH (e.g. 1,2), got 1");
  EXPECT_EQ(thread_scaling_counts_error({1, 2, 4}, 4), "give two thread counts, LOW,HIGH (e.g. 1,2), got 3");
  EXPECT_NE(thread_scaling_counts_error({0, 2}, 2).find("at least 1, got 0"), std::string::npos);
  EXPECT_NE(thread_scaling_counts_error({-1, 2}, 2).find("at least 1, got -1"), std::string::npos);
  EXPECT_EQ(thread_scaling_counts_error({1, 3}, 2),
            "3 threads asked for, but this machine lets parity use 2 hardware threads");
  EXPECT_EQ(thread_scaling_counts_error({2, 1}, 2), "the first count must be below the second (LOW,HIGH), got 2,1");
  EXPECT_EQ(thread_scaling_counts_error({2, 2}, 2), "the first count must be below the second (LOW,HIGH), got 2,2");
}

// ---------------------------------------------------------------- the option, end to end
parity::testing::CommandRun run_cli(const std::string& args) {
  return parity::testing::run_command(std::string(PARITY_CLI_PATH) + " " + args);
}

std::vector<unsigned char> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.data());
  return {p, p + t.nbytes()};
}

// Each round restarts from the same weights, so every round times the same steps: after
// restart() the losses and the updated weights repeat bit for bit.
TEST(ThreadScaling, RestartReplaysTheSameTrainingSteps) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const auto weights = init_weights(spec, 1);
  std::unique_ptr<Backend> cpu = make_backend("cpu", 1);
  ModelCaseStep step(spec, *cpu, true, 8, 1, weights);
  const float first = step.run(0), second = step.run(1);
  EXPECT_NE(first, second);  // the weights moved, and the batch changed
  const std::string& w = spec.params.front().name;
  const std::vector<unsigned char> trained = bytes_of(step.value(w));
  EXPECT_NE(trained, bytes_of(weights.at(w)));
  step.restart();
  EXPECT_EQ(bytes_of(step.value(w)), bytes_of(weights.at(w)));
  EXPECT_EQ(step.run(0), first);
  EXPECT_EQ(step.run(1), second);
  EXPECT_EQ(bytes_of(step.value(w)), trained);
}

TEST(ThreadScalingCli, PrintsARatioOrInconclusiveAndWritesIt) {
  const int hardware = hardware_threads();
  const std::string json_path = ::testing::TempDir() + "thread-scaling.json";
  const std::string tiny = "--models seed-cnn --batch 4 --validate-batch 4 --min-time 0.01 --warmup 1 --json " + json_path;
  if (hardware < 2) {  // 1,2 is then above the machine: refused, which is worth checking too
    const parity::testing::CommandRun r = run_cli("bench --thread-scaling 1,2 " + tiny);
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("2 threads asked for"), std::string::npos) << r.output;
    return;
  }
  const parity::testing::CommandRun r = run_cli("bench --backend cpu --thread-scaling 1,2 " + tiny);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::regex verdict(R"(2-thread/1-thread: ([0-9]+\.[0-9]{2}x|inconclusive \((noise|other processes)[^)]*> 10\.0%\))\n)");
  EXPECT_TRUE(std::regex_search(r.output, verdict)) << r.output;
  for (const char* line : {"seed-cnn train step, cpu, batch 4: 1 vs 2 threads, 5 rounds", "  median ", "  noise ",
                           "  others ", "  load average "})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  std::ifstream f(json_path);
  ASSERT_TRUE(f) << json_path;
  const nlohmann::json doc = nlohmann::json::parse(f);
  ASSERT_EQ(doc.at("thread_scaling").size(), 1u) << doc.dump(2);
  const nlohmann::json& c = doc["thread_scaling"][0];
  EXPECT_EQ(c.at("rounds").size(), 5u);
  EXPECT_EQ(c.at("low_threads"), 1);
  EXPECT_EQ(c.at("high_threads"), 2);
  EXPECT_EQ(c.at("noise_limit"), kScalingNoiseLimit);
  // The number is there exactly when it is conclusive; the verdict says the same as the terminal.
  EXPECT_EQ(c.at("ratio").is_number(), c.at("conclusive").get<bool>()) << c.dump(2);
  EXPECT_NE(r.output.find("2-thread/1-thread: " + c.at("verdict").get<std::string>() + "\n"), std::string::npos)
      << c.dump(2) << "\n" << r.output;
}

// Two backends: after their own sections the bench pairs their training steps round by round,
// under the same rule, and writes the pairing to the JSON report.
TEST(HeadToHeadCli, PairsTheFirstBackendWithTheNextAndWritesIt) {
  const std::string json_path = ::testing::TempDir() + "head-to-head.json";
  const parity::testing::CommandRun r =
      run_cli("bench --backend cpu,simt --no-ops --no-rss --no-scaling --models seed-cnn --batch 4 --infer-batch 4 "
              "--validate-batch 4 --min-time 0.01 --warmup 1 --json " + json_path);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("head to head: each model's training step on cpu against simt, alternated for 5 rounds"),
            std::string::npos) << r.output;
  const std::regex section(R"(seed-cnn train step, batch 4, [0-9]+ threads: cpu against simt, 5 rounds\n)");
  EXPECT_TRUE(std::regex_search(r.output, section)) << r.output;
  const std::regex verdict(R"(cpu/simt: ([0-9]+\.[0-9]{2}x|inconclusive \((noise|other processes)[^)]*> 10\.0%\))\n)");
  EXPECT_TRUE(std::regex_search(r.output, verdict)) << r.output;
  std::ifstream f(json_path);
  ASSERT_TRUE(f) << json_path;
  const nlohmann::json doc = nlohmann::json::parse(f);
  ASSERT_EQ(doc.at("head_to_head").size(), 1u) << doc.dump(2);
  const nlohmann::json& c = doc["head_to_head"][0];
  EXPECT_EQ(c.at("backend_a"), "simt");
  EXPECT_EQ(c.at("backend_b"), "cpu");
  EXPECT_EQ(c.at("valid"), true);
  EXPECT_EQ(c.at("rounds").size(), 5u);
  for (const nlohmann::json& round : c["rounds"])  // ratio = cpu's images/s over simt's, round by round
    EXPECT_DOUBLE_EQ(round.at("ratio").get<double>(),
                     round.at("high_images_per_s").get<double>() / round.at("low_images_per_s").get<double>());
  EXPECT_EQ(c.at("ratio").is_number(), c.at("conclusive").get<bool>()) << c.dump(2);
  EXPECT_NE(r.output.find("cpu/simt: " + c.at("verdict").get<std::string>() + "\n"), std::string::npos) << r.output;
}

TEST(HeadToHeadCli, TooFewRoundsAreRefusedBeforeTimingAndTheFlagSkipsIt) {
  const std::string tiny = "--no-ops --no-rss --no-scaling --models seed-cnn --batch 4 --infer-batch 4 "
                           "--validate-batch 4 --min-time 0.01 --warmup 1";
  const parity::testing::CommandRun refused = run_cli("bench --backend cpu,simt --scaling-rounds 4 " + tiny);
  EXPECT_NE(refused.status, 0) << refused.output;
  EXPECT_NE(refused.output.find("the head-to-head of several backends takes at least 5 rounds"), std::string::npos)
      << refused.output;
  EXPECT_EQ(refused.output.find("train step"), std::string::npos) << "refused after timing?\n" << refused.output;
  const parity::testing::CommandRun skipped =
      run_cli("bench --backend cpu,simt --scaling-rounds 4 --no-head-to-head " + tiny);
  EXPECT_EQ(skipped.status, 0) << skipped.output;
  EXPECT_NE(skipped.output.find("seed-cnn train step"), std::string::npos) << skipped.output;
  EXPECT_EQ(skipped.output.find("head to head"), std::string::npos) << skipped.output;
}

TEST(ThreadScalingCli, BadOptionsAreRefusedWithTheRule) {
  const struct {
    std::string args, fragment;
  } cases[] = {
      {"--thread-scaling 0,1", "a thread count must be at least 1, got 0"},
      {"--thread-scaling 1," + std::to_string(hardware_threads() + 1),
       std::to_string(hardware_threads() + 1) + " threads asked for, but this machine lets parity use"},
      {"--thread-scaling 1", "give two thread counts"},
      {"--thread-scaling 1,1", "the first count must be below the second"},
      {"--thread-scaling 1,2 --scaling-rounds 4", "at least 5 rounds (fewer give no usable spread), got 4"},
      {"--thread-scaling 1,2 --threads 1", "--threads excludes --thread-scaling"},
      {"--thread-scaling 1,2 --against torch", "--against excludes --thread-scaling"},
  };
  for (const auto& c : cases) {
    const parity::testing::CommandRun r = run_cli("bench " + c.args);
    EXPECT_NE(r.status, 0) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.fragment), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("train step"), std::string::npos) << c.args << ": refused after timing?\n" << r.output;
  }
}

}  // namespace
