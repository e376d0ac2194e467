// tests/test_data_parallel.cpp — data-parallel training steps on 2 ranks, run under mpirun by
// CTest (every rank runs every test, so each collective is joined by both): one step of 2 ranks x
// 64 images against one process x 128 (gradients and weights), bucketed against one all-reduce
// after the whole backward (bitwise), the event log of a bucket starting before the backward
// ends, repeatability, and the NCCL bootstrap over MPI (rank 0's unique id to every rank).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "dist/device_collectives.h"
#include "graph/compiled_step.h"
#include "parity/backend.h"
#include "parity/graph.h"
#include "parity/model.h"
#include "tests/data_parallel_step.h"
#include "tests/test_helpers.h"

namespace parity {
namespace {

constexpr int64_t kGlobalBatch = 128;

double nmse(const Tensor& got, const Tensor& want) {
  double err = 0, ref = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = double(got.f32()[i]) - double(want.f32()[i]);
    err += d * d;
    ref += double(want.f32()[i]) * double(want.f32()[i]);
  }
  return ref > 0 ? err / ref : err;
}

// Rows [first, first + n) of a batch tensor.
Tensor rows(const Tensor& t, int64_t first, int64_t n) {
  std::vector<int64_t> dims(t.shape().dims().begin(), t.shape().dims().end());
  const int64_t row = t.numel() / dims[0];
  dims[0] = n;
  Tensor out(Shape(dims), t.dtype());
  const size_t element = t.nbytes() / static_cast<size_t>(t.numel());
  std::memcpy(out.data(), static_cast<const char*>(t.data()) + static_cast<size_t>(first * row) * element,
              static_cast<size_t>(n * row) * element);
  return out;
}

using testing::gradient_names;
using testing::gradient_values;
using testing::StepResult;

// One Adam step on cpu with one thread (each rank has a core of its own).
StepResult one_step(const ModelSpec& spec, const Tensor& x, const Tensor& y, CommunicatorDataParallel* dp) {
  BackendOptions one_thread;
  one_thread.threads = 1;
  std::unique_ptr<Backend> cpu = create_backend("cpu", one_thread);
  return testing::one_adam_step(*cpu, spec, x, y, dp, kGlobalBatch);
}

std::unique_ptr<CommunicatorDataParallel> data_parallel(int64_t bucket_bytes, bool log = false) {
  DataParallelOptions o;
  o.bucket_bytes = bucket_bytes;
  o.log_events = log;
  return std::make_unique<CommunicatorDataParallel>(make_communicator("mpi"), o);
}

TEST(DataParallel, TwoRanksOfHalfTheBatchMatchOneProcessOfTheWholeBatch) {
  const ModelSpec& spec = model_spec("seed-cnn");
  auto dp = data_parallel(int64_t{1} << 20);
  ASSERT_EQ(dp->size(), 2);
  const auto [x, y] = testing::random_batch(spec, kGlobalBatch, 11);
  const int64_t half = kGlobalBatch / 2;
  const StepResult mine = one_step(spec, rows(x, dp->rank() * half, half), rows(y, dp->rank() * half, half), dp.get());
  const StepResult whole = one_step(spec, x, y, nullptr);
  for (const ParamSpec& p : spec.params) {
    // The all-reduce sums two float32 halves of the mean where one process sums 128 rows in
    // another order: a float32 reduction's rounding, NMSE ~1e-14.
    const double g = nmse(mine.gradients.at(p.name), whole.gradients.at(p.name));
    EXPECT_LE(g, 1e-12) << p.name;
    // ADAM_STEP's step threshold (ops/optimizer.cpp): a gradient within rounding of zero may
    // flip the sign of Adam's first update.
    const double w = nmse(mine.params.at(p.name), whole.params.at(p.name));
    EXPECT_LE(w, 1e-7) << p.name;
    if (dp->rank() == 0) std::cout << p.name << ": gradient NMSE " << g << ", weights after the step NMSE " << w << "\n";
  }
}

TEST(DataParallel, BucketsGiveTheSameBitsAsOneAllReduceAfterTheBackwardAndStartBeforeItEnds) {
  // seed-cnn-112's 12.9 MB of gradients in 1 MiB buckets: fc2 and fc1's weight close the first,
  // the rest (fc1's bias, the convolutions) the second, whose convolutions the backward makes last.
  const ModelSpec& spec = model_spec("seed-cnn-112");
  const auto [x, y] = testing::random_batch(spec, 4, 5);
  auto bucketed = data_parallel(int64_t{1} << 20, /*log=*/true);
  const StepResult a = one_step(spec, rows(x, 2 * bucketed->rank(), 2), rows(y, 2 * bucketed->rank(), 2), bucketed.get());
  auto fallback = data_parallel(0);
  const StepResult b = one_step(spec, rows(x, 2 * fallback->rank(), 2), rows(y, 2 * fallback->rank(), 2), fallback.get());
  ASSERT_EQ(bucketed->buckets(2).size(), 2u);
  ASSERT_EQ(fallback->buckets(2).size(), 1u);
  for (const ParamSpec& p : spec.params) {
    // With 2 ranks each element is one float addition whichever bucket carries it.
    EXPECT_TRUE(testing::bitwise_equal(a.gradients.at(p.name), b.gradients.at(p.name))) << p.name;
    EXPECT_TRUE(testing::bitwise_equal(a.params.at(p.name), b.params.at(p.name))) << p.name;
  }
  // The log: bucket 0 starts before the backward ends; both are waited for after it (the
  // optimizer updates the convolutions first, so bucket 1 is waited for first).
  const std::vector<AllReduceEvent>& log = bucketed->events();
  std::string order;
  for (const AllReduceEvent& e : log)
    order += e.kind == AllReduceEvent::Kind::start  ? "start" + std::to_string(e.bucket) + " "
             : e.kind == AllReduceEvent::Kind::wait ? "wait" + std::to_string(e.bucket) + " "
             : e.kind == AllReduceEvent::Kind::backward_done ? std::string("backward_done ")
                                                             : std::string("other ");
  if (bucketed->rank() == 0) std::cout << "event log: " << order << "\n";
  EXPECT_EQ(order, "start0 start1 backward_done wait1 wait0 ") << order;
  ASSERT_GE(log.size(), 3u);
  EXPECT_LT(log[0].seconds, log[2].seconds);
  // The first bucket starts after its last gradient (fc1's weight), before the convolutions' backward.
  const std::vector<GradientBucket> buckets = bucketed->buckets(2);  // a copy: buckets() returns by value
  EXPECT_LT(buckets[0].ready_after, buckets[1].ready_after);
}

TEST(DataParallel, TheSameStepTwiceGivesTheSameBits) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const auto [x, y] = testing::random_batch(spec, kGlobalBatch, 3);
  auto dp = data_parallel(int64_t{256} << 10);
  const int64_t half = kGlobalBatch / 2;
  const Tensor xs = rows(x, dp->rank() * half, half), ys = rows(y, dp->rank() * half, half);
  const StepResult a = one_step(spec, xs, ys, dp.get());
  const StepResult b = one_step(spec, xs, ys, dp.get());
  for (const ParamSpec& p : spec.params) EXPECT_TRUE(testing::bitwise_equal(a.params.at(p.name), b.params.at(p.name))) << p.name;
}

TEST(DataParallel, BucketsFollowTheBackwardAndOneBucketIsTheFallback) {
  const ModelSpec& spec = model_spec("seed-cnn");
  OptimizerConfig adam;
  ForwardOptions training;
  training.training = true;
  const Graph forward = build_forward(spec, 8, training);
  const Plan plan(differentiate(forward, forward.find("loss"), &adam), gradient_names(spec));
  const std::vector<int32_t> params = gradient_values(spec, plan);
  const std::vector<GradientBucket> all = plan_gradient_buckets(plan, params, 0);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].values.size(), spec.params.size());
  EXPECT_EQ(all[0].floats, 206922);  // seed-cnn's parameters
  // 256 KiB: fc2's weight and bias, then fc1's 0.8 MB weight closes the first bucket.
  const std::vector<GradientBucket> small = plan_gradient_buckets(plan, params, int64_t{256} << 10);
  ASSERT_GE(small.size(), 2u);
  int64_t floats = 0;
  for (size_t k = 0; k < small.size(); ++k) {
    floats += small[k].floats;
    EXPECT_LT(small[k].ready_after, small[k].needed_before);
    if (k > 0) EXPECT_LT(small[k - 1].ready_after, small[k].ready_after);
  }
  EXPECT_EQ(floats, 206922);
}

// --distributed nccl's bootstrap over MPI with a table standing for NCCL (no GPU here): only
// rank 0 asks for a unique id, and every rank's init gets rank 0's bytes, its own rank and the
// rank count. The table's id differs by the rank that made it, so a rank that made its own, or
// got nothing, shows.
int g_rank_for_id = -1;
unsigned char g_init_id[PARITY_NCCL_UNIQUE_ID_BYTES];
int g_init_ranks = -1, g_init_rank = -1, g_unique_ids = 0;

TEST(DataParallel, NcclBootstrapGivesEveryRankRankZerosUniqueId) {
  parity_nccl_api table{};
  table.version = PARITY_NCCL_API_VERSION;
  table.describe = [](char* out, size_t capacity) { return std::snprintf(out, capacity, "stand-in") < 0 ? 1 : 0; };
  table.device_count = [](int* count, char*) {
    *count = 1;
    return 0;
  };
  table.unique_id = [](unsigned char* id, char*) {
    ++g_unique_ids;
    for (int i = 0; i < PARITY_NCCL_UNIQUE_ID_BYTES; ++i) id[i] = static_cast<unsigned char>(i + 31 * g_rank_for_id + 7);
    return 0;
  };
  table.comm_init = [](const unsigned char* id, int ranks, int rank, int, void** comm, char*) {
    std::memcpy(g_init_id, id, sizeof g_init_id);
    g_init_ranks = ranks;
    g_init_rank = rank;
    *comm = &g_init_ranks;
    return 0;
  };
  table.comm_destroy = [](void*, int, char*) { return 0; };
  std::unique_ptr<Communicator> mpi = make_communicator("mpi");
  g_rank_for_id = mpi->rank();
  {
    LaunchEnv env;
    env.rank = mpi->rank();
    env.size = mpi->size();
    DeviceCollectives device(table, *mpi, env);
    EXPECT_EQ(device.device(), 0);
  }
  EXPECT_EQ(g_unique_ids, mpi->rank() == 0 ? 1 : 0);
  EXPECT_EQ(g_init_ranks, 2);
  EXPECT_EQ(g_init_rank, mpi->rank());
  for (int i = 0; i < PARITY_NCCL_UNIQUE_ID_BYTES; ++i) ASSERT_EQ(g_init_id[i], static_cast<unsigned char>(i + 7)) << i;
}

}  // namespace
}  // namespace parity

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Held for the whole run: MPI starts with the first communicator and ends with it, while the
  // tests make and drop their own.
  std::unique_ptr<parity::Communicator> keeper;
  try {
    keeper = parity::make_communicator("mpi");
  } catch (const std::exception& e) {
    std::cerr << "test_data_parallel: " << e.what() << "\n";
    return 1;
  }
  const int result = RUN_ALL_TESTS();
  keeper.reset();
  return result;
}
