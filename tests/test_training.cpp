// tests/test_training.cpp — the training loop end to end on Fashion-MNIST: learning, resume
// that reproduces an uninterrupted run, a NaN loss that stops with the step, metrics and
// checkpoint files, and weights files with a missing tensor or a wrong shape.
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

#include "tests/idx_dataset_writer.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

namespace fs = std::filesystem;

// The suite needs the Debian package dataset-fashion-mnist (the README's commands install it).
bool have_dataset() { return fs::exists(default_data_folder() + "/train-images-idx3-ubyte.gz"); }

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("parity-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(Training, ThreeHundredStepsLearnFashionMnist) {
  ASSERT_TRUE(have_dataset()) << "install the Debian package dataset-fashion-mnist";
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 19200;  // 300 steps of 64
  o.seed = 1;
  std::vector<double> losses;
  TrainCallbacks cb;
  double last_running = 0;
  cb.on_step = [&](const TrainProgress& p) { last_running = p.running_loss; losses.push_back(p.running_loss); };
  TrainSummary s = run_training(o, cb);
  ASSERT_EQ(s.steps, 300);
  ASSERT_EQ(s.epochs.size(), 1u);
  // The running mean after 20 steps against the last: the loss must have fallen well below
  // its starting value near ln(10) = 2.30.
  EXPECT_LT(s.epochs[0].train_loss, 0.8 * losses[19]);
  EXPECT_LT(s.epochs[0].test.loss, 1.0);
  // PyTorch reaches about 80% with the same setup.
  EXPECT_GE(s.epochs[0].test.accuracy, 0.75);
  EXPECT_EQ(s.epochs[0].test.images, 10000);
}

std::map<std::string, Tensor> final_weights(const std::string& path) { return read_safetensors(path).tensors; }

TEST(Training, ResumedRunEndsWithTheSameWeightsAsAnUninterruptedOne) {
  ASSERT_TRUE(have_dataset());
  fs::path dir = temp_dir("resume");
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 600;  // 10 steps per epoch, the last one partial (24 images)
  o.batch = 64;
  o.epochs = 2;
  o.seed = 9;
  o.save = (dir / "whole.safetensors").string();
  run_training(o);

  TrainOptions part = o;
  part.save = (dir / "part.safetensors").string();
  part.max_steps = 13;  // stop in the middle of the second epoch
  TrainSummary first = run_training(part);
  EXPECT_TRUE(first.stopped_early);
  EXPECT_EQ(first.steps, 13);
  TrainOptions rest = o;
  rest.resume = part.save;
  rest.save = (dir / "resumed.safetensors").string();
  TrainSummary second = run_training(rest);
  EXPECT_EQ(second.steps, 20);

  auto whole = final_weights(o.save), resumed = final_weights(rest.save);
  ASSERT_EQ(whole.size(), resumed.size());
  for (const auto& [name, t] : whole) EXPECT_TRUE(bitwise_equal(t, resumed.at(name))) << name;
  EXPECT_EQ(whole.at("optimizer.step").i64()[0], 20);

  TrainOptions other = rest;
  other.seed = 10;
  try {
    run_training(other);
    ADD_FAILURE() << "resuming with another seed must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Training, NanLossStopsAndNamesTheStep) {
  ASSERT_TRUE(have_dataset());
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 6400;
  o.optimizer = OptimizerConfig::Kind::sgd;
  o.lr = 1e30f;  // the first update makes the weights overflow
  try {
    run_training(o);
    ADD_FAILURE() << "expected the run to stop on a non-finite loss";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::numeric);
    EXPECT_NE(std::string(e.what()).find("at step"), std::string::npos) << e.what();
  }
}

TEST(Training, NanTestLossFailsTheRunAndKeepsTheCheckpoint) {
  ASSERT_TRUE(have_dataset());
  fs::path dir = temp_dir("nan-test");
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 64;  // one Adam step: its loss is finite, the weights after it are not
  o.lr = 1e30f;
  o.save = (dir / "w.safetensors").string();
  int epochs_reported = 0;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochReport& r) {
    ++epochs_reported;
    EXPECT_FALSE(std::isfinite(r.test.loss));
  };
  try {
    run_training(o, cb);
    ADD_FAILURE() << "expected the run to fail on a non-finite test loss";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::numeric);
    EXPECT_NE(std::string(e.what()).find("test loss became nan after epoch 1 (step 1)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(epochs_reported, 1);
  EXPECT_FALSE(fs::exists(o.save)) << "NaN weights must not be saved as a checkpoint";
  fs::remove_all(dir);
}

TEST(Training, WritesMetricsCsvAndRejectsBadWeightsFiles) {
  ASSERT_TRUE(have_dataset());
  fs::path dir = temp_dir("metrics");
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 128;
  o.metrics = (dir / "m.csv").string();
  o.save = (dir / "w.safetensors").string();
  run_training(o);
  std::ifstream in(o.metrics);
  std::string header, line;
  std::getline(in, header);
  EXPECT_EQ(header, "split,epoch,step,loss,accuracy,images_per_s");
  int train_rows = 0, test_rows = 0;
  while (std::getline(in, line)) (line.rfind("train,", 0) == 0 ? train_rows : test_rows)++;
  EXPECT_EQ(train_rows, 2);
  EXPECT_EQ(test_rows, 1);

  TensorFile file = read_safetensors(o.save);
  file.tensors.erase("fc1.bias");
  write_safetensors((dir / "missing.safetensors").string(), file);
  TrainOptions init = o;
  init.save.clear();
  init.metrics.clear();
  init.init = (dir / "missing.safetensors").string();
  try {
    run_training(init);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'fc1.bias'"), std::string::npos) << e.what();
  }
  file = read_safetensors(o.save);
  file.tensors["conv2.weight"] = Tensor(Shape{32, 16, 5, 5}, DType::f32);
  write_safetensors((dir / "shape.safetensors").string(), file);
  init.init = (dir / "shape.safetensors").string();
  try {
    run_training(init);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'conv2.weight' is f32 [32,16,5,5], the model needs f32 [32,16,3,3]"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(Training, ValSplitHoldsOutASeededPartAndReportsItEachEpoch) {
  ASSERT_TRUE(have_dataset());
  fs::path dir = temp_dir("val-split");
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 640;
  o.epochs = 2;
  o.val_split = 0.25;  // 160 held out, 480 trained on: 8 steps of 64 per epoch
  o.seed = 3;
  o.metrics = (dir / "m.csv").string();
  TrainSummary s = run_training(o);
  EXPECT_EQ(s.steps, 16);
  ASSERT_EQ(s.epochs.size(), 2u);
  for (const EpochReport& r : s.epochs) {
    ASSERT_TRUE(r.validation.has_value());
    EXPECT_EQ(r.validation->images, 160);
    EXPECT_GT(r.validation->accuracy, 0.0);
    EXPECT_EQ(r.test.images, 10000);
  }
  std::ifstream in(o.metrics);
  std::string header, line;
  std::getline(in, header);
  EXPECT_EQ(header, "split,epoch,step,loss,accuracy,images_per_s,val_loss,val_accuracy");
  int test_rows = 0;
  while (std::getline(in, line)) {
    if (line.rfind("train,", 0) == 0) {
      EXPECT_EQ(line.substr(line.size() - 2), ",,") << line;
    } else {
      ++test_rows;
      EXPECT_NE(line.find(fmt::format(",{:.6g},{:.6g}", s.epochs[test_rows - 1].validation->loss,
                                      s.epochs[test_rows - 1].validation->accuracy)),
                std::string::npos)
          << line;
    }
  }
  EXPECT_EQ(test_rows, 2);
  // Off by default: no validation, the CSV as before.
  TrainOptions off = o;
  off.val_split = 0;
  off.epochs = 1;
  TrainSummary plain = run_training(off);
  EXPECT_FALSE(plain.epochs[0].validation.has_value());
  EXPECT_EQ(plain.steps, 10);
  fs::remove_all(dir);
}

TEST(Training, DataOfAnotherGeometryOrClassCountNamesBoth) {
  fs::path dir = temp_dir("idx-geometry");
  IdxDatasetShape shape;
  shape.rows = shape.cols = 32;
  shape.classes = 100;
  shape.train = 200;
  shape.test = 100;
  write_idx_dataset(dir.string(), shape);
  TrainOptions o;
  o.backend = "cpu";
  o.data = dir.string();
  try {
    run_training(o);
    ADD_FAILURE() << "32x32 images in 100 classes do not fit seed-cnn";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape);
    EXPECT_NE(std::string(e.what()).find("images are 1x32x32 with 100 classes; model seed-cnn expects 1x28x28 and 10 classes"),
              std::string::npos)
        << e.what();
  }
  o.model = "seed-cnn-112";
  try {
    run_training(o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model seed-cnn-112 expects 1x28x28 (shown to it as 3x112x112) and 10 classes"),
              std::string::npos)
        << e.what();
  }
  // Right size, too few classes.
  shape.rows = shape.cols = 28;
  shape.classes = 3;
  write_idx_dataset(dir.string(), shape);
  o.model = "seed-cnn";
  try {
    run_training(o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("images are 1x28x28 with 3 classes; model seed-cnn expects 1x28x28 and 10 classes"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(Training, TrainsOnAnyMatchingIdxFolderGzippedOrNot) {
  for (bool gzip : {false, true}) {
    fs::path dir = temp_dir(gzip ? "idx-gz" : "idx-plain");
    IdxDatasetShape shape;
    shape.train = 96;
    shape.test = 40;
    shape.gzip = gzip;
    write_idx_dataset(dir.string(), shape);
    TrainOptions o;
    o.backend = "cpu";
    o.data = dir.string();
    o.batch = 32;
    o.val_split = 0.25;
    TrainSummary s = run_training(o);
    EXPECT_EQ(s.steps, 3);  // 72 images trained on
    EXPECT_EQ(s.epochs[0].validation->images, 24);
    EXPECT_EQ(s.epochs[0].test.images, 40);
    o.save = (dir / "w.safetensors").string();
    run_training(o);
    EXPECT_EQ(run_evaluation("seed-cnn", "cpu", 0, o.save, o.data, 8).images, 40);
    fs::remove_all(dir);
  }
}

// The library names the TrainOptions field it rejects, not a flag of the CLI (which spells it as
// its flag: test_cli.cpp).
TEST(Training, BadOptionsNameTheTrainOptionsField) {
  auto expect_rejected = [](const std::function<void(TrainOptions&)>& set, const std::string& fragment) {
    TrainOptions o;
    set(o);
    try {
      run_training(o);
      ADD_FAILURE() << "expected an error naming " << fragment;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("--"), std::string::npos) << e.what();
    }
  };
  expect_rejected([](TrainOptions& o) { o.batch = 0; }, "TrainOptions::batch must be >= 1, got 0");
  expect_rejected([](TrainOptions& o) { o.max_steps = -1; }, "TrainOptions::max_steps must be >= 0, got -1");
  expect_rejected([](TrainOptions& o) { o.momentum = 0.5f; }, "TrainOptions::momentum applies to TrainOptions::optimizer");
  expect_rejected([](TrainOptions& o) { o.val_split = 1.0; }, "TrainOptions::val_split must be in [0, 1)");
  expect_rejected([](TrainOptions& o) { o.val_split = -0.5; }, "TrainOptions::val_split must be in [0, 1)");
}

}  // namespace
}  // namespace parity::testing
