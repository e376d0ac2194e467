// tests/test_sweep_grid.cpp — the grid of `parity sweep` (tools/sweep_grid.h): list parsing and
// its refusals, run order and names, ranking by validation accuracy only, table and CSV.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parity/error.h"
#include "tools/sweep_grid.h"

namespace parity::tools {
namespace {

void expect_refused(const std::function<void()>& parse, const std::string& fragment) {
  try {
    parse();
    ADD_FAILURE() << "expected a refusal naming " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(SweepGrid, ParsesListsInTheirOrder) {
  EXPECT_EQ(parse_lr_list("1e-4,3e-4,1e-3"), (std::vector<float>{1e-4f, 3e-4f, 1e-3f}));
  EXPECT_EQ(parse_lr_list(" 0.01 , 0.1"), (std::vector<float>{0.01f, 0.1f}));
  EXPECT_EQ(parse_batch_list("64,32"), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(parse_optimizer_list("sgd,adam"), (std::vector<std::string>{"sgd", "adam"}));
}

TEST(SweepGrid, RefusesBadItemsNamingTheFlagAndTheItem) {
  expect_refused([] { parse_lr_list("1e-3,abc"); }, "--lr: 'abc' is not a finite learning rate > 0");
  expect_refused([] { parse_lr_list("0"); }, "--lr: '0' is not a finite learning rate > 0");
  expect_refused([] { parse_lr_list("-1e-3"); }, "'-1e-3'");
  expect_refused([] { parse_lr_list("inf"); }, "'inf'");
  expect_refused([] { parse_lr_list("1e-3x"); }, "'1e-3x'");
  expect_refused([] { parse_lr_list("1e-3,,1e-4"); }, "--lr '1e-3,,1e-4': an empty item");
  expect_refused([] { parse_lr_list(""); }, "an empty item");
  expect_refused([] { parse_lr_list("1e-3,0.001"); }, "--lr: '1e-3' and '0.001' are the same value");
  expect_refused([] { parse_batch_list("32,0"); }, "--batch: '0' is not a batch size >= 1");
  expect_refused([] { parse_batch_list("32.5"); }, "'32.5'");
  expect_refused([] { parse_batch_list("32,32"); }, "are the same value");
  expect_refused([] { parse_optimizer_list("adam,rmsprop"); }, "--optimizer: 'rmsprop' is not an optimizer");
}

TEST(SweepGrid, GridRunsOptimizerThenLrThenBatch) {
  const auto grid = sweep_grid({"adam", "sgd"}, {1e-4f, 1e-3f}, {32, 64});
  ASSERT_EQ(grid.size(), 8u);
  EXPECT_EQ(grid[0].optimizer, "adam");
  EXPECT_EQ(grid[0].lr, 1e-4f);
  EXPECT_EQ(grid[0].batch, 32);
  EXPECT_EQ(grid[1].batch, 64);
  EXPECT_EQ(grid[2].lr, 1e-3f);
  EXPECT_EQ(grid[4].optimizer, "sgd");
  for (size_t i = 0; i < grid.size(); ++i) EXPECT_EQ(grid[i].index, static_cast<int>(i));
  EXPECT_EQ(run_name(grid[3], grid.size()), "run04-adam-lr0.001-batch64");
  EXPECT_EQ(run_name(grid[3], 120), "run004-adam-lr0.001-batch64");
}

SweepResult result(int index, double val_accuracy, double val_loss, double test_accuracy, bool failed = false) {
  SweepResult r;
  r.config = {index, "adam", 1e-3f, 32};
  r.val_accuracy = val_accuracy;
  r.val_loss = val_loss;
  r.test_accuracy = test_accuracy;
  r.failed = failed;
  if (failed) r.error = "loss became nan at step 3, try a smaller lr";
  return r;
}

std::vector<int> order(const std::vector<SweepResult>& ranked) {
  std::vector<int> indices;
  for (const SweepResult& r : ranked) indices.push_back(r.config.index);
  return indices;
}

TEST(SweepGrid, RanksByValidationAccuracyNeverByTestAccuracy) {
  // Run 0 has the best test accuracy but the worst validation accuracy: it ranks last of the finished.
  const auto ranked = rank_by_validation({result(0, 0.50, 1.0, 0.99), result(1, 0.80, 0.6, 0.10),
                                          result(2, 0.0, 0.0, 0.0, true), result(3, 0.80, 0.5, 0.20),
                                          result(4, 0.70, 0.7, 0.30), result(5, 0.80, 0.5, 0.90)});
  // 3 and 5 tie on validation accuracy and loss: grid order. 1 ties on accuracy, loses on loss.
  EXPECT_EQ(order(ranked), (std::vector<int>{3, 5, 1, 4, 0, 2}));
}

TEST(SweepGrid, TableAndCsvShowEveryRunRanked) {
  std::vector<SweepResult> ranked = rank_by_validation({result(0, 0.5, 1.0, 0.4), result(1, 0.8, 0.6, 0.7),
                                                        result(2, 0, 0, 0, true)});
  ranked[0].seconds = 12.34;
  const std::string table = sweep_table(ranked);
  EXPECT_NE(table.find("rank  run  optimizer     lr  batch  val loss  val acc  test acc    time"), std::string::npos)
      << table;
  EXPECT_NE(table.find("   1    2  adam       0.001     32    0.6000   80.00%    70.00%  12.3 s"), std::string::npos)
      << table;
  EXPECT_NE(table.find("failed: loss became nan at step 3"), std::string::npos) << table;

  const std::string csv = sweep_csv(ranked, SweepSettings{"seed-cnn", 2, 0.1, 7, 640});
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "rank,run,model,optimizer,lr,batch,epochs,val_split,seed,limit,status,val_loss,val_accuracy,test_loss,"
            "test_accuracy,train_loss,train_accuracy,steps,seconds,metrics_file,error");
  EXPECT_NE(csv.find("\n1,2,seed-cnn,adam,0.001,32,2,0.1,7,640,ok,0.6,0.8,0,0.7,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n3,3,seed-cnn,adam,0.001,32,2,0.1,7,640,failed,,,,,,,,0.000,,\"loss became nan at step 3, try a "
                     "smaller lr\"\n"),
            std::string::npos)
      << csv;
}

}  // namespace
}  // namespace parity::tools
