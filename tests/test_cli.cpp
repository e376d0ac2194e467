// tests/test_cli.cpp — the `parity` program as a user meets it: help and info work, and
// nonsensical options or missing data give a clear message and a non-zero exit.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/cpu/gemm_bf16.h"
#include "tests/idx_dataset_writer.h"
#include "tests/test_helpers.h"

namespace {

using CliRun = parity::testing::CommandRun;

// `env` is a list of NAME=VALUE words set for this run only.
CliRun run_cli(const std::string& args, const std::string& env = "") {
  return parity::testing::run_command((env.empty() ? "" : "env " + env + " ") + std::string(PARITY_CLI_PATH) + " " + args);
}

// Where the test plugins are (testadd: f32 values only, a few ops).
const std::string kPluginPath = std::string("PARITY_BACKEND_PATH=") + PARITY_TEST_PLUGIN_DIR;

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
  // The cpu bf16 GEMM route, as this process (same CPU, same environment) would choose it.
  EXPECT_NE(r.output.find("cpu bf16 GEMM: " + parity::cpu::bf16_gemm_route_description() + "\n"), std::string::npos)
      << r.output;
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

// --precision: the policy line names the precision and the backend; a precision outside the list,
// and a backend that cannot store half values, are refused before training (non-zero exit).
TEST(Cli, TrainPrecisionPrintsThePolicyAndRefusesWhatCannotRun) {
  CliRun r = run_cli("train --precision bf16 --backend cpu --limit 64 --max-steps 1");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("precision bf16 on backend cpu: conv2d and linear on bf16 copies"), std::string::npos)
      << r.output;
  expect_failure("train --precision fp8 --limit 64", "fp8");
  // (simt and gpu_emu run half values now; the test plugin stores f32 only.)
  expect_failure("train --precision fp16 --backend testadd --limit 64",
                 "--precision fp16 cannot run on backend 'testadd'", kPluginPath);
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

// `parity info --backend onednn`: one line per op, saying what runs it and, for cpu's kernels, why.
TEST(Cli, InfoBackendListsWhatRunsEachOpOfOnednn) {
  CliRun r = run_cli("info --backend onednn");
  if (r.output.find("no backend named 'onednn'") != std::string::npos) GTEST_SKIP() << "onednn is not built in";
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("  CONV2D              oneDNN convolution"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("  MAXPOOL2D           cpu kernel: the op's idx output"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("  CLIP_COEF           cpu kernel: "), std::string::npos) << r.output;
  CliRun cpu = run_cli("info --backend cpu");
  EXPECT_EQ(cpu.status, 0) << cpu.output;
  EXPECT_NE(cpu.output.find("cpu runs every op it supports on its own kernels"), std::string::npos) << cpu.output;
  expect_failure("info --backend nosuch", "no backend named 'nosuch'");
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

TEST(Cli, NanTestLossFailsTheRun) {
  // Adam's first step at this rate leaves a finite training loss but weights whose test loss is NaN.
  expect_failure("train --backend cpu --lr 1e30 --limit 64", "test loss became nan after epoch 1");
  expect_failure("train --backend cpu --lr 1e30 --limit 64", "try a smaller --lr");
}

TEST(Cli, ThreadsAboveTheHardwareAreRefusedByEveryCommand) {
  const int hardware = parity::hardware_threads();
  const std::string asked = std::to_string(hardware + 1);
  const std::string message =
      asked + " threads asked for, but this machine lets parity use " + std::to_string(hardware) + " hardware threads";
  std::vector<std::string> commands = {"train --limit 64", "eval --weights w.safetensors", "check ops --op relu",
                                       "check model", "check determinism", "check onnx"};
  if (run_cli("bench --help").status == 0) commands.push_back("bench --backend cpu");  // PARITY_BUILD_BENCH
  for (const std::string& command : commands) expect_failure(command + " --threads " + asked, message);
  // At the limit it is accepted (the error is then about the missing weights file, not --threads).
  CliRun at_limit = run_cli("eval --weights /nonexistent/w.safetensors --threads " + std::to_string(hardware));
  EXPECT_EQ(at_limit.output.find("threads asked for"), std::string::npos) << at_limit.output;
  EXPECT_NE(at_limit.output.find("/nonexistent/w.safetensors"), std::string::npos) << at_limit.output;
}

TEST(Cli, ValSplitIsReportedAndBadValuesAreRefused) {
  expect_failure("train --val-split 1 --limit 64", "--val-split must be in [0, 1)");
  expect_failure("train --val-split -0.2 --limit 64", "--val-split must be in [0, 1)");
  expect_failure("train --val-split abc --limit 64", "--val-split");
  expect_failure("train --val-split 0.001 --limit 64", "--val-split: validation fraction 0.001 of 64 samples holds out 0");
  CliRun r = run_cli("train --backend cpu --val-split 0.25 --limit 256");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("192 training, 64 validation and 10000 test images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" | val loss "), std::string::npos) << r.output;
}

TEST(Cli, DataOfAnyIdxGeometryMustMatchTheModel) {
  const std::string dir = ::testing::TempDir() + "parity-cli-idx-" + std::to_string(::getpid());
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  parity::testing::IdxDatasetShape shape;
  shape.rows = shape.cols = 32;
  shape.classes = 100;
  shape.train = 100;
  shape.test = 100;
  parity::testing::write_idx_dataset(dir, shape);
  expect_failure("train --backend cpu --data " + dir,
                 "images are 1x32x32 with 100 classes; model seed-cnn expects 1x28x28 and 10 classes");
  shape.rows = shape.cols = 28;
  shape.classes = 10;
  shape.gzip = true;
  std::system(("rm -f '" + dir + "'/*").c_str());
  parity::testing::write_idx_dataset(dir, shape);
  CliRun r = run_cli("train --backend cpu --batch 50 --data " + dir + " --save " + dir + "/w.safetensors");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("100 training and 100 test images"), std::string::npos) << r.output;
  CliRun eval = run_cli("eval --backend cpu --data " + dir + " --weights " + dir + "/w.safetensors");
  EXPECT_EQ(eval.status, 0) << eval.output;
  EXPECT_NE(eval.output.find("(100 images)"), std::string::npos) << eval.output;
  std::system(("rm -rf '" + dir + "'").c_str());
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "parity-cli-" + name + "-" + std::to_string(::getpid());
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  return dir;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(Cli, LimitAndMaxStepsBeyondTheDataTrainOnAllOfIt) {
  const std::string dir = fresh_dir("beyond");
  parity::testing::IdxDatasetShape shape;  // 64 training images: 4 steps of 16 per epoch
  parity::testing::write_idx_dataset(dir, shape);
  CliRun r = run_cli("train --backend cpu --data " + dir + " --batch 16 --epochs 2 --limit 1000000 --max-steps 1000000");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("64 training and 32 test images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("epoch 2/2"), std::string::npos) << r.output;
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Cli, SweepRanksTheGridByValidationAccuracyAndWritesEveryRun) {
  const std::string dir = fresh_dir("sweep");
  parity::testing::IdxDatasetShape shape;
  shape.train = 160;
  shape.test = 60;
  parity::testing::write_idx_dataset(dir, shape);
  CliRun r = run_cli("sweep --backend cpu --data " + dir + " --lr 1e-3,3e-3 --batch 16,32 --optimizer adam,sgd --val-split 0.2"
                     " --seed 5 --out " + dir + "/out");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("sweep: 8 runs of seed-cnn"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank  run  optimizer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ranked by validation accuracy"), std::string::npos) << r.output;
  const std::string csv = read_text(dir + "/out/sweep.csv");
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line.rfind("rank,run,model,optimizer,lr,batch,", 0), 0u) << line;
  double previous = 2;
  int rows = 0;
  while (std::getline(lines, line)) {
    ++rows;
    std::vector<std::string> fields;
    std::istringstream cells(line);
    for (std::string cell; std::getline(cells, cell, ',');) fields.push_back(cell);
    ASSERT_GE(fields.size(), 20u) << line;
    EXPECT_EQ(fields[0], std::to_string(rows));
    EXPECT_EQ(fields[10], "ok") << line;
    const double val_accuracy = std::stod(fields[12]);
    EXPECT_LE(val_accuracy, previous) << "not sorted by validation accuracy:\n" << csv;
    previous = val_accuracy;
    EXPECT_FALSE(read_text(fields[19]).empty()) << "each run's metrics: " << fields[19];
  }
  EXPECT_EQ(rows, 8);
  EXPECT_NE(read_text(dir + "/out/run01-adam-lr0.001-batch16.csv").find("val_loss,val_accuracy"), std::string::npos);
  // The overlay plot: every run's curves, labelled with its configuration.
  const std::string overlay = read_text(dir + "/out/sweep.svg");
  EXPECT_NE(overlay.find("<svg"), std::string::npos) << overlay.substr(0, 200);
  for (const char* label : {"adam lr 0.001 batch 16", "sgd lr 0.003 batch 32", "validation loss and accuracy"})
    EXPECT_NE(overlay.find(label), std::string::npos) << label;
  // `parity plot` reads a metrics file with validation columns too.
  CliRun plot = run_cli("plot " + dir + "/out/run01-adam-lr0.001-batch16.csv --svg " + dir + "/one.svg");
  EXPECT_EQ(plot.status, 0) << plot.output;
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Cli, SweepRefusesBadGridsBeforeTraining) {
  expect_failure("sweep --lr 1e-3,abc --batch 32", "--lr: 'abc' is not a finite learning rate > 0");
  expect_failure("sweep --lr 1e-3 --batch 0", "--batch: '0' is not a batch size >= 1");
  expect_failure("sweep --lr 1e-3 --batch 32 --optimizer adam,rmsprop", "'rmsprop' is not an optimizer");
  expect_failure("sweep --lr 1e-3 --batch 32 --val-split 0", "--val-split must be in (0, 1) for a sweep");
  expect_failure("sweep --lr 1e-3 --batch 32 --val-split 1", "--val-split must be in (0, 1)");
  expect_failure("sweep --batch 32", "--lr is required");
  expect_failure("sweep --lr 1e-3 --batch 32 --model nosuch", "unknown model 'nosuch'");
}

TEST(Cli, SweepStopsOnCtrlCKeepingTheFinishedRuns) {
  const std::string dir = fresh_dir("sweep-int");
  // Twelve runs of about half a second each; SIGINT once the first has finished (sweep.csv exists).
  const std::string script = std::string(PARITY_CLI_PATH) +
                             " sweep --backend cpu --lr 1e-4,3e-4,1e-3 --batch 32,64 --optimizer adam,sgd --limit 1280"
                             " --out " + dir + " & pid=$!; while [ ! -f " + dir +
                             "/sweep.csv ]; do sleep 0.02; done; kill -INT $pid; wait $pid; echo \"exit=$?\"";
  CliRun r = parity::testing::run_command("sh -c '" + script + "'");
  EXPECT_NE(r.output.find("exit=130"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("interrupted: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank  run  optimizer"), std::string::npos) << r.output;
  const std::string csv = read_text(dir + "/sweep.csv");
  EXPECT_NE(csv.find("\n1,1,seed-cnn,adam,0.0001,32,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("\n12,"), std::string::npos) << "all twelve finished before the signal?\n" << csv;
  std::system(("rm -rf '" + dir + "'").c_str());
}


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
  // Another input geometry: the parameters follow (conv1 3*16*9 + 16, fc1 32*8*8*128 + 128).
  CliRun at32 = run_cli("summary --model seed-cnn --input 3x32x32 --batch 2 --backend ref");
  EXPECT_EQ(at32.status, 0) << at32.output;
  for (const char* text : {"model seed-cnn at 3x32x32: batch 2, input [2,3,32,32]", "[2,16,32,32]", "448", "262,272"})
    EXPECT_NE(at32.output.find(text), std::string::npos) << text << "\n" << at32.output;
  CliRun cuda = run_cli("summary --backend cuda");
  EXPECT_EQ(cuda.status, 0) << cuda.output;
  EXPECT_NE(cuda.output.find("backend cuda: unavailable"), std::string::npos) << cuda.output;
  // A built plugin plans the step without its device (ABI 4); an unbuilt one has nothing to ask.
  if (cuda.output.find("not built") == std::string::npos && cuda.output.find("file not found") == std::string::npos) {
    EXPECT_NE(cuda.output.find("planned without a device, the compiled training step would hold at most"),
              std::string::npos)
        << cuda.output;
  }
}

TEST(Cli, SummaryRefusesBadInput) {
  expect_failure("summary --model nosuch", "unknown model 'nosuch'");
  expect_failure("summary --batch 0", "--batch must be >= 1, got 0");
  expect_failure("summary --backend nosuch", "unknown backend 'nosuch'");
  expect_failure("summary --json /nonexistent/folder/s.json", "/nonexistent/folder/s.json");
  expect_failure("summary --train", "--train applies to the graph of --dot or --svg");
  for (const char* input : {"3x32", "0x28x28", "axbxc", "3x32x32x1", "1x9999999x1"})
    expect_failure(std::string("summary --input ") + input,
                   std::string("--input '") + input + "' must be CxHxW: channels, height and width");
  expect_failure("summary --input 1x2x2", "maxpool2d 'pool2': kernel 2x2 is larger than the input");
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

// `parity prune` end to end on a small IDX folder: the report, the file (weights and u8 masks),
// fine-tuning with the mask held (sgd with momentum and decay) keeping the zeros, and `parity
// export` of the result keeping them; then each refusal with its message.
TEST(Cli, PruneReportsWritesMasksAndFineTuningAndExportKeepTheZeros) {
  const std::string dir = fresh_dir("prune");
  parity::testing::IdxDatasetShape shape;
  parity::testing::write_idx_dataset(dir, shape);
  const std::string data = " --backend cpu --data " + dir, dense = dir + "/dense.safetensors",
                    pruned = dir + "/pruned.safetensors", tuned = dir + "/tuned.safetensors";
  CliRun train = run_cli("train" + data + " --batch 16 --save " + dense);
  ASSERT_EQ(train.status, 0) << train.output;
  CliRun prune = run_cli("prune" + data + " --weights " + dense + " --sparsity 0.5 --save " + pruned);
  ASSERT_EQ(prune.status, 0) << prune.output;
  for (const char* line : {"sparsity 0.5 global, elements by |w|", "conv1.weight", "fc2.weight", "overall",
                           "103368/206736", "50.00%", "4 masks", "test accuracy: before pruning "})
    EXPECT_NE(prune.output.find(line), std::string::npos) << line << "\n" << prune.output;
  const parity::TensorFile file = parity::read_safetensors(pruned);
  ASSERT_EQ(file.tensors.count("fc1.weight.mask"), 1u);
  EXPECT_EQ(file.tensors.at("fc1.weight.mask").dtype(), parity::DType::u8);
  EXPECT_EQ(file.tensors.count("fc1.bias.mask"), 0u);

  CliRun tune = run_cli("train" + data + " --batch 16 --optimizer sgd --momentum 0.9 --weight-decay 0.01 --init " +
                        pruned + " --mask " + pruned + " --save " + tuned);
  ASSERT_EQ(tune.status, 0) << tune.output;
  EXPECT_NE(tune.output.find("pruning held: 4 masks from " + pruned + ", 103368 of their 206736 elements (50.0%)"),
            std::string::npos)
      << tune.output;
  std::vector<std::string> checked = {tuned};
  if (run_cli("export --help").status == 0) {  // PARITY_WITH_ONNX
    CliRun exported = run_cli("export --weights " + tuned + " --onnx " + dir + "/t.onnx --save-weights " + dir + "/e.safetensors");
    ASSERT_EQ(exported.status, 0) << exported.output;
    checked.push_back(dir + "/e.safetensors");
  }
  for (const std::string& path : checked) {
    const parity::TensorFile after = parity::read_safetensors(path);
    for (const char* weight : {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}) {
      const parity::Tensor& mask = file.tensors.at(std::string(weight) + ".mask");
      const parity::Tensor& w = after.tensors.at(weight);
      int64_t pruned_nonzero = 0, kept_changed = 0;
      for (int64_t i = 0; i < w.numel(); ++i) {
        if (mask.u8()[i] == 0) pruned_nonzero += w.f32()[i] != 0.0f;
        else kept_changed += w.f32()[i] != file.tensors.at(weight).f32()[i];
      }
      EXPECT_EQ(pruned_nonzero, 0) << path << " " << weight;
      EXPECT_GT(kept_changed, 0) << path << " " << weight;
    }
  }

  expect_failure("prune --weights " + dense + " --sparsity 1 --save " + pruned, "--sparsity must be in [0, 1)");
  expect_failure("prune --weights " + dense + " --sparsity -0.5 --save " + pruned, "--sparsity must be in [0, 1)");
  expect_failure("prune --weights " + dense + " --structured rows --save " + pruned, "--structured must be channels");
  expect_failure("prune --weights " + dense + " --scope model --save " + pruned, "--scope must be global or layer");
  expect_failure("train" + data + " --batch 16 --mask " + dense, dense + ": no '<weight>.mask' tensor: not a mask file");
  parity::TensorFile bad;
  bad.tensors.emplace("fc2.weight.mask", parity::Tensor(parity::Shape{10, 64}, parity::DType::u8));
  parity::write_safetensors(dir + "/shape.safetensors", bad);
  expect_failure("train" + data + " --batch 16 --mask " + dir + "/shape.safetensors",
                 "mask 'fc2.weight.mask' has shape [10,64], but weight 'fc2.weight' of model seed-cnn has shape [10,128]");
  bad.tensors.clear();
  bad.tensors.emplace("fc2.bias.mask", parity::Tensor(parity::Shape{10}, parity::DType::u8));
  parity::write_safetensors(dir + "/bias.safetensors", bad);
  expect_failure("train" + data + " --batch 16 --mask " + dir + "/bias.safetensors",
                 "mask 'fc2.bias.mask' names 'fc2.bias', which is not a conv or linear weight of model seed-cnn");
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
