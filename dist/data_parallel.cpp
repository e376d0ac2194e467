// dist/data_parallel.cpp — the gradient buckets of a training plan, the node hooks that start and
// wait for their all-reduce on a Communicator, and the buffer broadcast after each step.
#include "dist/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "parity/error.h"

namespace parity {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t numel_of(const parity_value_desc& v) {
  int64_t n = 1;
  for (int32_t i = 0; i < v.rank; ++i) n *= v.dims[i];
  return n;
}

}  // namespace

std::vector<GradientBucket> plan_gradient_buckets(const Plan& plan, const std::vector<int32_t>& gradient_values,
                                                  int64_t bucket_bytes) {
  const auto& values = plan.values();
  const auto& nodes = plan.nodes();
  std::vector<int32_t> producer(values.size(), -1), first_reader(values.size(), std::numeric_limits<int32_t>::max());
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (int32_t k = 0; k < nodes[n].num_outputs; ++k) producer[static_cast<size_t>(nodes[n].outputs[k])] = static_cast<int32_t>(n);
    for (int32_t k = 0; k < nodes[n].num_inputs; ++k) {
      int32_t& first = first_reader[static_cast<size_t>(nodes[n].inputs[k])];
      first = std::min(first, static_cast<int32_t>(n));
    }
  }
  std::vector<int32_t> gradients;
  for (int32_t g : gradient_values) {
    if (g < 0 || static_cast<size_t>(g) >= values.size() || producer[static_cast<size_t>(g)] < 0)
      throw Error(ErrorKind::internal, fmt::format("data parallel: value {} is no gradient the plan computes", g));
    if (values[static_cast<size_t>(g)].dtype != PARITY_F32)
      throw Error(ErrorKind::internal,
                  fmt::format("data parallel: gradient '{}' is not f32", values[static_cast<size_t>(g)].name));
    gradients.push_back(g);
  }
  std::stable_sort(gradients.begin(), gradients.end(),
                   [&](int32_t a, int32_t b) { return producer[static_cast<size_t>(a)] < producer[static_cast<size_t>(b)]; });

  std::vector<GradientBucket> buckets;
  GradientBucket current;
  auto close = [&] {
    if (current.values.empty()) return;
    if (current.ready_after >= current.needed_before)
      throw Error(ErrorKind::internal,
                  fmt::format("data parallel: node {} reads a gradient of a bucket whose last gradient node {} produces",
                              current.needed_before, current.ready_after));
    buckets.push_back(std::move(current));
    current = GradientBucket{};
  };
  for (int32_t g : gradients) {
    const size_t v = static_cast<size_t>(g);
    current.values.push_back(g);
    current.floats += numel_of(values[v]);
    current.ready_after = std::max(current.ready_after, producer[v]);
    current.needed_before = current.needed_before < 0 ? first_reader[v] : std::min(current.needed_before, first_reader[v]);
    if (bucket_bytes > 0 && current.floats * static_cast<int64_t>(sizeof(float)) >= bucket_bytes) close();
  }
  close();
  return buckets;
}

// The all-reduce of one compiled training step: its buckets, their host buffers and the
// addresses of the gradients in the executable, and the hook that runs at each point.
class GradientAllReduce {
 public:
  GradientAllReduce(CommunicatorDataParallel& owner, Executable& exe, const Plan& plan, int64_t batch,
                    const std::vector<int32_t>& gradients, const std::vector<std::string>& buffers)
      : owner_(owner), exe_(exe), batch_(batch) {
    buckets_ = plan_gradient_buckets(plan, gradients, owner.options_.bucket_bytes);
    const auto& values = plan.values();
    const bool on_device = owner.device_ != nullptr;
    for (const GradientBucket& bucket : buckets_) {
      // On the device the gradients are reduced where they are; on the host, packed first.
      buffers_.emplace_back(on_device ? 0 : static_cast<size_t>(bucket.floats));
      std::vector<Gradient> grads;
      for (int32_t v : bucket.values)
        grads.push_back(Gradient{static_cast<float*>(exe.value_address(v)), numel_of(values[static_cast<size_t>(v)])});
      gradients_.push_back(std::move(grads));
    }
    requests_.assign(buckets_.size(), -1);
    for (const std::string& name : buffers)
      for (size_t v = 0; v < values.size(); ++v)
        if (name == values[v].name) {
          broadcast_.push_back(Buffer{exe.value_address(static_cast<int32_t>(v)),
                                      numel_of(values[v]) * static_cast<int64_t>(sizeof(float))});
          break;
        }

    // Points in plan order: a bucket starts AFTER its last gradient's node and is waited for
    // BEFORE the first reader; the log marks the end of the backward (the last gradient made).
    struct Action {
      parity_hook_point point;
      AllReduceEvent::Kind kind;
      int32_t bucket;
    };
    std::vector<Action> actions;
    int32_t last_gradient = -1;
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const int32_t b = static_cast<int32_t>(k);
      actions.push_back({{buckets_[k].ready_after, PARITY_HOOK_AFTER}, AllReduceEvent::Kind::start, b});
      actions.push_back({{buckets_[k].needed_before, PARITY_HOOK_BEFORE}, AllReduceEvent::Kind::wait, b});
      last_gradient = std::max(last_gradient, buckets_[k].ready_after);
    }
    if (last_gradient >= 0)
      actions.push_back({{last_gradient, PARITY_HOOK_AFTER}, AllReduceEvent::Kind::backward_done, -1});
    // On the device, rank 0's buffers are broadcast on the backend's stream after the step's last
    // node, inside the step (the hooks are where the ABI lets work join that stream); NCCL moves
    // its collectives on by itself, so no progress points.
    if (on_device && !broadcast_.empty())
      actions.push_back({{static_cast<int32_t>(plan.nodes().size()) - 1, PARITY_HOOK_AFTER},
                         AllReduceEvent::Kind::buffers, -1});
    // After every other node that runs while a bucket is in flight, the communicator moves it on.
    for (int32_t node = 0; node < static_cast<int32_t>(plan.nodes().size()) && !on_device; ++node) {
      bool in_flight = false, starts_here = false;
      for (const GradientBucket& bucket : buckets_) {
        in_flight = in_flight || (bucket.ready_after < node && node < bucket.needed_before);
        starts_here = starts_here || bucket.ready_after == node;
      }
      if (in_flight && !starts_here) actions.push_back({{node, PARITY_HOOK_AFTER}, AllReduceEvent::Kind::progress, -1});
    }
    std::stable_sort(actions.begin(), actions.end(), [](const Action& a, const Action& b) {
      return int64_t{a.point.node} * 2 + a.point.when < int64_t{b.point.node} * 2 + b.point.when;
    });
    std::vector<parity_hook_point> points;
    for (const Action& a : actions) {
      points.push_back(a.point);
      kinds_.push_back(a.kind);
      bucket_of_point_.push_back(a.bucket);
    }
    if (!points.empty()) exe.set_node_hooks(points, [this](int32_t point, void* stream) { at(point, stream); });
  }

  int64_t batch() const { return batch_; }
  const std::vector<GradientBucket>& buckets() const { return buckets_; }

  // Rank 0's buffers (running statistics) on every rank, on the host after the step (on the
  // device they were broadcast inside it).
  void broadcast_buffers(Communicator& comm) {
    if (owner_.device_) return;
    for (const Buffer& b : broadcast_) comm.broadcast(b.address, b.bytes, 0);
    if (owner_.options_.log_events && !broadcast_.empty())
      owner_.events_.push_back(
          AllReduceEvent{AllReduceEvent::Kind::buffers, -1, executes_, now_seconds() - owner_.start_seconds_});
  }

 private:
  struct Gradient {
    float* data;
    int64_t count;
  };
  struct Buffer {
    void* address;
    int64_t bytes;
  };

  void at(int32_t point, void* stream) {
    if (point == 0) ++executes_;
    const double entered = now_seconds();
    const AllReduceEvent::Kind kind = kinds_[static_cast<size_t>(point)];
    const int32_t b = bucket_of_point_[static_cast<size_t>(point)];
    if (owner_.device_) {
      at_device(kind, b, stream);
    } else {
      at_host(kind, b, stream);
    }
    const double left = now_seconds();
    owner_.exposed_seconds_ += left - entered;
    if (owner_.options_.log_events && kind != AllReduceEvent::Kind::progress)
      owner_.events_.push_back(AllReduceEvent{kind, b, executes_, left - owner_.start_seconds_});
  }

  // The hooks queue the work on the device and return: the time they take is the host's.
  void at_device(AllReduceEvent::Kind kind, int32_t b, void* stream) {
    if (!stream)
      throw Error(ErrorKind::backend,
                  "--distributed nccl reduces device memory, and this backend executes on the host: use --distributed "
                  "mpi with a host backend (cpu, simt)");
    DeviceCollectives& device = *owner_.device_;
    if (kind == AllReduceEvent::Kind::start) {
      std::vector<DeviceSpan> spans;
      for (const Gradient& g : gradients_[static_cast<size_t>(b)]) spans.push_back(DeviceSpan{g.data, g.count});
      // This rank's share of the global batch weights its mean gradient, as on the host.
      device.start_allreduce(b, spans, owner_.scale_, stream);
    } else if (kind == AllReduceEvent::Kind::wait) {
      device.wait(b, stream);
    } else if (kind == AllReduceEvent::Kind::buffers) {
      for (const Buffer& buffer : broadcast_) device.broadcast(buffer.address, buffer.bytes, 0, stream);
    }
  }

  void at_host(AllReduceEvent::Kind kind, int32_t b, void* stream) {
    if (stream)
      throw Error(ErrorKind::backend,
                  "data parallel over MPI reduces host memory: use a host backend (cpu, simt); a GPU backend needs "
                  "--distributed nccl");
    Communicator& comm = *owner_.comm_;
    if (kind == AllReduceEvent::Kind::start) {
      // This rank's mean gradient, weighted by its share of the global batch, so that the sum
      // over the ranks is the mean over the global batch.
      float* out = buffers_[static_cast<size_t>(b)].data();
      const float scale = owner_.scale_;
      for (const Gradient& g : gradients_[static_cast<size_t>(b)]) {
        for (int64_t i = 0; i < g.count; ++i) out[i] = g.data[i] * scale;
        out += g.count;
      }
      requests_[static_cast<size_t>(b)] = comm.start_allreduce_sum(buffers_[static_cast<size_t>(b)].data(),
                                                                   buckets_[static_cast<size_t>(b)].floats);
    } else if (kind == AllReduceEvent::Kind::progress) {
      comm.progress();
    } else if (kind == AllReduceEvent::Kind::wait) {
      comm.wait(requests_[static_cast<size_t>(b)]);
      requests_[static_cast<size_t>(b)] = -1;
      const float* in = buffers_[static_cast<size_t>(b)].data();
      for (const Gradient& g : gradients_[static_cast<size_t>(b)]) {
        std::memcpy(g.data, in, static_cast<size_t>(g.count) * sizeof(float));
        in += g.count;
      }
    }
  }

  CommunicatorDataParallel& owner_;
  Executable& exe_;
  int64_t batch_;
  std::vector<GradientBucket> buckets_;
  std::vector<std::vector<float>> buffers_;
  std::vector<std::vector<Gradient>> gradients_;
  std::vector<int64_t> requests_;
  std::vector<Buffer> broadcast_;
  std::vector<AllReduceEvent::Kind> kinds_;
  std::vector<int32_t> bucket_of_point_;
  int64_t executes_ = 0;
};

CommunicatorDataParallel::CommunicatorDataParallel(std::unique_ptr<Communicator> comm, DataParallelOptions options,
                                                   std::unique_ptr<DeviceCollectives> device)
    : comm_(std::move(comm)), options_(options), device_(std::move(device)), start_seconds_(now_seconds()) {
  if (!comm_) throw Error(ErrorKind::invalid_argument, "data parallel: no communicator");
}

CommunicatorDataParallel::~CommunicatorDataParallel() = default;

TrainingStepExtension CommunicatorDataParallel::step_extension(const ModelSpec& spec) {
  std::vector<std::string> buffers;
  for (const BufferSpec& b : spec.buffers)
    if (!b.step_count) buffers.push_back(b.name);
  TrainingStepExtension e;
  e.keep_gradients = true;
  e.compiled = [this, buffers](Executable& exe, const Plan& plan, int64_t batch, const std::vector<int32_t>& gradients) {
    steps_.push_back(std::make_unique<GradientAllReduce>(*this, exe, plan, batch, gradients, buffers));
  };
  return e;
}

void CommunicatorDataParallel::before_step(int64_t images, int64_t global_images) {
  if (images < 1 || global_images < images)
    throw Error(ErrorKind::internal, fmt::format("data parallel: a step of {} of {} images", images, global_images));
  scale_ = static_cast<float>(static_cast<double>(images) / static_cast<double>(global_images));
}

void CommunicatorDataParallel::after_step(Trainer& trainer) {
  // The buffers are shared by every step of the trainer: those of the full-batch step do.
  for (const auto& step : steps_)
    if (step->batch() == trainer.batch()) {
      step->broadcast_buffers(*comm_);
      return;
    }
}

void CommunicatorDataParallel::check_same_configuration(const std::string& description) {
  parity::check_same_configuration(*comm_, description);
}

std::vector<GradientBucket> CommunicatorDataParallel::buckets(int64_t batch) const {
  for (const auto& step : steps_)
    if (step->batch() == batch) return step->buckets();
  return {};
}

}  // namespace parity
