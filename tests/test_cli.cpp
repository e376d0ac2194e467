// tests/test_cli.cpp — the `parity` program as a user meets it: help and info work, and
// nonsensical options or missing data give a clear message and a non-zero exit.
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "tests/test_helpers.h"

namespace {

using CliRun = parity::testing::CommandRun;

// `env` is a list of NAME=VALUE words set for this run only.
CliRun run_cli(const std::string& args, const std::string& env = "") {
  return parity::testing::run_command((env.empty() ? "" : "env " + env + " ") + std::string(PARITY_CLI_PATH) + " " + args);
}

void expect_failure(const std::string& args, const std::string& fragment, const std::string& env = "") {
  CliRun r = run_cli(args, env);
  EXPECT_NE(r.status, 0) << args << "\n" << r.output;
  EXPECT_NE(r.status, -1) << args << ": did not exit normally (crash?)\n" << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos) << args << "\n" << r.output;
}

TEST(Cli, InfoListsBackendsAndBuild) {
  CliRun r = run_cli("info");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("cpu"), std::string::npos);
  EXPECT_NE(r.output.find("ref"), std::string::npos);
  EXPECT_NE(r.output.find("cuda"), std::string::npos);
  EXPECT_NE(r.output.find("Eigen"), std::string::npos);
}

TEST(Cli, HelpDescribesTrain) {
  CliRun r = run_cli("train --help");
  EXPECT_EQ(r.status, 0);
  for (const char* opt : {"--backend", "--model", "--epochs", "--batch", "--lr", "--optimizer", "--seed", "--threads",
                          "--limit", "--init", "--momentum", "--save", "--resume", "--metrics"})
    EXPECT_NE(r.output.find(opt), std::string::npos) << opt;
}

TEST(Cli, NonsensicalOptionsFailWithAClearMessage) {
  expect_failure("train --batch 0 --limit 64", "--batch must be >= 1, got 0");
  expect_failure("train --lr -1 --limit 64", "--lr must be a finite number > 0, got -1");
  expect_failure("train --epochs 0", "--epochs must be >= 1");
  expect_failure("train --backend nosuch --limit 64", "unknown backend 'nosuch'");
  expect_failure("train --backend cuda --limit 64", "backend 'cuda' is unavailable");
  expect_failure("train --model nosuch", "unknown model 'nosuch'");
  expect_failure("train --optimizer rmsprop", "rmsprop");
  expect_failure("train --data /nonexistent/folder", "dataset-fashion-mnist");
  expect_failure("train --threads -2 --limit 64", "--threads must be >= 0");
  // The library names TrainOptions fields; the CLI spells each as its flag, underscores as dashes.
  expect_failure("train --max-steps -1 --limit 64", "--max-steps must be >= 0, got -1");
  expect_failure("train --momentum 0.5 --limit 64", "--momentum applies to --optimizer sgd only");
  expect_failure("eval --weights /nonexistent/w.safetensors", "/nonexistent/w.safetensors");
  expect_failure("frobnicate", "frobnicate");
}

TEST(Cli, ABatchNoMachineCanHoldIsRefusedBeforeAllocatingWithBothNumbers) {
  // seed-cnn-112 needs about 8 MB a picture in a training step: 10^7 of them is some 75 TiB.
  for (const char* backend : {"cpu", "simt", "ref"}) {
    const std::string args = std::string("train --model seed-cnn-112 --batch 10000000 --backend ") + backend;
    expect_failure(args, "out of memory: --batch 10000000 is too large for this machine");
    expect_failure(args, std::string(backend) + ": the plan needs ");
    expect_failure(args, "of host memory, more than the ");
  }
}

TEST(Cli, BackendFromEnvironmentIsUsedAndCheckedToo) {
  CliRun r = run_cli("info");
  ASSERT_EQ(r.status, 0);
  CliRun bad = run_cli("train --limit 64 --backend \"$(echo nosuch)\"");
  EXPECT_NE(bad.status, 0);
  ::setenv("PARITY_BACKEND", "nosuch", 1);
  CliRun env = run_cli("train --limit 64");
  ::unsetenv("PARITY_BACKEND");
  EXPECT_NE(env.status, 0);
  EXPECT_NE(env.output.find("unknown backend 'nosuch'"), std::string::npos) << env.output;
}

const std::string kPluginPath = std::string("PARITY_BACKEND_PATH=") + PARITY_TEST_PLUGIN_DIR;

TEST(Cli, InfoSaysWhyEachBackendIsUnavailable) {
  CliRun r = run_cli("info", kPluginPath);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* fragment : {"test plugin: FILL, ADD and RESHAPE on the host", "libparity-backend-testadd.so", "ABI mismatch",
                               "does not export parity_backend_entry()", "no device: the test driver reports 0 devices",
                               "libparity_test_cudnn_stand_in.so.9", "libparity-backend-cuda.so", "plugin search path",
                               PARITY_TEST_PLUGIN_DIR})
    EXPECT_NE(r.output.find(fragment), std::string::npos) << fragment << "\n" << r.output;
}

TEST(Cli, BackendFlagAndEnvironmentSelectAPlugin) {
  // PARITY_BACKEND picks the test plugin: training reaches it, and it refuses the model's first op.
  expect_failure("train --limit 64", "backend 'testadd' cannot run node", kPluginPath + " PARITY_BACKEND=testadd");
  // --backend wins over PARITY_BACKEND.
  expect_failure("train --limit 64 --backend testadd", "backend 'testadd' cannot run node", kPluginPath + " PARITY_BACKEND=cpu");
  expect_failure("train --limit 64 --backend badabi", "ABI mismatch", kPluginPath + " PARITY_BACKEND=cpu");
  expect_failure("train --limit 64 --backend nodevice", "backend 'nodevice' is unavailable: no device", kPluginPath);
  expect_failure("train --limit 64", "unknown backend 'testadd'", "PARITY_BACKEND=testadd");
}

TEST(Cli, SummaryPrintsTheLayerTableAndWritesJsonAndDot) {
  const std::string dir = ::testing::TempDir();
  CliRun r = run_cli("summary --model seed-cnn --batch 4 --backend cpu --json " + dir + "summary.json --dot " + dir +
                     "summary.dot --train");
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* text : {"conv1", "conv2d", "[4,16,28,28]", "206,922", "FLOPs fwd", "plan arena",
                           "backend cpu: the compiled training step holds"})
    EXPECT_NE(r.output.find(text), std::string::npos) << text << "\n" << r.output;
  EXPECT_NE(parity::testing::run_command("grep -c adam/ " + dir + "summary.dot").output, "0\n");
  EXPECT_EQ(parity::testing::run_command("grep -q '\"arena_bytes\"' " + dir + "summary.json").status, 0);
  CliRun cuda = run_cli("summary --backend cuda");
  EXPECT_EQ(cuda.status, 0) << cuda.output;
  EXPECT_NE(cuda.output.find("backend cuda: unavailable"), std::string::npos) << cuda.output;
}

TEST(Cli, SummaryRefusesBadInput) {
  expect_failure("summary --model nosuch", "unknown model 'nosuch'");
  expect_failure("summary --batch 0", "--batch must be >= 1, got 0");
  expect_failure("summary --backend nosuch", "unknown backend 'nosuch'");
  expect_failure("summary --json /nonexistent/folder/s.json", "/nonexistent/folder/s.json");
  expect_failure("summary --train", "--train applies to the graph of --dot or --svg");
  // Without Graphviz on PATH --svg says so.
  expect_failure("summary --svg " + ::testing::TempDir() + "g.svg", "Graphviz, which is not installed", "PATH=/nonexistent");
}

TEST(Cli, PlotDrawsMetricsAndRefusesBadFiles) {
  const std::string dir = ::testing::TempDir();
  const std::string csv = dir + "plot-metrics.csv", json = dir + "plot-bench.json", svg = dir + "plot.svg";
  parity::testing::run_command("printf 'split,epoch,step,loss,accuracy,images_per_s\\ntrain,1,1,2.3,0.1,900\\n"
                               "test,1,1,2.0,0.3,0\\n' > " + csv);
  CliRun r = run_cli("plot " + csv + " " + csv + " --svg " + svg);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(parity::testing::run_command("grep -q '</svg>' " + svg).status, 0);
  parity::testing::run_command("printf '{\"parity_bench\": 1, \"cases\": []}' > " + json);
  expect_failure("plot " + json + " --svg " + svg, "no timed case");
  expect_failure("plot " + csv + " " + json + " --svg " + svg, "cannot mix kinds");
  expect_failure("plot /nonexistent/m.csv --svg " + svg, "/nonexistent/m.csv");
  expect_failure("plot " + csv, "--svg");
  expect_failure("plot " + csv + " --svg /nonexistent/folder/p.svg", "/nonexistent/folder/p.svg");
  parity::testing::run_command("printf 'split,epoch,step,loss,accuracy,images_per_s\\n' > " + csv);
  expect_failure("plot " + csv + " --svg " + svg, "no rows after the header");
}

}  // namespace
