// tests/test_simt_runtime.cpp — the simt emulator's semantics, at warp size 32 and 64: a barrier
// waits for every thread of the block, shared memory is one copy per block, warp shuffles and
// ballots exchange values within one warp, atomics are atomic across parallel blocks, and a
// shared-memory overrun or a barrier that not every thread reaches is reported with the
// kernel's name instead of corrupting memory or hanging. Each test fails if the mechanism
// it checks is removed (e.g. a barrier that returns at once lets thread 0 read poison).
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/simt/simt_runtime.h"
#include "parity/error.h"

namespace parity::simt {
namespace {

class SimtRuntime : public ::testing::TestWithParam<int> {
 protected:
  int warp() const { return GetParam(); }
};

uint64_t shfl(WarpOp op, uint64_t v, int arg) { return warp_collective(op, v, arg, __LINE__); }

// Expects `f` to throw parity::Error whose message contains every string of `parts`.
template <class F>
void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error was reported";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST_P(SimtRuntime, BarrierWaitsForEveryThreadOfTheBlock) {
  const unsigned n = 128;
  std::vector<float> out(4 * n, -1.0f);
  launch("barrier_rotate", warp(), Dim3{4, 1, 1}, Dim3{n, 1, 1}, [&] {
    const ThreadContext& t = current();
    auto* s = static_cast<float*>(shared_alloc(sizeof(float) * n, alignof(float), "s"));
    s[t.thread.x] = static_cast<float>(t.block.x * 1000 + t.thread.x);
    sync_block(__LINE__);
    // Without the barrier, thread 0 runs first and reads its neighbour's slot still holding the
    // 0xff poison (a NaN); and a second block's values would show if shared memory were not per block.
    out[t.block.x * n + t.thread.x] = s[(t.thread.x + 1) % n];
  });
  for (unsigned b = 0; b < 4; ++b)
    for (unsigned i = 0; i < n; ++i) ASSERT_EQ(out[b * n + i], static_cast<float>(b * 1000 + (i + 1) % n)) << b << " " << i;
}

TEST_P(SimtRuntime, ShufflesAndBallotStayWithinOneWarp) {
  const unsigned n = 128;
  const int w = warp();
  std::vector<uint64_t> xr(n), down(n), idx(n), up(n), ballot(n), sum(n);
  launch("shuffles", w, Dim3{1, 1, 1}, Dim3{n, 1, 1}, [&] {
    const unsigned i = current().thread.x;
    const uint64_t lane = i % static_cast<unsigned>(w);
    xr[i] = shfl(WarpOp::shfl_xor, lane, 1);
    down[i] = shfl(WarpOp::shfl_down, lane, 3);
    up[i] = shfl(WarpOp::shfl_up, lane, 2);
    idx[i] = shfl(WarpOp::shfl_idx, i, w - 1);  // the last lane of this warp
    ballot[i] = shfl(WarpOp::ballot, lane % 3 == 0, 0);
    uint64_t v = lane;
    for (int offset = w / 2; offset > 0; offset /= 2) v += shfl(WarpOp::shfl_xor, v, offset);
    sum[i] = v;
  });
  uint64_t expected_ballot = 0;
  for (int l = 0; l < w; l += 3) expected_ballot |= uint64_t{1} << l;
  for (unsigned i = 0; i < n; ++i) {
    const uint64_t lane = i % static_cast<unsigned>(w), first = i - lane;
    EXPECT_EQ(xr[i], lane ^ 1) << i;
    EXPECT_EQ(down[i], lane + 3 < static_cast<uint64_t>(w) ? lane + 3 : lane) << i;
    EXPECT_EQ(up[i], lane >= 2 ? lane - 2 : lane) << i;
    EXPECT_EQ(idx[i], first + static_cast<uint64_t>(w) - 1) << i;
    EXPECT_EQ(ballot[i], expected_ballot) << i;
    EXPECT_EQ(sum[i], static_cast<uint64_t>(w) * (w - 1) / 2) << i;  // the sum of one warp's lanes only
  }
}

// A warp sum written for 32 lanes (offsets from 16 down) is right at warp 32 and wrong at 64,
// where it adds only half of each wavefront: the bug a kernel tuned on NVIDIA shows on gfx90a.
TEST_P(SimtRuntime, WarpSumAssumingThirtyTwoLanesFailsAtSixtyFour) {
  std::vector<uint64_t> sum(64);
  launch("warp_sum_32", warp(), Dim3{1, 1, 1}, Dim3{64, 1, 1}, [&] {
    const unsigned i = current().thread.x;
    uint64_t v = 1;
    for (int offset = 16; offset > 0; offset /= 2) v += shfl(WarpOp::shfl_xor, v, offset);
    sum[i] = v;
  });
  EXPECT_EQ(sum[0], 32u);  // every lane counted 32 lanes ...
  if (warp() == 64) {
    EXPECT_NE(sum[0], 64u);  // ... which at warp 64 is not the whole wavefront
  }
}

TEST_P(SimtRuntime, AtomicsAreAtomicAcrossParallelBlocks) {
  int counter = 0;
  launch("count", warp(), Dim3{64, 1, 1}, Dim3{64, 1, 1}, [&] { __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED); });
  EXPECT_EQ(counter, 64 * 64);
}

TEST_P(SimtRuntime, SharedMemoryOverrunIsReportedWithTheKernelName) {
  expect_error(
      [&] {
        launch("writes_one_past", warp(), Dim3{2, 1, 1}, Dim3{64, 1, 1}, [&] {
          auto* s = static_cast<float*>(shared_alloc(sizeof(float) * 64, alignof(float), "tile"));
          s[current().thread.x + 1] = 1.0f;  // thread 63 writes s[64]
        });
      },
      {"writes_one_past", "past the end of shared array 'tile'"});
  expect_error(
      [&] {
        launch("writes_before", warp(), Dim3{1, 1, 1}, Dim3{64, 1, 1}, [&] {
          auto* s = static_cast<int*>(shared_alloc(sizeof(int) * 64, alignof(int), "tile"));
          s[static_cast<int>(current().thread.x) - 1] = 1;  // thread 0 writes s[-1]
        });
      },
      {"writes_before", "before the start of shared array 'tile'"});
}

TEST_P(SimtRuntime, BarrierNotReachedByEveryThreadIsADeadlock) {
  expect_error(
      [&] {
        launch("early_exit", warp(), Dim3{3, 1, 1}, Dim3{128, 1, 1}, [&] {
          if (current().thread.x < 100) sync_block(__LINE__);
        });
      },
      {"kernel 'early_exit'", "deadlocked", "100 thread(s) wait at the barrier", "28 thread(s) have finished"});
  expect_error(
      [&] {
        launch("two_barriers", warp(), Dim3{1, 1, 1}, Dim3{64, 1, 1}, [&] {
          if (current().thread.x % 2) sync_block(1001);
          else sync_block(1002);
        });
      },
      {"kernel 'two_barriers'", "deadlocked", "line 1001", "line 1002"});
}

TEST_P(SimtRuntime, WarpCollectiveNotReachedByEveryLaneIsReported) {
  expect_error(
      [&] {
        launch("partial_shuffle", warp(), Dim3{1, 1, 1}, Dim3{64, 1, 1}, [&] {
          if (current().thread.x != 5) shfl(WarpOp::shfl_xor, 1, 1);
        });
      },
      {"kernel 'partial_shuffle'", "already finished"});
  expect_error(
      [&] {
        launch("shuffle_vs_barrier", warp(), Dim3{1, 1, 1}, Dim3{64, 1, 1}, [&] {
          if (current().thread.x == 0) sync_block(__LINE__);
          else shfl(WarpOp::shfl_xor, 1, 1);
        });
      },
      {"kernel 'shuffle_vs_barrier'", "deadlocked"});
}

TEST_P(SimtRuntime, SharedMemoryBeyondTheBlockLimitIsReported) {
  expect_error(
      [&] {
        launch("too_much_shared", warp(), Dim3{1, 1, 1}, Dim3{64, 1, 1},
               [&] { shared_alloc(60 * 1024, alignof(float), "huge"); });
      },
      {"kernel 'too_much_shared'", "shared array 'huge'"});
}

TEST_P(SimtRuntime, BadLaunchShapeIsReported) {
  expect_error([&] { launch("too_big", warp(), Dim3{1, 1, 1}, Dim3{2048, 1, 1}, [] {}); }, {"too_big", "2048 threads"});
}

INSTANTIATE_TEST_SUITE_P(Warp, SimtRuntime, ::testing::Values(32, 64),
                         [](const ::testing::TestParamInfo<int>& i) { return "warp" + std::to_string(i.param); });

}  // namespace
}  // namespace parity::simt
