// dist/data_parallel.h — data-parallel training over a Communicator, as DataParallel
// (parity/trainer.h) hands it to run_training: the parameters' gradients grouped into buckets
// in the order the backward produces them, each bucket's all-reduce started by a node hook
// (parity/backend.h) right after the node that produces its last gradient and waited for right
// before the first node that reads one, and rank 0's buffers broadcast after every step. Host
// memory goes through the Communicator (MPI); device memory through DeviceCollectives (NCCL).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/device_collectives.h"
#include "parity/graph.h"
#include "parity/trainer.h"

namespace parity {

// One bucket of a training plan's gradients.
struct GradientBucket {
  std::vector<int32_t> values;  // plan value indices of the gradients, in the order they are produced
  int64_t floats = 0;           // their elements together
  int32_t ready_after = -1;     // the node that produces the last of them
  int32_t needed_before = -1;   // the first node that reads any of them (an optimizer or clipping node)
};

// The buckets of the gradients `gradients` (plan value indices, f32): filled in the order the
// backward produces them, a bucket closing once it holds `bucket_bytes` or more. bucket_bytes
// <= 0 gives one bucket after the whole backward (the fallback). Error(internal) when a gradient
// is read before the last of its bucket is produced (a plan this does not fit).
std::vector<GradientBucket> plan_gradient_buckets(const Plan& plan, const std::vector<int32_t>& gradients,
                                                  int64_t bucket_bytes);

// What happened when, for tests and benchmarks: a bucket's all-reduce started or was waited for,
// and the last node of the backward finished (AFTER its hook point).
struct AllReduceEvent {
  // progress: a node finished while a bucket was in flight, and the communicator was given the
  // chance to move it on (Communicator::progress); not logged. buffers: rank 0's buffers were
  // broadcast (queued on the device's stream after the step's last node; on the host after the step).
  enum class Kind { start, wait, backward_done, progress, buffers };
  Kind kind = Kind::start;
  int32_t bucket = -1;  // start, wait
  int64_t step = 0;     // the execute it happened in, 1-based, per executable
  double seconds = 0;   // since the DataParallel was made
};

struct DataParallelOptions {
  // Gradient bytes per bucket. 1 MiB: seed-cnn-112's 12.9 MB of gradients make 2 buckets (its
  // first linear layer's weight alone is 12.8 MB), seed-cnn's 0.83 MB one. <= 0: one bucket
  // after the whole backward.
  int64_t bucket_bytes = int64_t{1} << 20;
  bool log_events = false;  // record AllReduceEvents (events())
};

class GradientAllReduce;

// DataParallel over `comm`. Without `device`: needs a backend with node hooks and host memory
// (cpu, simt), whose gradients the communicator reduces on the host. With `device` (NCCL over
// `comm`): a GPU backend with node hooks, whose gradients and buffers stay on its device and whose
// stream the collectives are ordered with; `comm` carries the rest (sums of figures, the
// configuration check).
class CommunicatorDataParallel final : public DataParallel {
 public:
  CommunicatorDataParallel(std::unique_ptr<Communicator> comm, DataParallelOptions options = {},
                           std::unique_ptr<DeviceCollectives> device = nullptr);
  ~CommunicatorDataParallel() override;

  int rank() const override { return comm_->rank(); }
  int size() const override { return comm_->size(); }
  int device() const override { return device_ ? device_->device() : 0; }
  TrainingStepExtension step_extension(const ModelSpec& spec) override;
  void before_step(int64_t images, int64_t global_images) override;
  void after_step(Trainer& trainer) override;
  void sum(double* values, int64_t count) override { comm_->allreduce_sum(values, count); }
  void broadcast(void* data, int64_t bytes, int root) override { comm_->broadcast(data, bytes, root); }
  void check_same_configuration(const std::string& description) override;

  Communicator& communicator() { return *comm_; }
  DeviceCollectives* device_collectives() { return device_.get(); }
  const std::vector<AllReduceEvent>& events() const { return events_; }
  // Seconds this rank has spent inside the all-reduce's hooks (packing, starting, waiting,
  // unpacking) since it was made: the communication the backward did not hide.
  double exposed_communication_seconds() const { return exposed_seconds_; }
  // The buckets of the training step compiled for `batch` images (empty before it is compiled).
  std::vector<GradientBucket> buckets(int64_t batch) const;

 private:
  friend class GradientAllReduce;
  std::unique_ptr<Communicator> comm_;
  DataParallelOptions options_;
  std::unique_ptr<DeviceCollectives> device_;
  std::vector<std::unique_ptr<GradientAllReduce>> steps_;  // one per compiled training step
  float scale_ = 1.0f;
  std::vector<AllReduceEvent> events_;
  double start_seconds_ = 0;
  double exposed_seconds_ = 0;
};

}  // namespace parity
