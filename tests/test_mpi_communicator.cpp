// tests/test_mpi_communicator.cpp — the MPI communicator on 2 ranks: run under mpirun by CTest
// (tests/CMakeLists.txt), every rank running every test, so each collective is joined by both.
// Sums are checked exactly: with 2 ranks each element is one float (or double) addition, the same
// whichever rank's operand comes first, so the expected value is that one addition done here.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/launch_env.h"
#include "dist/mpi_communicator.h"
#include "parity/error.h"

namespace parity {
namespace {

// The one communicator of the run: MPI starts once per process, and finalises in its destructor.
Communicator* g_comm = nullptr;

Communicator& comm() { return *g_comm; }

// The value rank `rank` contributes at index i: distinct per rank, not integers, not floats in
// the double case (so that a reduction carried out in float would show).
float float_term(int rank, int64_t i) { return 0.25f * static_cast<float>(i) + 1.5f * static_cast<float>(rank + 1); }
double double_term(int rank, int64_t i) { return 1.0 + 1e-12 * static_cast<double>((rank + 1) * (i + 1)); }

std::vector<float> float_terms(int rank, int64_t count) {
  std::vector<float> data(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) data[static_cast<size_t>(i)] = float_term(rank, i);
  return data;
}

void expect_float_sums(const std::vector<float>& data) {
  ASSERT_EQ(comm().size(), 2);
  for (size_t i = 0; i < data.size(); ++i) {
    ASSERT_EQ(data[i], float_term(0, static_cast<int64_t>(i)) + float_term(1, static_cast<int64_t>(i))) << "at " << i;
  }
}

TEST(MpiCommunicator, RankAndSizeAreTheLaunchers) {
  EXPECT_EQ(comm().name(), "mpi");
  EXPECT_EQ(comm().size(), 2);
  LaunchEnv launch = launch_env();
  EXPECT_EQ(launch.launcher, "Open MPI");  // CI runs Open MPI's mpirun
  EXPECT_EQ(comm().rank(), launch.rank);
  EXPECT_EQ(comm().size(), launch.size);
}

TEST(MpiCommunicator, AllreduceSumFloat) {
  std::vector<float> data = float_terms(comm().rank(), 1000);
  comm().allreduce_sum(data.data(), static_cast<int64_t>(data.size()));
  expect_float_sums(data);
}

TEST(MpiCommunicator, AllreduceSumDouble) {
  std::vector<double> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = double_term(comm().rank(), static_cast<int64_t>(i));
  comm().allreduce_sum(data.data(), static_cast<int64_t>(data.size()));
  for (size_t i = 0; i < data.size(); ++i) {
    double expected = double_term(0, static_cast<int64_t>(i)) + double_term(1, static_cast<int64_t>(i));
    ASSERT_EQ(data[i], expected) << "at " << i;
    // A float reduction would have lost the 1e-12 steps.
    ASSERT_NE(data[i], static_cast<double>(static_cast<float>(expected))) << "at " << i;
  }
}

TEST(MpiCommunicator, TwoRequestsInFlightWaitedInReverseOrder) {
  std::vector<float> first = float_terms(comm().rank(), 100000);
  std::vector<float> second = float_terms(comm().rank(), 7);
  int64_t first_request = comm().start_allreduce_sum(first.data(), static_cast<int64_t>(first.size()));
  int64_t second_request = comm().start_allreduce_sum(second.data(), static_cast<int64_t>(second.size()));
  EXPECT_NE(first_request, second_request);
  comm().wait(second_request);
  comm().wait(first_request);
  expect_float_sums(first);
  expect_float_sums(second);
}

TEST(MpiCommunicator, WaitOnARequestNotInFlightIsRefused) {
  std::vector<float> data = float_terms(comm().rank(), 3);
  int64_t request = comm().start_allreduce_sum(data.data(), 3);
  comm().wait(request);
  try {
    comm().wait(request);
    ADD_FAILURE() << "a second wait on one request was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("already waited"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comm().wait(12345), Error);
}

TEST(MpiCommunicator, BroadcastFromEachRoot) {
  for (int root = 0; root < comm().size(); ++root) {
    std::string text = comm().rank() == root ? "from rank " + std::to_string(root) : std::string(11, '?');
    comm().broadcast(text.data(), static_cast<int64_t>(text.size()), root);
    EXPECT_EQ(text, "from rank " + std::to_string(root));
  }
}

TEST(MpiCommunicator, BadArgumentsAreRefusedBeforeMpi) {
  float x = 0;
  EXPECT_THROW(comm().allreduce_sum(&x, -1), Error);
  EXPECT_THROW(comm().start_allreduce_sum(&x, -1), Error);
  try {
    comm().broadcast(&x, sizeof x, 2);
    ADD_FAILURE() << "broadcast from rank 2 of 2 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("root 2, but the ranks are 0..1"), std::string::npos) << e.what();
  }
  // Nothing was started: the communicator still works.
  comm().barrier();
}

// A buffer longer than one MPI call may carry goes in chunks: the limit set to 3 elements here
// stands for INT_MAX, which a test cannot allocate past. The second communicator finds MPI
// initialised, so it must not finalise it: the first one works afterwards.
TEST(MpiCommunicator, LongBuffersGoInChunksAndASecondCommunicatorLeavesMpiRunning) {
  {
    std::unique_ptr<Communicator> chunked = make_mpi_communicator(3);
    std::vector<float> data = float_terms(comm().rank(), 10);
    chunked->allreduce_sum(data.data(), 10);
    expect_float_sums(data);

    std::vector<double> doubles(8, 0.5 + comm().rank());
    chunked->allreduce_sum(doubles.data(), 8);
    for (double d : doubles) EXPECT_EQ(d, 2.0);

    std::vector<float> a = float_terms(comm().rank(), 11);
    std::vector<float> b = float_terms(comm().rank(), 2);
    int64_t ra = chunked->start_allreduce_sum(a.data(), 11);
    int64_t rb = chunked->start_allreduce_sum(b.data(), 2);
    chunked->wait(rb);
    chunked->wait(ra);
    expect_float_sums(a);
    expect_float_sums(b);

    std::string text = comm().rank() == 1 ? "ten bytes!" : std::string(10, '?');
    chunked->broadcast(text.data(), 10, 1);
    EXPECT_EQ(text, "ten bytes!");

    float nothing = 0;
    chunked->allreduce_sum(&nothing, 0);
    chunked->wait(chunked->start_allreduce_sum(&nothing, 0));
  }
  std::vector<float> data = float_terms(comm().rank(), 5);
  comm().allreduce_sum(data.data(), 5);
  expect_float_sums(data);
}

TEST(MpiCommunicator, SameConfigurationPasses) {
  EXPECT_NO_THROW(check_same_configuration(comm(), "model=seed-cnn\nlr=0.001\nbatch=128\n"));
  EXPECT_NO_THROW(check_same_configuration(comm(), ""));
}

// Rank 1 was started with another lr and a key of its own: every rank, not only rank 1, throws
// the message naming both values, so the user reads it in whichever rank's output they look at.
TEST(MpiCommunicator, DifferentConfigurationFailsOnEveryRankWithBothValues) {
  std::string description = comm().rank() == 0 ? "model=seed-cnn\nlr=0.001\nbatch=128\n"
                                                : "model=seed-cnn\nlr=0.01\nbatch=128\nseed=7\n";
  try {
    check_same_configuration(comm(), description);
    ADD_FAILURE() << "rank " << comm().rank() << " did not notice that rank 1 differs";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    std::string message = e.what();
    EXPECT_NE(message.find("rank 1 was started with lr=0.01, rank 0 with lr=0.001"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1 was started with seed=7, rank 0 without seed"), std::string::npos) << message;
    EXPECT_EQ(message.find("model="), std::string::npos) << message;  // what agrees is not listed
  }
  // The check left no collective behind: both ranks are in step.
  comm().barrier();
  EXPECT_NO_THROW(check_same_configuration(comm(), "same"));
}

// Proves the harness: run alone with PARITY_TEST_FAIL_ON_RANK=1 (CTest's
// Dist.MpiFailureOnOneRankFailsTheRun), it fails on rank 1 only, and mpirun must exit non-zero.
TEST(MpiCommunicator, FailsOnTheRankNamedByTheEnvironment) {
  const char* fail_on = std::getenv("PARITY_TEST_FAIL_ON_RANK");
  if (!fail_on) GTEST_SKIP() << "PARITY_TEST_FAIL_ON_RANK is not set";
  if (comm().rank() == std::atoi(fail_on)) ADD_FAILURE() << "the failure asked for on rank " << comm().rank();
}

// Failures say which rank had them: both ranks print to the same terminal.
class RankNamingListener : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.failed()) std::cout << "^ that failure was on rank " << comm().rank() << " of " << comm().size() << "\n";
  }
};

}  // namespace
}  // namespace parity

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::unique_ptr<parity::Communicator> comm;
  try {
    comm = parity::make_communicator("mpi");
  } catch (const std::exception& e) {
    std::cerr << "test_mpi_communicator: " << e.what() << "\n";
    return 1;
  }
  parity::g_comm = comm.get();
  ::testing::UnitTest::GetInstance()->listeners().Append(new parity::RankNamingListener);
  int result = RUN_ALL_TESTS();
  comm.reset();
  return result;
}
