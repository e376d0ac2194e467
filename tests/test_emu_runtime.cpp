// tests/test_emu_runtime.cpp — the emulated device runtime (backends/gpu_emu): memory, lazy
// stream-ordered execution, events, pageable copies, graph capture and replay and the ways a
// capture fails; then each check, a deliberately broken sequence that must report it next to
// the corrected sequence that must not; and the CUDA executor's double-buffered input pattern,
// whole and with each of its waits removed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "backends/gpu_emu/emu_runtime.h"

namespace parity {
namespace emu {
namespace {

constexpr size_t kFloats = 16;
constexpr size_t kBytes = kFloats * sizeof(float);

// Runs `sequence`, which must throw HazardError with `expected`; returns its message.
template <class Sequence>
std::string hazard_of(Sequence&& sequence, Check expected) {
  try {
    sequence();
  } catch (const HazardError& e) {
    EXPECT_STREQ(check_name(e.check), check_name(expected)) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind(std::string(check_name(e.check)) + ": ", 0), 0u) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no " << check_name(expected) << " was reported";
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<float> iota_floats(float first) {
  std::vector<float> v(kFloats);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Writes `values` into pinned memory, declared to the device first.
void write_pinned(Device& device, float* pinned, const std::vector<float>& values) {
  device.host_write(pinned, values.size() * sizeof(float));
  std::memcpy(pinned, values.data(), values.size() * sizeof(float));
}

// Device floats, copied into pageable memory (synchronous: no synchronization needed).
std::vector<float> read_device(Device& device, const float* src, Stream stream, size_t count = kFloats) {
  std::vector<float> host(count);
  device.memcpy_async(host.data(), src, count * sizeof(float), CopyKind::device_to_host, stream);
  return host;
}

bool all_nan(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isnan(x)) return false;
  return true;
}

// A launch that writes 2 * in into out.
void launch_double(Device& device, Stream stream, const float* in, float* out, const std::string& name = "double") {
  device.launch(stream, name, {{in, kBytes}}, {{out, kBytes}}, [in, out] {
    for (size_t i = 0; i < kFloats; ++i) out[i] = 2 * in[i];
  });
}

// --- memory ----------------------------------------------------------------------------------

TEST(EmuMemory, AllocationsAreAlignedAndFreshDeviceMemoryReadsAsNaN) {
  Device device;
  Stream stream = device.stream_create();
  auto* a = static_cast<float*>(device.device_malloc(kBytes + 4));
  auto* b = static_cast<float*>(device.device_malloc(3));
  void* pinned = device.host_alloc(100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 256, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pinned) % 256, 0u);
  EXPECT_TRUE(all_nan(read_device(device, a, stream)));
  EXPECT_EQ(device.device_malloc(0), nullptr);
  device.device_free(nullptr);  // as cudaFree(nullptr)
  device.device_free(a);
  device.device_free(b);
  device.host_free(pinned);
}

// --- lazy, stream-ordered execution ----------------------------------------------------------

TEST(EmuStreams, NothingRunsUntilASynchronizationPoint) {
  Device device;
  Stream stream = device.stream_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* in = static_cast<float*>(device.device_malloc(kBytes));
  auto* out = static_cast<float*>(device.device_malloc(kBytes));
  write_pinned(device, pinned, iota_floats(1));
  device.memcpy_async(in, pinned, kBytes, CopyKind::host_to_device, stream);
  launch_double(device, stream, in, out);
  EXPECT_EQ(device.queued_operations(stream), 2u);
  EXPECT_TRUE(std::isnan(in[0]));  // emulated device memory, looked at directly: still unwritten
  EXPECT_TRUE(std::isnan(out[0]));
  device.stream_synchronize(stream);
  EXPECT_EQ(device.queued_operations(stream), 0u);
  EXPECT_EQ(in[3], 4.0f);
  EXPECT_EQ(out[3], 8.0f);
}

TEST(EmuStreams, WorkRunsInStreamOrderAndASynchronizationRunsOnlyWhatItWaitsFor) {
  Device device;
  Stream first = device.stream_create(), second = device.stream_create();
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  std::vector<int> order;
  for (int i = 0; i < 3; ++i)
    device.launch(first, "step", {}, {{buffer, kBytes}}, [&order, i] { order.push_back(i); });
  device.launch(second, "other", {}, {}, [&order] { order.push_back(100); });
  device.stream_synchronize(first);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(device.queued_operations(second), 1u);  // nothing waited for it
  device.synchronize();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 100}));
}

TEST(EmuStreams, AnEventOrdersStreamsAndRunsOnlyUpToItsRecord) {
  Device device;
  Stream producer = device.stream_create(), consumer = device.stream_create();
  Event ready = device.event_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* in = static_cast<float*>(device.device_malloc(kBytes));
  auto* out = static_cast<float*>(device.device_malloc(kBytes));
  auto* later = static_cast<float*>(device.device_malloc(kBytes));
  write_pinned(device, pinned, iota_floats(1));
  device.memcpy_async(in, pinned, kBytes, CopyKind::host_to_device, producer);
  device.event_record(ready, producer);
  device.memset_async(later, 0, kBytes, producer);  // after the record: not waited for
  device.stream_wait_event(consumer, ready);
  launch_double(device, consumer, in, out);
  device.stream_synchronize(consumer);
  EXPECT_EQ(read_device(device, out, consumer), [] {
    std::vector<float> v = iota_floats(1);
    for (float& x : v) x *= 2;
    return v;
  }());
  EXPECT_EQ(device.queued_operations(producer), 1u);
  EXPECT_TRUE(std::isnan(later[0]));
  device.event_synchronize(ready);  // already reached: runs nothing more
  EXPECT_EQ(device.queued_operations(producer), 1u);
}

TEST(EmuStreams, ReRecordingAnEventReplacesItsPosition) {
  Device device;
  Stream stream = device.stream_create();
  Event event = device.event_create();
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  int runs = 0;
  device.event_record(event, stream);
  device.launch(stream, "a", {}, {{buffer, kBytes}}, [&runs] { ++runs; });
  device.event_synchronize(event);
  EXPECT_EQ(runs, 0);  // recorded before the launch
  device.event_record(event, stream);
  device.event_synchronize(event);
  EXPECT_EQ(runs, 1);
}

TEST(EmuStreams, WaitingForANeverRecordedEventDoesNothing) {
  Device device;
  Stream stream = device.stream_create();
  Event never = device.event_create();
  device.stream_wait_event(stream, never);
  device.event_synchronize(never);
  EXPECT_EQ(device.queued_operations(stream), 0u);
}

TEST(EmuStreams, DeviceToHostIntoPinnedMemoryThenSynchronizeGivesTheData) {
  Device device;
  Stream stream = device.stream_create();
  auto* pinned_in = static_cast<float*>(device.host_alloc(kBytes));
  auto* pinned_out = static_cast<float*>(device.host_alloc(kBytes));
  auto* in = static_cast<float*>(device.device_malloc(kBytes));
  auto* out = static_cast<float*>(device.device_malloc(kBytes));
  write_pinned(device, pinned_in, iota_floats(0));
  device.memcpy_async(in, pinned_in, kBytes, CopyKind::host_to_device, stream);
  launch_double(device, stream, in, out);
  device.memcpy_async(pinned_out, out, kBytes, CopyKind::device_to_host, stream);
  EXPECT_TRUE(std::isnan(pinned_out[1]));  // queued, not run
  device.stream_synchronize(stream);
  device.host_read(pinned_out, kBytes);
  EXPECT_EQ(pinned_out[5], 10.0f);
}

TEST(EmuStreams, MemsetAndDeviceToDeviceCopies) {
  Device device;
  Stream stream = device.stream_create();
  auto* a = static_cast<unsigned char*>(device.device_malloc(64));
  auto* b = static_cast<unsigned char*>(device.device_malloc(64));
  device.memset_async(a, 0x2a, 64, stream, "fill");
  device.memset_async(a, 0, 8, stream);
  device.memcpy_async(b, a, 64, CopyKind::device_to_device, stream);
  std::vector<unsigned char> host(64);
  device.memcpy_async(host.data(), b, 64, CopyKind::device_to_host, stream);
  EXPECT_EQ(host[0], 0);
  EXPECT_EQ(host[7], 0);
  EXPECT_EQ(host[8], 0x2a);
  EXPECT_EQ(host[63], 0x2a);
}

TEST(EmuStreams, PageableCopiesAreSynchronousWithTheHost) {
  Device device;
  Stream stream = device.stream_create();
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  std::vector<float> source = iota_floats(1);
  device.memcpy_async(buffer, source.data(), kBytes, CopyKind::host_to_device, stream);
  source.assign(kFloats, -1.0f);  // the source was read when the copy was queued
  EXPECT_EQ(device.queued_operations(stream), 1u);  // the transfer itself is queued
  std::vector<float> back(kFloats);
  device.memcpy_async(back.data(), buffer, kBytes, CopyKind::device_to_host, stream);
  EXPECT_EQ(back, iota_floats(1));  // on return, without a synchronization
  EXPECT_EQ(device.queued_operations(stream), 0u);
  device.device_free(buffer);  // the host is ordered after both copies
}

TEST(EmuStreams, ADestroyedStreamsQueuedWorkStillRuns) {
  Device device;
  Stream stream = device.stream_create();
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  int runs = 0;
  device.launch(stream, "last", {}, {{buffer, kBytes}}, [&runs] { ++runs; });
  device.stream_destroy(stream);
  EXPECT_EQ(runs, 0);
  device.synchronize();
  EXPECT_EQ(runs, 1);
  device.device_free(buffer);
}

TEST(EmuStreams, WithoutTheOrderingChecksAMissingWaitGivesStaleData) {
  Device device(DeviceOptions{false});
  Stream copy = device.stream_create(), compute = device.stream_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* in = static_cast<float*>(device.device_malloc(kBytes));
  auto* out = static_cast<float*>(device.device_malloc(kBytes));
  write_pinned(device, pinned, iota_floats(1));
  device.memcpy_async(in, pinned, kBytes, CopyKind::host_to_device, copy);
  launch_double(device, compute, in, out);  // no wait for the copy
  device.stream_synchronize(compute);
  EXPECT_TRUE(all_nan(read_device(device, out, compute)));  // the copy had not run
}

// --- graph capture ---------------------------------------------------------------------------

struct CapturedPipeline {
  Device& device;
  Stream stream;
  float* pinned_in;
  float* pinned_out;
  float* in;
  float* out;
  explicit CapturedPipeline(Device& d)
      : device(d),
        stream(d.stream_create()),
        pinned_in(static_cast<float*>(d.host_alloc(kBytes))),
        pinned_out(static_cast<float*>(d.host_alloc(kBytes))),
        in(static_cast<float*>(d.device_malloc(kBytes))),
        out(static_cast<float*>(d.device_malloc(kBytes))) {}
  void enqueue() {
    device.memcpy_async(in, pinned_in, kBytes, CopyKind::host_to_device, stream, "input");
    launch_double(device, stream, in, out);
    device.memcpy_async(pinned_out, out, kBytes, CopyKind::device_to_host, stream, "output");
  }
};

TEST(EmuGraphs, CaptureRecordsWithoutQueueingAndReplaysTheCapturedPointers) {
  Device device;
  CapturedPipeline p(device);
  device.begin_capture(p.stream);
  EXPECT_TRUE(device.capturing(p.stream));
  p.enqueue();
  EXPECT_EQ(device.queued_operations(p.stream), 0u);
  Graph graph = device.end_capture(p.stream);
  EXPECT_FALSE(device.capturing(p.stream));
  GraphExec exec = device.instantiate(graph);
  device.graph_destroy(graph);  // the exec does not need it
  for (float first : {1.0f, 5.0f}) {  // new contents at the captured addresses, copied by the replay
    write_pinned(device, p.pinned_in, iota_floats(first));
    device.graph_launch(exec, p.stream);
    EXPECT_EQ(device.queued_operations(p.stream), 3u);
    device.stream_synchronize(p.stream);
    device.host_read(p.pinned_out, kBytes);
    EXPECT_EQ(p.pinned_out[0], 2 * first);
    EXPECT_EQ(p.pinned_out[kFloats - 1], 2 * (first + kFloats - 1));
  }
  device.graph_exec_destroy(exec);
}

// A capture the executor must fall back from: the forbidden call throws CaptureError, so does
// end_capture, and the stream is usable afterwards.
template <class Forbidden>
void expect_capture_invalidated(Device& device, Stream stream, Forbidden&& forbidden, const std::string& reason) {
  device.begin_capture(stream);
  EXPECT_THROW(forbidden(), CaptureError);
  try {
    device.end_capture(stream);
    ADD_FAILURE() << "end_capture succeeded after " << reason;
  } catch (const CaptureError& e) {
    EXPECT_TRUE(contains(e.what(), "invalidated by " + reason)) << e.what();
  }
  EXPECT_FALSE(device.capturing(stream));
  device.stream_synchronize(stream);  // usable again
}

TEST(EmuGraphs, CallsACaptureCannotHoldInvalidateIt) {
  Device device;
  Stream stream = device.stream_create(), other = device.stream_create();
  Event outside = device.event_create(), inside = device.event_create();
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  std::vector<float> pageable(kFloats);
  device.event_record(outside, other);
  expect_capture_invalidated(device, stream, [&] { device.stream_synchronize(stream); }, "stream_synchronize");
  expect_capture_invalidated(device, stream, [&] { device.synchronize(); }, "synchronize");
  expect_capture_invalidated(device, stream, [&] { device.stream_wait_event(stream, outside); }, "stream_wait_event");
  expect_capture_invalidated(device, stream, [&] { device.event_record(inside, stream); }, "event_record");
  expect_capture_invalidated(
      device, stream,
      [&] { device.memcpy_async(buffer, pageable.data(), kBytes, CopyKind::host_to_device, stream); },
      "copy host_to_device");
  expect_capture_invalidated(
      device, stream,
      [&] { device.memcpy_async(pageable.data(), buffer, kBytes, CopyKind::device_to_host, stream); },
      "copy device_to_host");
  // Work after the invalidating call fails too, until end_capture.
  device.begin_capture(stream);
  EXPECT_THROW(device.stream_synchronize(stream), CaptureError);
  EXPECT_THROW(device.memset_async(buffer, 0, kBytes, stream), CaptureError);
  EXPECT_THROW(device.end_capture(stream), CaptureError);
  // Another stream may synchronize during a capture; a wait on a never-recorded event is allowed.
  device.begin_capture(stream);
  device.stream_synchronize(other);
  Event never = device.event_create();
  device.stream_wait_event(stream, never);
  device.memset_async(buffer, 0, kBytes, stream);
  device.instantiate(device.end_capture(stream));
}

TEST(EmuGraphs, FailNextCaptureFailsOnlyTheNextCapture) {
  Device device;
  CapturedPipeline p(device);
  device.fail_next_capture("testing the fallback");
  device.begin_capture(p.stream);
  p.enqueue();
  try {
    device.end_capture(p.stream);
    ADD_FAILURE() << "the capture did not fail";
  } catch (const CaptureError& e) {
    EXPECT_TRUE(contains(e.what(), "testing the fallback")) << e.what();
  }
  EXPECT_EQ(device.queued_operations(p.stream), 0u);  // the failed capture queued nothing
  device.begin_capture(p.stream);
  p.enqueue();
  device.instantiate(device.end_capture(p.stream));
}

TEST(EmuGraphs, TheEnvironmentVariableFailsEveryCapture) {
  Device device;
  Stream stream = device.stream_create();
  ASSERT_EQ(setenv("PARITY_EMU_FAIL_CAPTURE", "1", 1), 0);
  for (int i = 0; i < 2; ++i) {
    device.begin_capture(stream);
    EXPECT_THROW(device.end_capture(stream), CaptureError);
  }
  ASSERT_EQ(setenv("PARITY_EMU_FAIL_CAPTURE", "0", 1), 0);
  device.begin_capture(stream);
  device.end_capture(stream);
  unsetenv("PARITY_EMU_FAIL_CAPTURE");
}

TEST(EmuGraphs, AGraphLaunchedIntoACaptureJoinsIt) {
  Device device;
  CapturedPipeline p(device);
  device.begin_capture(p.stream);
  p.enqueue();
  GraphExec inner = device.instantiate(device.end_capture(p.stream));
  device.begin_capture(p.stream);
  device.graph_launch(inner, p.stream);
  EXPECT_EQ(device.queued_operations(p.stream), 0u);
  GraphExec outer = device.instantiate(device.end_capture(p.stream));
  write_pinned(device, p.pinned_in, iota_floats(3));
  device.graph_launch(outer, p.stream);
  EXPECT_EQ(device.queued_operations(p.stream), 3u);
  device.stream_synchronize(p.stream);
  device.host_read(p.pinned_out, kBytes);
  EXPECT_EQ(p.pinned_out[0], 6.0f);
}

TEST(EmuGraphs, ReplaysAreCheckedAsTheyAreQueuedAndCapturesCheckTheirPointers) {
  Device device;
  CapturedPipeline p(device);
  Stream other = device.stream_create();
  device.begin_capture(p.stream);
  // A pointer of the wrong kind is reported at capture, and the capture stays valid.
  hazard_of([&] { device.launch(p.stream, "bad", {{p.pinned_in, kBytes}}, {}, [] {}); },
            Check::host_pointer_as_device);
  p.enqueue();
  GraphExec exec = device.instantiate(device.end_capture(p.stream));
  // Broken: another stream writes the graph's input buffer, and the replay does not wait for it.
  device.memset_async(p.in, 0, kBytes, other, "clear");
  const std::string message = hazard_of([&] { device.graph_launch(exec, p.stream); }, Check::unordered_write);
  EXPECT_TRUE(contains(message, "copy host_to_device 'input' (graph exec 1 replay) on stream 1 writes device "
                                "allocation #3 [0, 64) last written by memset 'clear' on stream 2"))
      << message;
  // Corrected: the replay's stream waits for it.
  Event cleared = device.event_create();
  device.event_record(cleared, other);
  device.stream_wait_event(p.stream, cleared);
  device.graph_launch(exec, p.stream);
}

// --- the checks: each broken sequence next to its correction ---------------------------------

TEST(EmuChecks, UnorderedRead) {
  Device device;
  Stream copy = device.stream_create(), compute = device.stream_create();
  auto* pinned = static_cast<float*>(device.host_alloc(2048));
  auto* in = static_cast<float*>(device.device_malloc(2048));
  auto* out = static_cast<float*>(device.device_malloc(2048));
  device.memcpy_async(in, pinned, 2048, CopyKind::host_to_device, copy, "x");
  // Broken: the launch reads [256, 1280) of what the copy stream writes, with no event.
  const char* x = reinterpret_cast<const char*>(in) + 256;
  const std::string message = hazard_of(
      [&] { device.launch(compute, "conv1.fwd", {{x, 1024}}, {{out, 1024}}, [] {}); }, Check::unordered_read);
  EXPECT_TRUE(contains(message,
                       "launch 'conv1.fwd' on stream 2 reads device allocation #2 [256, 1280) last written by copy "
                       "host_to_device 'x' on stream 1 with no event between them"))
      << message;
  EXPECT_EQ(device.queued_operations(compute), 0u);  // a failed check queues nothing
  // Also a copy's source.
  hazard_of([&] { device.memcpy_async(out, in, 64, CopyKind::device_to_device, compute); }, Check::unordered_read);
  // Corrected: an event between them.
  Event ready = device.event_create();
  device.event_record(ready, copy);
  device.stream_wait_event(compute, ready);
  device.launch(compute, "conv1.fwd", {{x, 1024}}, {{out, 1024}}, [] {});
  device.memcpy_async(out, in, 64, CopyKind::device_to_device, compute);
  // Or the host synchronized with the copy before queueing the launch.
  auto* other = device.device_malloc(2048);
  device.memcpy_async(other, pinned, 2048, CopyKind::host_to_device, copy, "y");
  device.stream_synchronize(copy);
  device.launch(device.stream_create(), "reads after the host's synchronization", {{other, 2048}}, {}, [] {});
}

TEST(EmuChecks, UnorderedWriteAfterWrite) {
  Device device;
  Stream a = device.stream_create(), b = device.stream_create();
  auto* buffer = device.device_malloc(kBytes);
  device.memset_async(buffer, 0, kBytes, a, "zero");
  const std::string message =
      hazard_of([&] { device.memset_async(buffer, 1, 8, b, "ones"); }, Check::unordered_write);
  EXPECT_TRUE(contains(message, "memset 'ones' on stream 2 writes device allocation #1 [0, 8) last written by "
                                "memset 'zero' on stream 1 with no event between them"))
      << message;
  Event zeroed = device.event_create();
  device.event_record(zeroed, a);
  device.stream_wait_event(b, zeroed);
  device.memset_async(buffer, 1, 8, b, "ones");
}

TEST(EmuChecks, UnorderedWriteAfterRead) {
  Device device;
  Stream copy = device.stream_create(), compute = device.stream_create();
  Event ready = device.event_create(), done = device.event_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* slot = static_cast<float*>(device.device_malloc(kBytes));
  auto* out = static_cast<float*>(device.device_malloc(kBytes));
  device.memcpy_async(slot, pinned, kBytes, CopyKind::host_to_device, copy);
  device.event_record(ready, copy);
  device.stream_wait_event(compute, ready);
  launch_double(device, compute, slot, out, "step");
  // Broken: the copy stream overwrites the slot the step may still be reading.
  const std::string message = hazard_of(
      [&] { device.memcpy_async(slot, pinned, kBytes, CopyKind::host_to_device, copy, "next"); },
      Check::unordered_write);
  EXPECT_TRUE(contains(message, "copy host_to_device 'next' on stream 1 writes device allocation #2 [0, 64) that "
                                "launch 'step' on stream 2 reads, with no event between them"))
      << message;
  // Corrected: the copy stream waits for the step.
  device.event_record(done, compute);
  device.stream_wait_event(copy, done);
  device.memcpy_async(slot, pinned, kBytes, CopyKind::host_to_device, copy, "next");
}

TEST(EmuChecks, HostReadUnsynchronized) {
  Device device;
  Stream stream = device.stream_create();
  Event copied = device.event_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* result = static_cast<float*>(device.device_malloc(kBytes));
  device.memset_async(result, 0, kBytes, stream);
  device.memcpy_async(pinned, result, kBytes, CopyKind::device_to_host, stream, "loss");
  const std::string message = hazard_of([&] { device.host_read(pinned, kBytes); }, Check::host_read_unsynchronized);
  EXPECT_TRUE(contains(message, "host_read of pinned allocation #1 [0, 64) last written by copy device_to_host "
                                "'loss' on stream 1, which the host has not synchronized with"))
      << message;
  device.event_record(copied, stream);
  device.event_synchronize(copied);
  device.host_read(pinned, kBytes);
  EXPECT_EQ(pinned[0], 0.0f);
}

TEST(EmuChecks, HostWriteWhileQueued) {
  Device device;
  Stream stream = device.stream_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* slot = static_cast<float*>(device.device_malloc(kBytes));
  write_pinned(device, pinned, iota_floats(0));
  device.memcpy_async(slot, pinned, kBytes, CopyKind::host_to_device, stream, "batch");
  const std::string message = hazard_of([&] { device.host_write(pinned + 4, 8); }, Check::host_write_while_queued);
  EXPECT_TRUE(contains(message, "host_write of pinned allocation #1 [16, 24) while copy host_to_device 'batch' on "
                                "stream 1 may still read it"))
      << message;
  // A pinned buffer a queued device_to_host copy writes, too.
  device.memcpy_async(pinned, slot, kBytes, CopyKind::device_to_host, stream);
  hazard_of([&] { device.host_write(pinned, kBytes); }, Check::host_write_while_queued);
  device.stream_synchronize(stream);
  device.host_write(pinned, kBytes);
}

TEST(EmuChecks, FreeWhileQueued) {
  Device device;
  Stream stream = device.stream_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  device.memcpy_async(buffer, pinned, kBytes, CopyKind::host_to_device, stream, "weights");
  const std::string message = hazard_of([&] { device.device_free(buffer); }, Check::free_while_queued);
  EXPECT_TRUE(contains(message, "device_free of device allocation #2 while copy host_to_device 'weights' on stream "
                                "1 may still use [0, 64)"))
      << message;
  hazard_of([&] { device.host_free(pinned); }, Check::free_while_queued);
  // An event recorded after the work is not enough: the host must wait for it.
  Stream other = device.stream_create();
  Event ran = device.event_create();
  auto* scratch = device.device_malloc(kBytes);
  device.memset_async(scratch, 0, kBytes, other);
  device.event_record(ran, other);
  hazard_of([&] { device.device_free(scratch); }, Check::free_while_queued);
  device.event_synchronize(ran);
  device.device_free(scratch);
  device.stream_synchronize(stream);
  device.device_free(buffer);
  device.host_free(pinned);
}

TEST(EmuChecks, FreeWhileQueuedHoldsWithoutTheOrderingChecks) {
  Device device(DeviceOptions{false});
  Stream stream = device.stream_create();
  auto* buffer = device.device_malloc(kBytes);
  device.memset_async(buffer, 0, kBytes, stream);
  hazard_of([&] { device.device_free(buffer); }, Check::free_while_queued);
}

TEST(EmuChecks, StaleGraphPointer) {
  Device device;
  CapturedPipeline p(device);
  device.begin_capture(p.stream);
  p.enqueue();
  GraphExec exec = device.instantiate(device.end_capture(p.stream));
  device.graph_launch(exec, p.stream);  // corrected: the captured buffers are alive
  device.stream_synchronize(p.stream);
  // Broken: the input buffer freed, then allocated again (at the same address: freed blocks are
  // reused first, so a stale pointer points into a live allocation).
  device.device_free(p.in);
  const std::string freed = hazard_of([&] { device.graph_launch(exec, p.stream); }, Check::stale_graph_pointer);
  EXPECT_TRUE(contains(freed, "copy host_to_device 'input' (graph exec 1 replay) on stream 1 was captured with"))
      << freed;
  EXPECT_TRUE(contains(freed, "[0, 64) of device allocation #3, which was freed")) << freed;
  EXPECT_EQ(device.queued_operations(p.stream), 0u);  // nothing of the graph was queued
  void* again = device.device_malloc(kBytes);
  ASSERT_EQ(again, p.in);
  const std::string reused = hazard_of([&] { device.graph_launch(exec, p.stream); }, Check::stale_graph_pointer);
  EXPECT_TRUE(contains(reused, "of device allocation #3, which was freed; the address now belongs to device "
                               "allocation #5"))
      << reused;
}

TEST(EmuChecks, PointerRoles) {
  Device device;
  Stream stream = device.stream_create();
  auto* pinned = static_cast<float*>(device.host_alloc(kBytes));
  auto* buffer = static_cast<float*>(device.device_malloc(kBytes));
  std::vector<float> pageable(kFloats);
  // host_pointer_as_device
  hazard_of([&] { device.memcpy_async(pinned, pinned, kBytes, CopyKind::host_to_device, stream); },
            Check::host_pointer_as_device);
  hazard_of([&] { device.launch(stream, "k", {{pinned, kBytes}}, {}, [] {}); }, Check::host_pointer_as_device);
  hazard_of([&] { device.device_free(pinned); }, Check::host_pointer_as_device);
  // device_pointer_as_host
  hazard_of([&] { device.memcpy_async(buffer, buffer, kBytes, CopyKind::host_to_device, stream); },
            Check::device_pointer_as_host);
  hazard_of([&] { device.host_read(buffer, kBytes); }, Check::device_pointer_as_host);
  hazard_of([&] { device.host_free(buffer); }, Check::device_pointer_as_host);
  // out_of_bounds
  const std::string past = hazard_of(
      [&] { device.memcpy_async(buffer + 8, pinned, kBytes, CopyKind::host_to_device, stream); },
      Check::out_of_bounds);
  EXPECT_TRUE(contains(past, "destination [32, 96) of device allocation #2 runs past its 64 bytes")) << past;
  hazard_of([&] { device.host_write(pinned + 1, kBytes); }, Check::out_of_bounds);
  // unknown_pointer
  hazard_of([&] { device.memset_async(pageable.data(), 0, kBytes, stream); }, Check::unknown_pointer);
  hazard_of([&] { device.device_free(buffer + 1); }, Check::unknown_pointer);
  // use_after_free
  auto* freed = static_cast<float*>(device.device_malloc(kBytes));
  device.device_free(freed);
  hazard_of([&] { device.memset_async(freed, 0, kBytes, stream); }, Check::use_after_free);
  hazard_of([&] { device.device_free(freed); }, Check::use_after_free);
  auto* freed_pinned = static_cast<float*>(device.host_alloc(kBytes));
  device.host_free(freed_pinned);
  hazard_of([&] { device.memcpy_async(buffer, freed_pinned, kBytes, CopyKind::host_to_device, stream); },
            Check::use_after_free);
  hazard_of([&] { device.host_free(freed_pinned); }, Check::use_after_free);
  // Corrected: each role gets the memory it needs; pageable host memory where host memory is needed.
  device.memcpy_async(buffer, pinned, kBytes, CopyKind::host_to_device, stream);
  device.memcpy_async(pageable.data(), buffer, kBytes, CopyKind::device_to_host, stream);
  device.host_read(pageable.data(), kBytes);  // untracked
  EXPECT_EQ(device.queued_operations(stream), 0u);
}

TEST(EmuChecks, CaptureMisuse) {
  Device device;
  Stream stream = device.stream_create();
  hazard_of([&] { device.end_capture(stream); }, Check::capture_misuse);
  device.begin_capture(stream);
  hazard_of([&] { device.begin_capture(stream); }, Check::capture_misuse);
  hazard_of([&] { device.stream_destroy(stream); }, Check::capture_misuse);
  device.end_capture(stream);
  device.stream_destroy(stream);
}

TEST(EmuChecks, InvalidHandles) {
  Device device;
  Stream stream = device.stream_create();
  Event event = device.event_create();
  device.stream_destroy(stream);
  device.event_destroy(event);
  hazard_of([&] { device.stream_synchronize(stream); }, Check::invalid_handle);
  hazard_of([&] { device.event_record(event, device.stream_create()); }, Check::invalid_handle);
  hazard_of([&] { device.graph_launch(GraphExec{7}, device.stream_create()); }, Check::invalid_handle);
  hazard_of([&] { device.instantiate(Graph{}); }, Check::invalid_handle);
}

TEST(EmuChecks, ALaunchBodyMustNotCallTheRuntime) {
  Device device;
  Stream stream = device.stream_create();
  device.launch(stream, "calls back", {}, {}, [&] { device.stream_synchronize(stream); });
  hazard_of([&] { device.stream_synchronize(stream); }, Check::reentrant_call);
  device.launch(stream, "fine", {}, {}, [] {});  // the runtime is usable after it
  device.stream_synchronize(stream);
}

// --- the CUDA executor's double-buffered inputs ----------------------------------------------

// backends/cuda/cuda_executable.cpp's pattern: the copy stream fills input slot s from the slot's
// pinned memory and records inputs_ready[s]; the compute stream waits for it, runs the step and
// records step_done[s]; before the slot is filled again the copy stream waits for step_done[s]
// and the host for inputs_ready[s] (the pinned memory's previous transfer). `omit` drops one wait.
class DoubleBufferedSteps {
 public:
  enum class Omit { nothing, host_waits_for_inputs_ready, copy_waits_for_step_done, compute_waits_for_inputs_ready };

  DoubleBufferedSteps(Device& device, Omit omit) : device_(device), omit_(omit) {
    copy_ = device.stream_create();
    compute_ = device.stream_create();
    for (int s = 0; s < 2; ++s) {
      slot_[s] = static_cast<float*>(device.device_malloc(kBytes));
      pinned_[s] = static_cast<float*>(device.host_alloc(kBytes));
      inputs_ready_[s] = device.event_create();
      step_done_[s] = device.event_create();
    }
    sum_ = static_cast<float*>(device.device_malloc(kBytes));
    device.memset_async(sum_, 0, kBytes, compute_, "zero the sum");
  }

  void write_input(const std::vector<float>& batch) {
    const int s = fill_slot_;
    open_slot(s);
    write_pinned(device_, pinned_[s], batch);
    device_.memcpy_async(slot_[s], pinned_[s], kBytes, CopyKind::host_to_device, copy_, "input");
  }

  void execute() {
    const int s = fill_slot_;
    device_.event_record(inputs_ready_[s], copy_);
    if (omit_ != Omit::compute_waits_for_inputs_ready) device_.stream_wait_event(compute_, inputs_ready_[s]);
    const float* in = slot_[s];
    float* sum = sum_;
    device_.launch(compute_, "accumulate", {{in, kBytes}, {sum, kBytes}}, {{sum, kBytes}}, [in, sum] {
      for (size_t i = 0; i < kFloats; ++i) sum[i] += in[i];
    });
    device_.event_record(step_done_[s], compute_);
    fill_slot_ = s ^ 1;
    slot_open_[fill_slot_] = false;
  }

  std::vector<float> sum() {
    device_.stream_synchronize(compute_);
    return read_device(device_, sum_, compute_);
  }

 private:
  void open_slot(int s) {
    if (slot_open_[s]) return;
    if (omit_ != Omit::host_waits_for_inputs_ready) device_.event_synchronize(inputs_ready_[s]);
    if (omit_ != Omit::copy_waits_for_step_done) device_.stream_wait_event(copy_, step_done_[s]);
    slot_open_[s] = true;
  }

  Device& device_;
  Omit omit_;
  Stream copy_, compute_;
  float* slot_[2];
  float* pinned_[2];
  float* sum_;
  Event inputs_ready_[2], step_done_[2];
  int fill_slot_ = 0;
  bool slot_open_[2] = {false, false};
};

constexpr int kSteps = 5;

// Steps of batches iota(10 * step); returns the sum the device computed.
std::vector<float> run_steps(DoubleBufferedSteps& steps) {
  for (int step = 0; step < kSteps; ++step) {
    steps.write_input(iota_floats(10.0f * step));
    steps.execute();
  }
  return steps.sum();
}

std::vector<float> expected_sum() {
  std::vector<float> sum(kFloats, 0.0f);
  for (int step = 0; step < kSteps; ++step)
    for (size_t i = 0; i < kFloats; ++i) sum[i] += 10.0f * step + static_cast<float>(i);
  return sum;
}

TEST(EmuDoubleBuffer, WithEveryWaitTheStepsAreOrderedAndCorrect) {
  Device device;
  DoubleBufferedSteps steps(device, DoubleBufferedSteps::Omit::nothing);
  EXPECT_EQ(run_steps(steps), expected_sum());
}

TEST(EmuDoubleBuffer, WithoutTheHostWaitingForInputsReadyThePinnedBufferIsRewrittenWhileQueued) {
  Device device;
  DoubleBufferedSteps steps(device, DoubleBufferedSteps::Omit::host_waits_for_inputs_ready);
  const std::string message = hazard_of([&] { run_steps(steps); }, Check::host_write_while_queued);
  EXPECT_TRUE(contains(message, "copy host_to_device 'input' on stream 1 may still read it")) << message;
}

TEST(EmuDoubleBuffer, WithoutTheCopyStreamWaitingForStepDoneTheSlotIsOverwrittenWhileRead) {
  Device device;
  DoubleBufferedSteps steps(device, DoubleBufferedSteps::Omit::copy_waits_for_step_done);
  const std::string message = hazard_of([&] { run_steps(steps); }, Check::unordered_write);
  EXPECT_TRUE(contains(message, "that launch 'accumulate' on stream 2 reads, with no event between them")) << message;
}

TEST(EmuDoubleBuffer, WithoutTheComputeStreamWaitingForInputsReadyTheStepReadsAnUnfinishedCopy) {
  Device device;
  DoubleBufferedSteps steps(device, DoubleBufferedSteps::Omit::compute_waits_for_inputs_ready);
  const std::string message = hazard_of([&] { run_steps(steps); }, Check::unordered_read);
  EXPECT_TRUE(contains(message, "launch 'accumulate' on stream 2 reads device allocation #1 [0, 64) last written "
                                "by copy host_to_device 'input' on stream 1 with no event between them"))
      << message;
}

TEST(EmuDoubleBuffer, WithoutTheChecksAMissingWaitReallyGivesAWrongSum) {
  Device device(DeviceOptions{false});
  DoubleBufferedSteps steps(device, DoubleBufferedSteps::Omit::compute_waits_for_inputs_ready);
  EXPECT_NE(run_steps(steps), expected_sum());
}

}  // namespace
}  // namespace emu
}  // namespace parity
