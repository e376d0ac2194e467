// dist/device_collectives.h — the collectives of data-parallel training on device memory (NCCL
// on CUDA): the communicator made from rank 0's unique id, broadcast over the host communicator;
// the device each rank takes; and each gradient bucket's all-reduce on a stream of its own,
// started after the backend's stream has queued the bucket's last gradient and waited for by that
// stream before the first node that reads one. Over the C table of dist/nccl_api.h: the NCCL
// module's, or, in tests, one on the emulated device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/launch_env.h"
#include "dist/nccl_api.h"

namespace parity {

// The device a rank takes among the `device_count` its process sees: with one visible device
// (CUDA_VISIBLE_DEVICES narrowed per rank, as `srun --gpus-per-task=1` does) that one, else its
// local rank. Error(invalid_argument) when no device is visible, or when the node runs more ranks
// than it has devices (NCCL refuses two ranks on one device), naming the counts.
int device_for_rank(const LaunchEnv& env, int device_count);

// count float32 elements at data, in device memory.
struct DeviceSpan {
  void* data = nullptr;
  int64_t count = 0;
};

class DeviceCollectives {
 public:
  // Collective over `host` (every rank constructs it, in the same order as their other calls):
  // picks this rank's device (device_for_rank), broadcasts rank 0's unique id and makes the
  // communicator of host.size() ranks. `api` must outlive this object. Errors: Error(backend)
  // with the library's words.
  DeviceCollectives(const parity_nccl_api& api, Communicator& host, const LaunchEnv& env);
  ~DeviceCollectives();  // finishes the communicator's work, then frees it, its stream and events
  DeviceCollectives(const DeviceCollectives&) = delete;
  DeviceCollectives& operator=(const DeviceCollectives&) = delete;

  int device() const { return device_; }
  std::string describe() const;  // "NCCL 2.28.3, CUDA runtime 13.0, device 1 of 8"

  // Bucket `bucket`'s spans become, in place, the sum over the ranks of scale * span: queued on
  // this object's own stream after the work queued so far on `stream` (the backend's), so that it
  // runs while `stream` goes on with the backward. Returns once queued.
  void start_allreduce(int32_t bucket, const std::vector<DeviceSpan>& spans, float scale, void* stream);
  // `stream`'s work queued from now on waits for bucket's last started all-reduce.
  void wait(int32_t bucket, void* stream);
  // Rank root's bytes at data copied on every rank, queued on `stream`, so ordered with its work.
  void broadcast(void* data, int64_t bytes, int root, void* stream);

 private:
  void check(int status, const char* err) const;
  void* event_for(std::vector<void*>& events, int32_t bucket, void* near);

  const parity_nccl_api& api_;
  int device_ = 0;
  int device_count_ = 0;
  void* comm_ = nullptr;
  void* stream_ = nullptr;     // the all-reduces' stream, made on first use beside the backend's
  std::vector<void*> ready_;   // per bucket: recorded on the backend's stream when it is ready
  std::vector<void*> done_;    // per bucket: recorded on stream_ after its all-reduce
};

// The table of libparity-nccl.so, opened from the plugin folders (plugin_search_folders()) the
// first time and kept. Error(backend) saying what is missing: this parity was built without NCCL,
// or the module, NCCL or the CUDA runtime does not load.
const parity_nccl_api& load_nccl_api();

}  // namespace parity
