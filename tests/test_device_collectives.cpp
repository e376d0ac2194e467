// tests/test_device_collectives.cpp — the NCCL path of data-parallel training without a GPU: the
// device each rank takes, the bootstrap (rank 0's unique id, broadcast over the host
// communicator, given to every rank's init), and training steps on the emulated device (the
// gpu_emu plugin) with an emulated NCCL table (dist/nccl_api.h) whose collectives are launches on
// that device. The emulator's ordering checks then judge the streams and events of
// dist/device_collectives.cpp as a GPU would only punish by chance: a bucket's all-reduce on its
// own stream must wait for the backward's gradients, and the optimizer must wait for the
// all-reduce. The same table with the last wait left out shows the checks catching it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "backends/gpu_emu/emu_runtime.h"
#include "dist/data_parallel.h"
#include "dist/device_collectives.h"
#include "graph/compiled_step.h"
#include "parity/backend.h"
#include "parity/error.h"
#include "parity/graph.h"
#include "parity/model.h"
#include "tests/data_parallel_step.h"
#include "tests/test_helpers.h"

namespace parity {
namespace {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// --- the device a rank takes ---------------------------------------------------------------------

LaunchEnv node_of(int rank, int local_rank, int local_size) {
  LaunchEnv env;
  env.rank = rank;
  env.size = 16;
  env.local_rank = local_rank;
  env.local_size = local_size;
  return env;
}

TEST(DeviceForRank, LocalRankOnANodeWithEnoughDevicesTheOnlyOneWhenOneIsVisible) {
  EXPECT_EQ(device_for_rank(node_of(9, 1, 8), 8), 1);
  EXPECT_EQ(device_for_rank(node_of(15, 7, 8), 8), 7);
  EXPECT_EQ(device_for_rank(node_of(3, 3, 4), 8), 3);  // fewer ranks than devices: the first ones
  // CUDA_VISIBLE_DEVICES narrowed to one device per rank (srun --gpus-per-task=1): that one.
  EXPECT_EQ(device_for_rank(node_of(15, 7, 8), 1), 0);
}

TEST(DeviceForRank, NoDeviceOrMoreRanksThanDevicesOnANodeIsRefused) {
  EXPECT_EQ(error_of([] { device_for_rank(node_of(2, 2, 4), 0); }), "--distributed nccl: rank 2 sees no CUDA device");
  EXPECT_EQ(error_of([] { device_for_rank(node_of(5, 5, 6), 4); }),
            "--distributed nccl: 6 ranks run on rank 5's node, which has 4 CUDA devices: start at most one rank per "
            "device (NCCL refuses two ranks on one device)");
}

// --- a host communicator standing for rank `rank` of `size` ranks that all agree ----------------

// Sums: every rank is taken to contribute what this one does. Broadcast: rank 0's bytes are
// `root_bytes` (repeated), written into the buffer as the other ranks' would be.
class AgreeingCommunicator final : public Communicator {
 public:
  AgreeingCommunicator(int rank, int size, unsigned char root_byte) : rank_(rank), size_(size), root_byte_(root_byte) {}
  std::string name() const override { return "agreeing"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) data[i] *= static_cast<float>(size_);
  }
  void allreduce_sum(double* data, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) data[i] *= size_;
  }
  int64_t start_allreduce_sum(float* data, int64_t count) override {
    allreduce_sum(data, count);
    return 0;
  }
  void wait(int64_t) override {}
  void progress() override {}
  void broadcast(void* data, int64_t bytes, int root) override {
    ++broadcasts;
    if (rank_ != root) std::memset(data, root_byte_, static_cast<size_t>(bytes));
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
  int broadcasts = 0;

 private:
  int rank_, size_;
  unsigned char root_byte_;
};

// --- an NCCL table on the emulated device ----------------------------------------------------

struct EventOnDevice {
  emu::Device* device;
  emu::Event event;
};

// What the emulated table was asked, and how it behaves. One at a time (the table is C: its
// functions reach this through a global).
struct EmulatedNccl {
  int device_count = 1;
  int world = 2;  // the all-reduce sums this many identical replicas
  const char* device_count_error = nullptr;
  // The defects the ordering checks must catch: the all-reduce's stream not waiting for the
  // backward's gradients, or the backend's stream not waiting for the all-reduce.
  bool skip_waits_of_allreduce_stream = false;
  bool skip_waits_of_compute_stream = false;
  int unique_id_calls = 0;
  unsigned char init_id[PARITY_NCCL_UNIQUE_ID_BYTES] = {};
  int init_ranks = -1, init_rank = -1, init_device = -1;
  int comms_destroyed = 0;
  std::vector<std::string> log;  // "record e1 s1", "wait s2 e1", "allreduce s2 n=3 scale=0.5", ...
  std::map<const void*, int> names;  // handle → its number in the log
  std::vector<std::vector<DeviceSpan>> allreduced;
  std::vector<std::pair<void*, int64_t>> broadcast;
  std::vector<emu::StreamOnDevice*> streams;
  std::vector<EventOnDevice*> events;
};
EmulatedNccl* g_nccl = nullptr;

std::string stream_name(void* s) { return "s" + std::to_string(static_cast<emu::StreamOnDevice*>(s)->stream.id); }
std::string event_name(void* e) { return "e" + std::to_string(static_cast<EventOnDevice*>(e)->event.id); }

std::vector<emu::DeviceRange> ranges_of(void* const* data, const int64_t* counts, int32_t n) {
  std::vector<emu::DeviceRange> r;
  for (int32_t i = 0; i < n; ++i) r.push_back({data[i], static_cast<size_t>(counts[i]) * sizeof(float)});
  return r;
}

// Each function reports an emulator exception the way the module reports NCCL's: non-zero and text.
template <typename F>
int guarded(char* err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, PARITY_NCCL_ERROR_LEN, "%s", e.what());
    return 1;
  }
}

const parity_nccl_api kEmulated = {
    PARITY_NCCL_API_VERSION,
    [](char* out, size_t capacity) {
      std::snprintf(out, capacity, "emulated NCCL");
      return 0;
    },
    [](int* count, char* err) {
      if (g_nccl->device_count_error) {
        std::snprintf(err, PARITY_NCCL_ERROR_LEN, "%s", g_nccl->device_count_error);
        return 1;
      }
      *count = g_nccl->device_count;
      return 0;
    },
    [](unsigned char* id, char*) {
      ++g_nccl->unique_id_calls;
      std::memset(id, 0x5a, PARITY_NCCL_UNIQUE_ID_BYTES);
      return 0;
    },
    [](const unsigned char* id, int ranks, int rank, int device, void** comm, char*) {
      std::memcpy(g_nccl->init_id, id, PARITY_NCCL_UNIQUE_ID_BYTES);
      g_nccl->init_ranks = ranks;
      g_nccl->init_rank = rank;
      g_nccl->init_device = device;
      *comm = g_nccl;
      return 0;
    },
    [](void*, int, char*) {
      ++g_nccl->comms_destroyed;
      return 0;
    },
    [](void* near, void** stream, char* err) {
      return guarded(err, [&] {
        emu::Device* device = static_cast<emu::StreamOnDevice*>(near)->device;
        auto* s = new emu::StreamOnDevice{device, device->stream_create()};
        g_nccl->streams.push_back(s);
        *stream = s;
      });
    },
    [](void* stream, char* err) {
      return guarded(err, [&] {
        auto* s = static_cast<emu::StreamOnDevice*>(stream);
        s->device->stream_destroy(s->stream);
      });
    },
    [](void* near, void** event, char* err) {
      return guarded(err, [&] {
        emu::Device* device = static_cast<emu::StreamOnDevice*>(near)->device;
        auto* e = new EventOnDevice{device, device->event_create()};
        g_nccl->events.push_back(e);
        *event = e;
      });
    },
    [](void* event, char* err) {
      return guarded(err, [&] {
        auto* e = static_cast<EventOnDevice*>(event);
        e->device->event_destroy(e->event);
      });
    },
    [](void* event, void* stream, char* err) {
      return guarded(err, [&] {
        g_nccl->log.push_back("record " + event_name(event) + " " + stream_name(stream));
        auto* s = static_cast<emu::StreamOnDevice*>(stream);
        s->device->event_record(static_cast<EventOnDevice*>(event)->event, s->stream);
      });
    },
    [](void* stream, void* event, char* err) {
      return guarded(err, [&] {
        g_nccl->log.push_back("wait " + stream_name(stream) + " " + event_name(event));
        auto* s = static_cast<emu::StreamOnDevice*>(stream);
        const bool allreduce_stream =
            std::find(g_nccl->streams.begin(), g_nccl->streams.end(), s) != g_nccl->streams.end();
        if (allreduce_stream ? g_nccl->skip_waits_of_allreduce_stream : g_nccl->skip_waits_of_compute_stream) return;
        s->device->stream_wait_event(s->stream, static_cast<EventOnDevice*>(event)->event);
      });
    },
    [](void*, void* const* data, const int64_t* counts, int32_t n, float scale, void* stream, char* err) {
      return guarded(err, [&] {
        g_nccl->log.push_back("allreduce " + stream_name(stream) + " n=" + std::to_string(n));
        std::vector<DeviceSpan> spans;
        for (int32_t i = 0; i < n; ++i) spans.push_back({data[i], counts[i]});
        g_nccl->allreduced.push_back(spans);
        auto* s = static_cast<emu::StreamOnDevice*>(stream);
        const int world = g_nccl->world;
        // The sum over `world` replicas that hold the same values, each premultiplied by scale.
        s->device->launch(s->stream, "ncclAllReduce", ranges_of(data, counts, n), ranges_of(data, counts, n),
                          [spans, scale, world] {
                            for (const DeviceSpan& span : spans) {
                              auto* f = static_cast<float*>(span.data);
                              for (int64_t i = 0; i < span.count; ++i) {
                                const float one = scale * f[i];
                                float sum = 0.0f;
                                for (int r = 0; r < world; ++r) sum += one;
                                f[i] = sum;
                              }
                            }
                          });
      });
    },
    [](void*, void* data, int64_t bytes, int, void* stream, char* err) {
      return guarded(err, [&] {
        g_nccl->log.push_back("broadcast " + stream_name(stream));
        g_nccl->broadcast.emplace_back(data, bytes);
        auto* s = static_cast<emu::StreamOnDevice*>(stream);
        // Rank 0's bytes onto themselves: what matters here is when it runs.
        s->device->launch(s->stream, "ncclBroadcast", {{data, static_cast<size_t>(bytes)}},
                          {{data, static_cast<size_t>(bytes)}}, [] {});
      });
    },
    [](void* stream, char* err) {
      return guarded(err, [&] {
        auto* s = static_cast<emu::StreamOnDevice*>(stream);
        s->device->stream_synchronize(s->stream);
      });
    },
};

class EmulatedNcclTest : public ::testing::Test {
 protected:
  void SetUp() override { g_nccl = &nccl; }
  void TearDown() override {
    for (auto* s : nccl.streams) delete s;
    for (auto* e : nccl.events) delete e;
    g_nccl = nullptr;
  }
  EmulatedNccl nccl;
};

// --- the bootstrap -----------------------------------------------------------------------------

TEST_F(EmulatedNcclTest, EveryRankInitsWithRankZerosIdOnItsLocalRanksDevice) {
  nccl.device_count = 4;
  AgreeingCommunicator rank1(1, 2, 0x5a);
  LaunchEnv env = node_of(1, 1, 2);
  {
    DeviceCollectives device(kEmulated, rank1, env);
    EXPECT_EQ(nccl.unique_id_calls, 0) << "only rank 0 asks NCCL for the id";
    EXPECT_EQ(rank1.broadcasts, 1);
    for (unsigned char byte : nccl.init_id) ASSERT_EQ(byte, 0x5a) << "rank 0's id, as broadcast";
    EXPECT_EQ(nccl.init_ranks, 2);
    EXPECT_EQ(nccl.init_rank, 1);
    EXPECT_EQ(nccl.init_device, 1);
    EXPECT_EQ(device.device(), 1);
    EXPECT_EQ(device.describe(), "emulated NCCL, device 1 of 4");
  }
  EXPECT_EQ(nccl.comms_destroyed, 1);

  AgreeingCommunicator rank0(0, 2, 0x00);
  DeviceCollectives first(kEmulated, rank0, node_of(0, 0, 2));
  EXPECT_EQ(nccl.unique_id_calls, 1);
  EXPECT_EQ(nccl.init_rank, 0);
  EXPECT_EQ(nccl.init_id[0], 0x5a);
}

TEST_F(EmulatedNcclTest, NoDriverOrTooManyRanksStopsBeforeTheInitWithTheReason) {
  nccl.device_count_error = "cudaGetDeviceCount: CUDA driver version is insufficient for CUDA runtime version";
  AgreeingCommunicator rank0(0, 2, 0);
  EXPECT_EQ(error_of([&] { DeviceCollectives d(kEmulated, rank0, node_of(0, 0, 2)); }),
            "--distributed nccl: cudaGetDeviceCount: CUDA driver version is insufficient for CUDA runtime version");
  nccl.device_count_error = nullptr;
  nccl.device_count = 2;
  EXPECT_NE(error_of([&] { DeviceCollectives d(kEmulated, rank0, node_of(0, 0, 3)); }).find("3 ranks run on rank 0's node"),
            std::string::npos);
  EXPECT_EQ(nccl.init_rank, -1) << "no rank reached ncclCommInitRank";
}

// --- training steps on the emulated device ---------------------------------------------------

using testing::StepResult;

// One Adam step on `backend`; with `dp`, x and y are half of the global batch.
StepResult one_step(Backend& backend, const ModelSpec& spec, const Tensor& x, const Tensor& y,
                    CommunicatorDataParallel* dp) {
  return testing::one_adam_step(backend, spec, x, y, dp, 2 * x.shape()[0]);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

std::unique_ptr<CommunicatorDataParallel> emulated_data_parallel(int64_t bucket_bytes) {
  auto host = std::make_unique<AgreeingCommunicator>(0, 2, 0);
  auto device = std::make_unique<DeviceCollectives>(kEmulated, *host, node_of(0, 0, 1));
  DataParallelOptions o;
  o.bucket_bytes = bucket_bytes;
  o.log_events = true;
  return std::make_unique<CommunicatorDataParallel>(std::move(host), o, std::move(device));
}

// seed-cnn's gradients (0.83 MB) in 16 KiB buckets: several all-reduces, the first started while
// the backward goes on. Two identical replicas of half the global batch each give, after the
// premultiplied sum (0.5 g + 0.5 g, exact in float32), the very gradients of one process: the
// weights after Adam's step are bitwise those of a step without data parallelism.
TEST_F(EmulatedNcclTest, BucketsAllReduceOnTheirOwnStreamWhileTheBackwardGoesOnAndTheStepIsTheSame) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const auto [x, y] = testing::random_batch(spec, 4, 3);
  std::unique_ptr<Backend> backend = create_backend("gpu_emu");
  const StepResult plain = one_step(*backend, spec, x, y, nullptr);
  StepResult mine;
  std::vector<AllReduceEvent> events;
  std::vector<GradientBucket> buckets;
  {
    auto dp = emulated_data_parallel(16 << 10);
    mine = one_step(*backend, spec, x, y, dp.get());
    events = dp->events();
    buckets = dp->buckets(4);
  }
  ASSERT_GE(buckets.size(), 3u);
  ASSERT_EQ(nccl.allreduced.size(), buckets.size());
  for (size_t k = 0; k < buckets.size(); ++k) EXPECT_EQ(nccl.allreduced[k].size(), buckets[k].values.size()) << k;
  for (const ParamSpec& p : spec.params) {
    EXPECT_TRUE(same_bits(mine.gradients.at(p.name), plain.gradients.at(p.name))) << p.name;
    EXPECT_TRUE(same_bits(mine.params.at(p.name), plain.params.at(p.name))) << p.name;
  }

  // The first bucket starts before the backward's last gradient is made; each is waited for after
  // every bucket has started (their first reader is the optimizer, after the backward).
  std::string order;
  for (const AllReduceEvent& e : events)
    order += e.kind == AllReduceEvent::Kind::start   ? "start "
             : e.kind == AllReduceEvent::Kind::wait  ? "wait "
             : e.kind == AllReduceEvent::Kind::backward_done ? "backward_done "
                                                             : "other ";
  std::string expected;
  for (size_t k = 0; k < buckets.size(); ++k) expected += "start ";
  expected += "backward_done ";
  for (size_t k = 0; k < buckets.size(); ++k) expected += "wait ";
  EXPECT_EQ(order, expected);

  // Per bucket on the table: an event recorded on the compute stream, the all-reduce stream waits
  // for it, the all-reduce, its done event; later the compute stream waits for each done event.
  ASSERT_EQ(nccl.log.size(), 5 * buckets.size()) << ::testing::PrintToString(nccl.log);
  const std::string compute = nccl.log[0].substr(nccl.log[0].rfind(' ') + 1);
  std::string comm;
  for (size_t k = 0; k < buckets.size(); ++k) {
    const std::string& record_ready = nccl.log[4 * k];
    ASSERT_EQ(record_ready.rfind("record ", 0), 0u) << record_ready;
    EXPECT_EQ(record_ready.substr(record_ready.rfind(' ') + 1), compute);
    const std::string ready = record_ready.substr(7, record_ready.rfind(' ') - 7);
    const std::string& wait = nccl.log[4 * k + 1];
    if (comm.empty()) comm = wait.substr(5, wait.rfind(' ') - 5);
    EXPECT_NE(comm, compute) << "the all-reduce has a stream of its own";
    EXPECT_EQ(wait, "wait " + comm + " " + ready);
    EXPECT_EQ(nccl.log[4 * k + 2], "allreduce " + comm + " n=" + std::to_string(buckets[k].values.size()));
    EXPECT_EQ(nccl.log[4 * k + 3].rfind("record ", 0), 0u);
    EXPECT_EQ(nccl.log[4 * k + 3].substr(nccl.log[4 * k + 3].rfind(' ') + 1), comm);
  }
  for (size_t k = 4 * buckets.size(); k < nccl.log.size(); ++k)
    EXPECT_EQ(nccl.log[k].rfind("wait " + compute + " ", 0), 0u) << nccl.log[k];
}

// resnet8's batch norms: rank 0's running statistics are broadcast on the compute stream after
// the step's last node, every step, and the step's result is still the plain one.
TEST_F(EmulatedNcclTest, BatchNormBuffersAreBroadcastOnTheComputeStreamAfterTheStepsLastNode) {
  const ModelSpec& spec = model_spec("resnet8");
  const auto [x, y] = testing::random_batch(spec, 2, 4);
  std::unique_ptr<Backend> backend = create_backend("gpu_emu");
  const StepResult plain = one_step(*backend, spec, x, y, nullptr);
  StepResult mine;
  {
    auto dp = emulated_data_parallel(0);
    mine = one_step(*backend, spec, x, y, dp.get());
  }
  size_t running = 0;
  for (const BufferSpec& b : spec.buffers) running += b.step_count ? 0 : 1;
  ASSERT_GT(running, 0u);
  EXPECT_EQ(nccl.broadcast.size(), running);
  ASSERT_FALSE(nccl.log.empty());
  EXPECT_EQ(nccl.log.back().rfind("broadcast ", 0), 0u) << nccl.log.back();
  const std::string compute = nccl.log[0].substr(nccl.log[0].rfind(' ') + 1);
  EXPECT_EQ(nccl.log.back(), "broadcast " + compute);
  for (const ParamSpec& p : spec.params) EXPECT_TRUE(same_bits(mine.params.at(p.name), plain.params.at(p.name))) << p.name;
}

// The same step with one of the two waits left out: the all-reduce reads gradients the backward
// wrote on the backend's stream, or the optimizer reads gradients the all-reduce wrote on its own
// stream, with nothing ordering them; the emulated device says so, naming both operations.
TEST_F(EmulatedNcclTest, AMissingWaitIsCaughtByTheEmulatedDevicesOrderingChecks) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const auto [x, y] = testing::random_batch(spec, 2, 3);
  for (const bool compute_side : {false, true}) {
    nccl.skip_waits_of_allreduce_stream = !compute_side;
    nccl.skip_waits_of_compute_stream = compute_side;
    std::unique_ptr<Backend> backend = create_backend("gpu_emu");
    auto dp = emulated_data_parallel(0);
    const std::string error = error_of([&] { one_step(*backend, spec, x, y, dp.get()); });
    EXPECT_NE(error.find("unordered_read"), std::string::npos) << error;
    EXPECT_NE(error.find(compute_side ? "last written by launch 'ncclAllReduce'" : "launch 'ncclAllReduce' on stream"),
              std::string::npos)
        << error;
    std::cout << "the emulated device says: " << error << "\n";
  }
}

// A host backend gives its hooks no stream: the NCCL path says what to use instead.
TEST_F(EmulatedNcclTest, AHostBackendIsRefusedByTheDevicePath) {
  const ModelSpec& spec = model_spec("seed-cnn");
  const auto [x, y] = testing::random_batch(spec, 2, 3);
  BackendOptions one_thread;
  one_thread.threads = 1;
  std::unique_ptr<Backend> cpu = create_backend("cpu", one_thread);
  auto dp = emulated_data_parallel(0);
  const std::string error = error_of([&] { one_step(*cpu, spec, x, y, dp.get()); });
  EXPECT_NE(error.find("--distributed nccl reduces device memory, and this backend executes on the host"),
            std::string::npos)
      << error;
}

}  // namespace
}  // namespace parity
