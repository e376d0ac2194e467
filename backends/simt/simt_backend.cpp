// backends/simt/simt_backend.cpp — the `simt` Backend: every node runs the native GPU kernels
// (backends/native) compiled for the host, through the fiber SIMT emulator, at the warp size
// PARITY_SIMT_WARP (32 or 64) read when the backend is created. "Device" memory is host
// memory: each value is its own float, int32 or 16-bit (bf16, f16) vector, persistent values
// are shared by name between executables, and the blocks of each launch run on a oneTBB task_arena per executable.
// Nodes become kernel launches through backends/native/dispatch.h (each op's run_<name> in its
// backends/native .cuh), shared with the HIP and CUDA plugins.
#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <tbb/task_arena.h>

#include "backends/builtin.h"
#include "backends/kit/node_hooks.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/poison.h"
#include "backends/native/dispatch.h"
#include "backends/native/native_ops.h"
#include "backends/native/plugin_support.h"
#include "backends/simt/simt_kernels.h"
#include "backends/simt/simt_runtime.h"
#include "parity/error.h"

namespace parity {
namespace simt {
namespace {

using native::NativeOps;
using native::numel_of;
using native::shape_str;

struct Storage {
  parity_dtype dtype = PARITY_F32;
  int32_t rank = 0;
  int64_t dims[PARITY_MAX_RANK] = {};
  std::vector<float> f32;
  std::vector<int32_t> i32;
  std::vector<uint16_t> half;  // bf16 or f16 bits

  void* data() {
    if (dtype == PARITY_F32) return f32.data();
    return dtype == PARITY_I32 ? static_cast<void*>(i32.data()) : half.data();
  }
  int64_t bytes() const { return static_cast<int64_t>(f32.size() * 4 + i32.size() * 4 + half.size() * 2); }
};
using PersistentStore = kit::PersistentStore<Storage>;

bool is_persistent(const parity_value_desc& v) { return kit::is_persistent(v.kind); }

std::shared_ptr<Storage> make_storage(const parity_value_desc& v) {
  auto s = std::make_shared<Storage>();
  s->dtype = v.dtype;
  s->rank = v.rank;
  for (int32_t i = 0; i < v.rank; ++i) s->dims[i] = v.dims[i];
  if (v.dtype == PARITY_F32) s->f32.assign(static_cast<size_t>(numel_of(v)), 0.0f);
  else if (native::is_half(v.dtype)) s->half.assign(static_cast<size_t>(numel_of(v)), 0);
  else s->i32.assign(static_cast<size_t>(numel_of(v)), 0);
  return s;
}

// A failure the native op code reports, as the Error of its kind.
[[noreturn]] void throw_native_failure(parity_status status, const std::string& message) {
  throw Error(status == PARITY_STATUS_DATA               ? ErrorKind::data
              : status == PARITY_STATUS_INVALID_ARGUMENT ? ErrorKind::invalid_argument
              : status == PARITY_STATUS_SHAPE            ? ErrorKind::shape
                                                         : ErrorKind::internal,
              message);
}

class SimtExecutable final : public Executable {
 public:
  SimtExecutable(const parity_plan& plan, const CompileOptions& options, SimtExecutable* share,
                 const NativeOps& ops, int threads)
      : values_(plan.values, plan.values + plan.num_values),
        nodes_(plan.nodes, plan.nodes + plan.num_nodes),
        persistent_(share ? share->persistent_ : std::make_shared<PersistentStore>()),
        dispatcher_("simt", parity_op_name, ops, values_, memory_),
        arena_(threads),
        poison_outputs_(options.poison_outputs) {
    // The plugins' plan checks: simt runs the same kernels on the same f32/i32 storage.
    native::validate_plan("simt", &plan, /*inputs_in_arena=*/false, /*half_values=*/true);
    for (const parity_value_desc& v : values_) storage_.push_back(is_persistent(v) ? persistent_storage(v) : make_storage(v));
    const int64_t workspace = dispatcher_.workspace_floats(nodes_);
    workspace_.assign(static_cast<size_t>(workspace), 0.0f);
  }

  void write(int32_t value, const void* host, size_t bytes) override {
    native::value_to_write("simt", values_, value, static_cast<int64_t>(bytes));
    std::memcpy(storage_[static_cast<size_t>(value)]->data(), host, bytes);
  }

  void read(int32_t value, void* host, size_t bytes) const override {
    native::value_to_read("simt", values_, value, static_cast<int64_t>(bytes));
    std::memcpy(host, storage_[static_cast<size_t>(value)]->data(), bytes);
  }

  void execute() override {
    if (poison_outputs_) poison_temps();
    if (hooks_.empty()) {
      arena_.execute([&] {
        for (const parity_node_desc& node : nodes_) dispatcher_.run(node);
      });
      return;
    }
    // With hooks, each node enters the arena on its own: every hook runs on execute's thread.
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const int32_t node = static_cast<int32_t>(i);
      hooks_.at(node, PARITY_HOOK_BEFORE, nullptr);
      arena_.execute([&] { dispatcher_.run(nodes_[i]); });
      hooks_.at(node, PARITY_HOOK_AFTER, nullptr);
    }
  }

  void set_node_hooks(const std::vector<parity_hook_point>& points, NodeHook hook) override {
    hooks_.set(points, std::move(hook), static_cast<int32_t>(nodes_.size()), "simt");
  }

  void* value_address(int32_t value) override {
    const parity_value_desc& v = native::value_desc_at("simt", values_, value, "value_address");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      throw Error(ErrorKind::invalid_argument, std::string("simt: value_address: '") + v.name +
                                                   "' is a TEMP value the plan did not mark keep");
    return storage_[static_cast<size_t>(value)]->data();
  }

  // Whether persistent value v is already stored (by this executable or one it shares with).
  bool holds(const parity_value_desc& v) const { return persistent_->holds(v); }

  int64_t memory_bytes() const override {
    int64_t total = static_cast<int64_t>(workspace_.size() * sizeof(float));
    for (const auto& s : storage_) total += s->bytes();
    return total;
  }

 private:
  std::shared_ptr<Storage> persistent_storage(const parity_value_desc& v) {
    return persistent_->bind(
        v, [&] { return make_storage(v); },
        [&](const parity_value_desc& s) {
          throw Error(ErrorKind::shape, fmt::format("simt: persistent value '{}' is {} in this plan but {} in the "
                                                    "executable it shares storage with; shared values must match",
                                                    v.name, shape_str(v.rank, v.dims), shape_str(s.rank, s.dims)));
        });
  }

  void poison_temps() {
    kit::poison_temps(values_, [&](size_t i, int64_t, uint32_t) {
      std::fill(storage_[i]->f32.begin(), storage_[i]->f32.end(), kit::poison_value<float>());
      std::fill(storage_[i]->i32.begin(), storage_[i]->i32.end(), kit::poison_value<int32_t>());
      std::fill(storage_[i]->half.begin(), storage_[i]->half.end(), kit::poison_bits16(storage_[i]->dtype));
    });
  }

  // How the dispatcher (backends/native/dispatch.h) reaches simt's storage: host memory, so every
  // value can be checked on the host.
  struct Memory {
    SimtExecutable* exe;
    float* f32(int32_t value) { return static_cast<float*>(exe->storage_[static_cast<size_t>(value)]->data()); }
    int32_t* i32(int32_t value) { return exe->storage_[static_cast<size_t>(value)]->i32.data(); }
    const int32_t* host_i32(int32_t value) { return i32(value); }
    float* workspace() { return exe->workspace_.data(); }
    [[noreturn]] void fail(parity_status status, const std::string& message) { throw_native_failure(status, message); }
  };

  std::vector<parity_value_desc> values_;
  std::vector<parity_node_desc> nodes_;
  std::shared_ptr<PersistentStore> persistent_;
  std::vector<std::shared_ptr<Storage>> storage_;
  kit::NodeHookSchedule hooks_;
  std::vector<float> workspace_;  // im2col columns and per-row loss terms
  Memory memory_{this};
  native::NodeDispatcher<Memory> dispatcher_;
  tbb::task_arena arena_;
  bool poison_outputs_;
};

class SimtBackend final : public Backend {
 public:
  explicit SimtBackend(const BackendOptions& options)
      : ops_(warp_size_from_env() == 64 ? native::simt_w64::native_ops() : native::simt_w32::native_ops()),
        threads_(options.threads > 0 ? options.threads : tbb::this_task_arena::max_concurrency()) {}

  std::string name() const override { return "simt"; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    int32_t op;
    std::memcpy(&op, &node.op, sizeof op);
    if (const char* lacking = op >= 0 && op < PARITY_OP_COUNT ? native::native_lacks(op, /*half_values=*/true) : nullptr) {
      if (reason) *reason = fmt::format("simt: node '{}': {}", node.name, lacking);
      return false;
    }
    if (op >= 0 && op < PARITY_OP_COUNT) return true;
    if (reason) *reason = fmt::format("simt: op {} of node '{}' is not one this build knows", op, node.name);
    return false;
  }

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    check_nodes_and_descriptors(plan);
    return std::make_unique<SimtExecutable>(plan, options, shared_executable(share_persistent_with), ops_, threads_);
  }

  // Exactly what SimtExecutable allocates: 4 bytes per element (2 for bf16, f16) of every value (persistent ones
  // only when share_with does not hold them yet) and the workspace of the dispatcher's size pass.
  std::optional<MemoryNeed> memory_need(const parity_plan& plan, const CompileOptions& /*poisoning allocates nothing*/,
                                        Executable* share_persistent_with) const override {
    check_nodes_and_descriptors(plan);
    native::validate_plan("simt", &plan, /*inputs_in_arena=*/false, /*half_values=*/true);
    const SimtExecutable* share = shared_executable(share_persistent_with);
    const std::vector<parity_value_desc> values(plan.values, plan.values + plan.num_values);
    const std::vector<parity_node_desc> nodes(plan.nodes, plan.nodes + plan.num_nodes);
    int64_t bytes = 0;
    for (const parity_value_desc& v : values)
      if (!(is_persistent(v) && share && share->holds(v))) bytes += numel_of(v) * kit::dtype_size(v.dtype);
    SizingMemory memory;
    const native::NodeDispatcher<SizingMemory> sizing("simt", parity_op_name, ops_, values, memory);
    return MemoryNeed{bytes + sizing.workspace_floats(nodes) * 4, 0};
  }

  int threads() const override { return threads_; }

 private:
  // The size pass reads no storage: every accessor is null, failures are the executable's.
  struct SizingMemory {
    float* f32(int32_t) { return nullptr; }
    int32_t* i32(int32_t) { return nullptr; }
    const int32_t* host_i32(int32_t) { return nullptr; }
    float* workspace() { return nullptr; }
    [[noreturn]] void fail(parity_status status, const std::string& message) { throw_native_failure(status, message); }
  };

  static SimtExecutable* shared_executable(Executable* share_persistent_with) {
    if (!share_persistent_with) return nullptr;
    auto* share = dynamic_cast<SimtExecutable*>(share_persistent_with);
    if (!share)
      throw Error(ErrorKind::invalid_argument,
                  "simt: share_persistent_with must be an executable compiled by the simt backend");
    return share;
  }

  void check_nodes_and_descriptors(const parity_plan& plan) const {
    for (int32_t i = 0; i < plan.num_nodes; ++i) {
      std::string reason;
      if (!supports(plan.nodes[i], &reason)) throw Error(ErrorKind::backend, reason);
    }
    // A malformed descriptor (from across the ABI) is refused before anything is sized from it.
    for (int32_t i = 0; i < plan.num_values; ++i) {
      const parity_value_desc& v = plan.values[i];
      if (v.rank < 0 || v.rank > PARITY_MAX_RANK)
        throw Error(ErrorKind::invalid_argument, fmt::format("simt: value '{}' has rank {}, must be in [0, {}]",
                                                             std::string(v.name, strnlen(v.name, PARITY_NAME_LEN)),
                                                             v.rank, PARITY_MAX_RANK));
      for (int32_t d = 0; d < v.rank; ++d)
        if (v.dims[d] < 1)
          throw Error(ErrorKind::invalid_argument, fmt::format("simt: value '{}' has dimension {} = {}, must be >= 1",
                                                               std::string(v.name, strnlen(v.name, PARITY_NAME_LEN)),
                                                               d, v.dims[d]));
    }
  }

  const NativeOps& ops_;
  int threads_;
};

}  // namespace
}  // namespace simt

std::unique_ptr<Backend> make_simt_backend(const BackendOptions& options) {
  return std::make_unique<simt::SimtBackend>(options);
}

}  // namespace parity
