// backends/cpu/cpu_backend.cpp — the cpu backend (Eigen + oneTBB): its Backend and Executable,
// compiling a plan (checks, binding values to the arena or the persistent store, sizing
// scratch; the fusion pass is cpu_fusion.cpp) and executing it (one switch over parity_op inside
// the executable's task_arena).
//
// Memory of one executable, all allocated at compile so that execute() allocates nothing:
//  - the arena, plan.arena_bytes at 64-byte alignment, holding INPUT and TEMP values at the
//    plan's offsets;
//  - one workspace, the largest scratch any node asks for (nodes run one at a time);
//  - PARAM and STATE values in a PersistentStore, a std::shared_ptr shared by every executable
//    compiled with share_persistent_with, matched by name.
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/builtin.h"
#include "backends/cpu/cpu_executable.h"
#include "backends/cpu/cpu_fusion.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_nodes.h"
#include "backends/kit/node_hooks.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/plan_check.h"
#include "backends/kit/poison.h"
#include "parity/error.h"

namespace parity {
namespace {

using cpu::BoundNode;
using cpu::BoundValue;

// A zero-filled, 64-byte-aligned block of bytes; or, for sizing a plan without allocating
// (memory_need), a range of address space only: inaccessible, backed by no memory, so that
// what is bound into it has the addresses (and overlaps) the real binding would have.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t bytes) : bytes_(bytes) {
    const size_t rounded = static_cast<size_t>(cpu::align64(std::max<int64_t>(bytes, 1)));
    data_ = static_cast<unsigned char*>(std::aligned_alloc(64, rounded));
    if (!data_) throw std::bad_alloc();
    std::memset(data_, 0, rounded);
  }
  static AlignedBuffer address_space_only(int64_t bytes) {
    AlignedBuffer b;
    b.bytes_ = bytes;
    b.reserved_ = static_cast<size_t>(cpu::align64(std::max<int64_t>(bytes, 1)));
    void* p = mmap(nullptr, b.reserved_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw Error(ErrorKind::memory, "cpu: the plan needs " + std::to_string(bytes) +
                                         " bytes of arena, more than this process can even address");
    b.data_ = static_cast<unsigned char*>(p);
    return b;
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(other.data_), bytes_(other.bytes_), reserved_(other.reserved_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
    other.reserved_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    std::swap(reserved_, other.reserved_);
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() {
    if (reserved_) munmap(data_, reserved_);
    else std::free(data_);
  }

  unsigned char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  unsigned char* data_ = nullptr;
  int64_t bytes_ = 0;
  size_t reserved_ = 0;  // nonzero: address space only (munmap, not free)
};

using cpu::dtype_name;

using cpu::dtype_bytes;

std::string shape_str(const parity_value_desc& v) { return cpu::shape_str(v.dims, v.rank); }

using kit::is_persistent;

// PARAM and STATE values by name (the kit's store), each in its own 64-byte aligned buffer,
// zero-filled on first sight so Adam's m and v start at 0.
class PersistentStore {
 public:
  // The storage of value v, checked to have v's dtype and shape when it already exists.
  unsigned char* bind(const parity_value_desc& v) {
    return store_
        .bind(
            v, [&] { return std::make_shared<AlignedBuffer>(v.bytes); },
            [&](const parity_value_desc& e) {
              throw Error(ErrorKind::shape, std::string("cpu: persistent value '") + v.name + "' is " + shape_str(v) +
                                                " " + dtype_name(v.dtype) + " in this plan but " +
                                                cpu::shape_str(e.dims, e.rank) + " " + dtype_name(e.dtype) +
                                                " in the executable it shares with; shared values must match");
            })
        ->data();
  }

  // Whether a value of v's name is stored (bind would reuse it and allocate nothing).
  bool holds(const parity_value_desc& v) const { return store_.holds(v); }

  int64_t bytes() const {
    int64_t total = 0;
    store_.for_each([&](const AlignedBuffer& buffer) { total += buffer.bytes(); });
    return total;
  }

 private:
  kit::PersistentStore<AlignedBuffer> store_;
};

// A byte range of the arena to refill before each execute when poisoning is on.
struct PoisonRange {
  int64_t offset, bytes;
  parity_dtype dtype;
};

class CpuExecutable final : public Executable {
 public:
  CpuExecutable(const parity_plan& plan, const CompileOptions& options, int threads,
                std::shared_ptr<PersistentStore> store, cpu::NodeDelegate* delegate = nullptr)
      : store_(std::move(store)), task_arena_(threads), poison_outputs_(options.poison_outputs) {
    task_arena_.initialize();
    check_and_copy_values(plan);
    arena_ = AlignedBuffer(plan.arena_bytes);
    bind_values();
    bind_nodes(plan);
    workspace_ = AlignedBuffer(workspace_bytes_);
    for (BoundNode& node : nodes_) node.workspace = workspace_.data();
    for (auto& h : half_)
      if (h) cpu::bind_half_node(*h, workspace_.data());
    taken_.resize(nodes_.size());
    // A node on half values runs cpu's path (half_nodes.h) whatever a delegate says; the delegate
    // is still asked, so that it can say why it declines (onednn's route reasons).
    if (delegate)
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i].fusion.skip) continue;
        taken_[i] = delegate->take(nodes_[i]);
        if (taken_[i] && cpu::touches_half(nodes_[i]))
          throw Error(ErrorKind::internal, "cpu: node '" + nodes_[i].name +
                                               "' on bf16/f16 values was taken by a delegate; half nodes run on "
                                               "cpu's kernels");
      }
    if (options.poison_outputs) prepare_poison();
  }

  // The bytes the constructor above would allocate (memory_bytes() of the result, less the
  // persistent values `store` already holds), found by the same binding and preparation over
  // address space that no memory backs; nothing of the plan's size is allocated.
  static int64_t memory_need(const parity_plan& plan, int threads, PersistentStore& store) {
    CpuExecutable sizing(threads);
    sizing.check_and_copy_values(plan);
    sizing.arena_ = AlignedBuffer::address_space_only(plan.arena_bytes);
    int64_t new_persistent = 0;
    std::vector<int64_t> persistent_offset(sizing.values_.size(), -1);
    for (size_t i = 0; i < sizing.values_.size(); ++i)
      if (is_persistent(sizing.values_[i].kind) && !store.holds(sizing.values_[i])) {
        persistent_offset[i] = new_persistent;
        new_persistent += cpu::align64(sizing.values_[i].bytes);
      }
    const AlignedBuffer persistent_space = AlignedBuffer::address_space_only(new_persistent);
    sizing.data_.resize(sizing.values_.size());
    for (size_t i = 0; i < sizing.values_.size(); ++i) {
      const parity_value_desc& v = sizing.values_[i];
      if (!is_persistent(v.kind)) sizing.data_[i] = sizing.arena_.data() + v.offset;
      else if (persistent_offset[i] >= 0) sizing.data_[i] = persistent_space.data() + persistent_offset[i];
      else sizing.data_[i] = store.bind(v);  // held: checked against v, nothing allocated
    }
    sizing.bind_nodes(plan);
    int64_t unrounded_persistent = 0;
    for (size_t i = 0; i < sizing.values_.size(); ++i)
      if (persistent_offset[i] >= 0) unrounded_persistent += sizing.values_[i].bytes;
    return plan.arena_bytes + sizing.workspace_bytes_ + unrounded_persistent;
  }

  void write(int32_t value, const void* host, size_t bytes) override {
    const parity_value_desc& v = value_desc(value, "write");
    if (v.kind == PARITY_VALUE_TEMP)
      throw Error(ErrorKind::invalid_argument, std::string("cpu: write: '") + v.name +
                                                   "' is a temporary value; only INPUT, PARAM and STATE values "
                                                   "can be written");
    check_bytes(v, bytes, "write");
    std::memcpy(data_[value], host, bytes);
  }

  void read(int32_t value, void* host, size_t bytes) const override {
    const parity_value_desc& v = value_desc(value, "read");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      throw Error(ErrorKind::invalid_argument, std::string("cpu: read: '") + v.name +
                                                   "' is a temporary value not marked keep, so its memory is "
                                                   "reused; compile the plan with it kept to read it");
    check_bytes(v, bytes, "read");
    std::memcpy(host, data_[value], bytes);
  }

  void execute() override {
    poison();
    if (hooks_.empty()) {
      task_arena_.execute([this] {
        for (size_t i = 0; i < nodes_.size(); ++i)
          if (!nodes_[i].fusion.skip) run_node(i);
      });
      return;
    }
    // With hooks, each node enters the arena on its own, so that every hook runs on the thread
    // that called execute (MPI_THREAD_FUNNELED asks no more of a communicator).
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const int32_t node = static_cast<int32_t>(i);
      hooks_.at(node, PARITY_HOOK_BEFORE, nullptr);
      if (!nodes_[i].fusion.skip) task_arena_.execute([&] { run_node(i); });
      hooks_.at(node, PARITY_HOOK_AFTER, nullptr);
    }
  }

  void set_node_hooks(const std::vector<parity_hook_point>& points, NodeHook hook) override {
    hooks_.set(points, std::move(hook), static_cast<int32_t>(nodes_.size()), "cpu");
  }

  void* value_address(int32_t value) override {
    const parity_value_desc& v = value_desc(value, "value_address");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      throw Error(ErrorKind::invalid_argument, std::string("cpu: value_address: '") + v.name +
                                                   "' is a temporary value not marked keep, so its memory is "
                                                   "reused; compile the plan with it kept");
    return data_[value];
  }

  int64_t memory_bytes() const override { return arena_.bytes() + workspace_.bytes() + store_->bytes(); }

  const std::shared_ptr<PersistentStore>& store() const { return store_; }

 private:
  // memory_need's: nothing bound yet.
  explicit CpuExecutable(int threads) : task_arena_(threads) { task_arena_.initialize(); }

  // Node i by what a delegate prepared for it, or by cpu's kernel.
  void run_node(size_t i) const {
    if (taken_[i]) taken_[i]->run();
    else if (half_[i]) cpu::run_half_node(*half_[i], &run);
    else run(nodes_[i]);
  }

  // The one dispatch, generated from PARITY_OP_LIST: every op's run_<name> (cpu_ops.h).
  static void run(const BoundNode& node) {
    switch (node.op) {
#define PARITY_CPU_RUN_CASE(ID, name, inputs, outputs, builder) \
  case PARITY_OP_##ID:                                          \
    cpu::run_##name(node);                                      \
    break;
      PARITY_OP_LIST(PARITY_CPU_RUN_CASE)
#undef PARITY_CPU_RUN_CASE
      case PARITY_OP_COUNT: break;  // not an op; compile rejects it
    }
  }

  // Shape checks and work split of one node; returns its scratch bytes. Same cases as run().
  static int64_t prepare_node(BoundNode& node) {
    switch (node.op) {
#define PARITY_CPU_PREPARE_CASE(ID, name, inputs, outputs, builder) \
  case PARITY_OP_##ID:                                              \
    return cpu::prepare_##name(node);
      PARITY_OP_LIST(PARITY_CPU_PREPARE_CASE)
#undef PARITY_CPU_PREPARE_CASE
      case PARITY_OP_COUNT: break;
    }
    throw Error(ErrorKind::invalid_argument, "cpu: node '" + node.name + "' has op " +
                                                 std::to_string(static_cast<int>(node.op)) + ", which is not an op");
  }

  const parity_value_desc& value_desc(int32_t value, const char* what) const {
    if (value < 0 || value >= static_cast<int32_t>(values_.size()))
      throw Error(ErrorKind::invalid_argument, std::string("cpu: ") + what + ": value index " +
                                                   std::to_string(value) + " is outside [0, " +
                                                   std::to_string(values_.size()) + ")");
    return values_[value];
  }

  static void check_bytes(const parity_value_desc& v, size_t bytes, const char* what) {
    if (static_cast<int64_t>(bytes) != v.bytes)
      throw Error(ErrorKind::invalid_argument, std::string("cpu: ") + what + " '" + v.name + "': " +
                                                   std::to_string(bytes) + " bytes given, the value " +
                                                   shape_str(v) + " " + dtype_name(v.dtype) + " holds " +
                                                   std::to_string(v.bytes));
  }

  // The kit's checks of the plan (cpu stores f32, i32, i64, bf16 and f16; INPUT and TEMP values live in the
  // arena; persistent values are shared by name; outputs are TEMP), then the values copied.
  // A node that breaks its op's arity or value rules is a shape error, as cpu's own op checks.
  void check_and_copy_values(const parity_plan& plan) {
    kit::PlanRules rules;
    rules.dtypes = PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) | PARITY_DTYPE_BIT(PARITY_I64) |
                   PARITY_DTYPE_BIT(PARITY_BF16) | PARITY_DTYPE_BIT(PARITY_F16);
    rules.temps_in_arena = true;
    rules.inputs_in_arena = true;
    rules.unique_persistent_names = true;
    rules.outputs_are_temp = true;
    try {
      kit::check_plan("cpu", plan, rules);
    } catch (const kit::PlanError& e) {
      const bool node_fault = e.fault == kit::PlanFault::arity || e.fault == kit::PlanFault::value_index ||
                              e.fault == kit::PlanFault::output_kind;
      throw Error(node_fault ? ErrorKind::shape : ErrorKind::invalid_argument, e.what());
    }
    values_.assign(plan.values, plan.values + plan.num_values);
    for (parity_value_desc& v : values_) v.name[PARITY_NAME_LEN - 1] = '\0';
  }

  void bind_values() {
    data_.resize(values_.size());
    for (size_t i = 0; i < values_.size(); ++i)
      data_[i] = is_persistent(values_[i].kind) ? store_->bind(values_[i]) : arena_.data() + values_[i].offset;
  }

  BoundValue bound(int32_t index) const {
    const parity_value_desc& v = values_[index];
    BoundValue b;
    b.data = data_[index];
    b.name = v.name;
    b.dtype = v.dtype;
    b.rank = v.rank;
    b.numel = 1;
    for (int32_t d = 0; d < v.rank; ++d) b.numel *= (b.dims[d] = v.dims[d]);
    return b;
  }

  // Two arena values of one node must not share bytes (the graph's lifetime planning guarantees
  // it), except a reshape whose output sits exactly on its input.
  void check_no_overlap(const BoundNode& node, int32_t a, int32_t b) const {
    const parity_value_desc& va = values_[a];
    const parity_value_desc& vb = values_[b];
    if (a == b || is_persistent(va.kind) || is_persistent(vb.kind)) return;
    if (node.op == PARITY_OP_RESHAPE && va.offset == vb.offset) return;
    if (va.offset < vb.offset + vb.bytes && vb.offset < va.offset + va.bytes)
      throw Error(ErrorKind::internal, "cpu: node '" + node.name + "': values '" + va.name + "' and '" + vb.name +
                                           "' overlap in the arena; the plan's lifetimes are wrong");
  }

  void bind_nodes(const parity_plan& plan) {
    const int32_t slots = task_arena_.max_concurrency();
    int64_t workspace_bytes = 0;
    // Values that are a max-pool's gradient, mostly zeros (NodeFusion::sparse_dy).
    std::vector<bool> pool_gradient(values_.size(), false);
    nodes_.resize(plan.num_nodes);
    half_.resize(plan.num_nodes);
    for (int32_t i = 0; i < plan.num_nodes; ++i) {
      const parity_node_desc& desc = plan.nodes[i];
      BoundNode& node = nodes_[i];
      node.name = std::string(desc.name, strnlen(desc.name, PARITY_NAME_LEN));
      node.op = desc.op;
      node.params = desc.params;
      node.num_inputs = desc.num_inputs;
      node.num_outputs = desc.num_outputs;
      node.slots = slots;
      std::vector<int32_t> all;  // op, arity and value indices checked by check_and_copy_values
      for (int32_t k = 0; k < desc.num_inputs + desc.num_outputs; ++k) {
        const bool is_input = k < desc.num_inputs;
        const int32_t index = is_input ? desc.inputs[k] : desc.outputs[k - desc.num_inputs];
        (is_input ? node.in[k] : node.out[k - desc.num_inputs]) = bound(index);
        all.push_back(index);
      }
      for (int32_t o = desc.num_inputs; o < static_cast<int32_t>(all.size()); ++o)
        for (int32_t k = 0; k < o; ++k) check_no_overlap(node, all[o], all[k]);
      cpu::mark_pool_gradient(desc, pool_gradient, node);
      if (cpu::runs_widened(node)) {
        int64_t bytes = 0;
        half_[i] = cpu::make_half_node(node, &prepare_node, poison_outputs_, &bytes);
        workspace_bytes = std::max(workspace_bytes, bytes);
        continue;
      }
      workspace_bytes = std::max(workspace_bytes, prepare_node(node));
    }
    // after planning: a fused node keeps its shapes, work split and scratch (plus the pooled
    // form's scratch)
    workspace_bytes_ = std::max(workspace_bytes, cpu::fuse_nodes(plan, nodes_));
  }

  // Every TEMP value's bytes, less those of INPUT values (which the caller wrote and a planner
  // may place beside or after dead temporaries).
  void prepare_poison() {
    std::vector<std::pair<int64_t, int64_t>> inputs;
    for (const parity_value_desc& v : values_)
      if (v.kind == PARITY_VALUE_INPUT) inputs.emplace_back(v.offset, v.offset + v.bytes);
    std::sort(inputs.begin(), inputs.end());
    for (const parity_value_desc& v : values_) {
      if (v.kind != PARITY_VALUE_TEMP) continue;
      int64_t begin = v.offset;
      const int64_t end = v.offset + v.bytes;
      for (const auto& [in_begin, in_end] : inputs) {
        if (in_end <= begin || in_begin >= end) continue;
        if (in_begin > begin) poison_.push_back({begin, in_begin - begin, v.dtype});
        begin = std::max(begin, in_end);
      }
      if (begin < end) poison_.push_back({begin, end - begin, v.dtype});
    }
  }

  void poison() {
    for (const PoisonRange& r : poison_) {
      unsigned char* p = arena_.data() + r.offset;
      switch (r.dtype) {
        case PARITY_F32:
          std::fill_n(reinterpret_cast<float*>(p), r.bytes / 4, kit::poison_value<float>());
          break;
        case PARITY_I32:
          std::fill_n(reinterpret_cast<int32_t*>(p), r.bytes / 4, kit::poison_value<int32_t>());
          break;
        case PARITY_I64:
          std::fill_n(reinterpret_cast<int64_t*>(p), r.bytes / 8, kit::poison_value<int64_t>());
          break;
        case PARITY_BF16:
        case PARITY_F16:
          std::fill_n(reinterpret_cast<uint16_t*>(p), r.bytes / 2, kit::poison_bits16(r.dtype));
          break;
      }
    }
  }

  std::vector<parity_value_desc> values_;
  std::vector<unsigned char*> data_;  // per value: its bytes in the arena or the store
  std::vector<BoundNode> nodes_;
  std::vector<std::unique_ptr<cpu::HalfNode>> half_;  // per node on half values: its widened f32 form, or null
  std::vector<std::unique_ptr<cpu::TakenNode>> taken_;  // per node: what a delegate runs instead, or null
  kit::NodeHookSchedule hooks_;
  std::shared_ptr<PersistentStore> store_;
  AlignedBuffer arena_;
  int64_t workspace_bytes_ = 0;  // what bind_nodes found the nodes need
  AlignedBuffer workspace_;
  std::vector<PoisonRange> poison_;
  tbb::task_arena task_arena_;
  bool poison_outputs_ = false;  // CompileOptions::poison_outputs (half nodes prefill their f32 outputs)
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options) {
    if (options.threads < 0)
      throw Error(ErrorKind::invalid_argument, "cpu: threads must be >= 0 (0 = every hardware thread), got " +
                                                   std::to_string(options.threads));
    threads_ = options.threads == 0 ? tbb::info::default_concurrency() : options.threads;
  }

  std::string name() const override { return "cpu"; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    if (node.op >= 0 && node.op < PARITY_OP_COUNT) return true;
    if (reason) *reason = "op " + std::to_string(static_cast<int>(node.op)) + " is not an op of plugin.h";
    return false;
  }

  std::optional<MemoryNeed> memory_need(const parity_plan& plan, const CompileOptions& /*poisoning allocates nothing*/,
                                        Executable* share_persistent_with) const override {
    if (!share_persistent_with) {
      PersistentStore empty;
      return MemoryNeed{CpuExecutable::memory_need(plan, threads_, empty), 0};
    }
    auto* other = dynamic_cast<CpuExecutable*>(share_persistent_with);
    if (!other)
      throw Error(ErrorKind::backend,
                  "cpu: share_persistent_with must be an executable of the cpu backend; persistent values "
                  "cannot be shared across backends");
    return MemoryNeed{CpuExecutable::memory_need(plan, threads_, *other->store()), 0};
  }

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    return cpu::make_cpu_executable("cpu", plan, options, threads_, share_persistent_with, nullptr);
  }

  int threads() const override { return threads_; }

 private:
  int threads_ = 1;
};

}  // namespace

std::unique_ptr<Executable> cpu::make_cpu_executable(const char* backend, const parity_plan& plan,
                                                     const CompileOptions& options, int threads,
                                                     Executable* share_persistent_with, NodeDelegate* delegate) {
  std::shared_ptr<PersistentStore> store;
  if (share_persistent_with) {
    auto* other = dynamic_cast<CpuExecutable*>(share_persistent_with);
    if (!other)
      throw Error(ErrorKind::backend, std::string(backend) + ": share_persistent_with must be an executable of the " +
                                          backend + " backend; persistent values cannot be shared across backends");
    store = other->store();
  } else {
    store = std::make_shared<PersistentStore>();
  }
  if (std::strcmp(backend, "cpu") == 0)
    return std::make_unique<CpuExecutable>(plan, options, threads, std::move(store), delegate);
  // cpu's checks say "cpu: ..."; the caller's user asked for `backend`, so its name leads.
  try {
    return std::make_unique<CpuExecutable>(plan, options, threads, std::move(store), delegate);
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.rfind("cpu: ", 0) != 0) throw;
    throw Error(e.kind(), std::string(backend) + ": " + message.substr(5));
  }
}

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace parity
