// backends/ref/ref_backend.cpp — the `ref` Backend and its Executable: every value held as its
// own float64 (or int32) vector, persistent values shared by name between executables, plans
// checked by the kit (backends/kit/plan_check.h), and nodes run in plan order, each by the
// run_<op> of ref_ops.h (a switch generated from PARITY_OP_LIST). A node that reads or writes
// bf16 or f16 values (other than CAST and RESHAPE, which move bits) runs on float64 copies: its
// half inputs decoded exactly, the float64 op, its half outputs rounded once (ref_ops.h's
// detail::double_to_half, ref's own rounding, not ops/kernels/half.h).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/builtin.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/plan_check.h"
#include "backends/kit/poison.h"
#include "backends/kit/value_desc.h"
#include "backends/ref/ref_node.h"
#include "backends/ref/ref_ops.h"
#include "parity/error.h"

namespace parity {
namespace ref {
namespace {

// PARAM and STATE values by name; executables compiled with share_persistent_with hold the same map.
using PersistentStore = kit::PersistentStore<Storage>;

using kit::numel_of;
using kit::shape_str;
constexpr auto dtype_str = kit::dtype_name;

bool is_persistent(const parity_value_desc& v) { return kit::is_persistent(v.kind); }

std::shared_ptr<Storage> make_storage(const parity_value_desc& v) {
  auto s = std::make_shared<Storage>();
  s->dtype = v.dtype;
  s->rank = v.rank;
  for (int32_t i = 0; i < v.rank; ++i) s->dims[i] = v.dims[i];
  const auto count = static_cast<size_t>(numel_of(v));
  if (v.dtype == PARITY_F32) s->f64.assign(count, 0.0);
  else if (is_half(v.dtype)) s->h16.assign(count, 0);
  else s->i32.assign(count, 0);
  return s;
}

class RefExecutable final : public Executable {
 public:
  RefExecutable(const parity_plan& plan, const CompileOptions& options, RefExecutable* share)
      : values_(plan.values, plan.values + plan.num_values),
        nodes_(plan.nodes, plan.nodes + plan.num_nodes),
        persistent_(share ? share->persistent_ : std::make_shared<PersistentStore>()),
        poison_outputs_(options.poison_outputs) {
    storage_.reserve(values_.size());
    for (const parity_value_desc& v : values_)
      storage_.push_back(is_persistent(v) ? persistent_storage(v) : make_storage(v));
    // The float64 view of the half values (widened_values_ says f32 where values_ says bf16/f16).
    widened_values_ = values_;
    widened_storage_ = storage_;
    for (size_t i = 0; i < values_.size(); ++i) {
      if (!is_half(values_[i].dtype)) continue;
      widened_values_[i].dtype = PARITY_F32;
      widened_storage_[i] = make_storage(widened_values_[i]);
    }
  }

  void write(int32_t value, const void* host, size_t bytes) override {
    const parity_value_desc& v = desc(value, "write");
    if (v.kind == PARITY_VALUE_TEMP)
      throw Error(ErrorKind::invalid_argument, "ref: write to value '" + std::string(v.name) +
                                                   "' refused: only INPUT, PARAM and STATE values can be written");
    check_bytes("write to", v, bytes);
    Storage& s = *storage_[static_cast<size_t>(value)];
    if (v.dtype == PARITY_F32) {
      const auto* src = static_cast<const unsigned char*>(host);
      for (size_t i = 0; i < s.f64.size(); ++i) {
        float f;
        std::memcpy(&f, src + i * sizeof(float), sizeof(float));
        s.f64[i] = static_cast<double>(f);  // exact: every float is a double
      }
    } else if (is_half(v.dtype)) {
      std::memcpy(s.h16.data(), host, bytes);
    } else {
      std::memcpy(s.i32.data(), host, bytes);
    }
  }

  void read(int32_t value, void* host, size_t bytes) const override {
    const parity_value_desc& v = desc(value, "read");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      throw Error(ErrorKind::invalid_argument, "ref: read of value '" + std::string(v.name) +
                                                   "' refused: it is a TEMP value the plan did not mark keep");
    check_bytes("read of", v, bytes);
    const Storage& s = *storage_[static_cast<size_t>(value)];
    if (v.dtype == PARITY_F32) {
      auto* dst = static_cast<unsigned char*>(host);
      for (size_t i = 0; i < s.f64.size(); ++i) {
        const float f = static_cast<float>(s.f64[i]);  // round to nearest (the default FP mode)
        std::memcpy(dst + i * sizeof(float), &f, sizeof(float));
      }
    } else if (is_half(v.dtype)) {
      std::memcpy(host, s.h16.data(), bytes);
    } else {
      std::memcpy(host, s.i32.data(), bytes);
    }
  }

  // The float64 values themselves, for finite differences in float64 (parity check --gradient).
  void write_f64(int32_t value, const double* host, size_t count) override {
    const parity_value_desc& v = desc(value, "write_f64");
    if (v.kind == PARITY_VALUE_TEMP || v.dtype != PARITY_F32)
      throw Error(ErrorKind::invalid_argument, "ref: write_f64 to value '" + std::string(v.name) +
                                                   "' refused: only f32 INPUT, PARAM and STATE values");
    Storage& s = *storage_[static_cast<size_t>(value)];
    if (count != s.f64.size())
      throw Error(ErrorKind::invalid_argument, "ref: write_f64 to value '" + std::string(v.name) + "': " +
                                                   std::to_string(count) + " elements, it has " +
                                                   std::to_string(s.f64.size()));
    std::copy(host, host + count, s.f64.begin());
  }

  void read_f64(int32_t value, double* host, size_t count) const override {
    const parity_value_desc& v = desc(value, "read_f64");
    if ((v.kind == PARITY_VALUE_TEMP && !v.keep) || v.dtype != PARITY_F32)
      throw Error(ErrorKind::invalid_argument, "ref: read_f64 of value '" + std::string(v.name) +
                                                   "' refused: only f32 values that are kept or not TEMP");
    const Storage& s = *storage_[static_cast<size_t>(value)];
    if (count != s.f64.size())
      throw Error(ErrorKind::invalid_argument, "ref: read_f64 of value '" + std::string(v.name) + "': " +
                                                   std::to_string(count) + " elements, it has " +
                                                   std::to_string(s.f64.size()));
    std::copy(s.f64.begin(), s.f64.end(), host);
  }

  void execute() override {
    if (poison_outputs_) poison_temps();
    for (const parity_node_desc& node : nodes_) run_node(node);
  }

  // Whether persistent value v is already stored (by this executable or one it shares with).
  bool holds(const parity_value_desc& v) const { return persistent_->holds(v); }

  // The vectors this plan's values live in; persistent values shared with another executable
  // are counted by each executable that uses them.
  int64_t memory_bytes() const override {
    int64_t total = 0;
    for (const auto& s : storage_)
      total += static_cast<int64_t>(s->f64.size() * sizeof(double) + s->i32.size() * sizeof(int32_t) +
                                    s->h16.size() * sizeof(uint16_t));
    for (size_t i = 0; i < values_.size(); ++i)  // the float64 copies of half values
      if (is_half(values_[i].dtype)) total += static_cast<int64_t>(widened_storage_[i]->f64.size() * sizeof(double));
    return total;
  }

 private:
  std::shared_ptr<Storage> persistent_storage(const parity_value_desc& v) {
    return persistent_->bind(
        v, [&] { return make_storage(v); },
        [&](const parity_value_desc& s) {
          throw Error(ErrorKind::shape, "ref: persistent value '" + std::string(v.name) + "' is " +
                                            dtype_str(v.dtype) + shape_str(v.rank, v.dims) + " in this plan but " +
                                            dtype_str(s.dtype) + shape_str(s.rank, s.dims) +
                                            " in the executable it shares storage with; shared values must match");
        });
  }

  const parity_value_desc& desc(int32_t value, const char* what) const {
    if (value < 0 || value >= static_cast<int32_t>(values_.size()))
      throw Error(ErrorKind::invalid_argument, std::string("ref: ") + what + " of value " + std::to_string(value) +
                                                   ": no such value, the plan has " +
                                                   std::to_string(values_.size()));
    return values_[static_cast<size_t>(value)];
  }

  static void check_bytes(const char* what, const parity_value_desc& v, size_t bytes) {
    const auto expected = static_cast<size_t>(numel_of(v) * kit::dtype_size(v.dtype));  // its host bytes
    if (bytes != expected)
      throw Error(ErrorKind::invalid_argument, std::string("ref: ") + what + " value '" + v.name + "' " +
                                                   dtype_str(v.dtype) + shape_str(v.rank, v.dims) + " needs " +
                                                   std::to_string(expected) + " bytes, got " +
                                                   std::to_string(bytes));
  }

  void poison_temps() {
    kit::poison_temps(values_, [&](size_t i, int64_t, uint32_t) {
      Storage& s = *storage_[i];
      std::fill(s.f64.begin(), s.f64.end(), kit::poison_value<double>());
      std::fill(s.i32.begin(), s.i32.end(), kit::poison_value<int32_t>());
      std::fill(s.h16.begin(), s.h16.end(), kit::poison_bits16(s.dtype));
    });
  }

  // Each op's run_<name> is in ref_ops.h; an op of PARITY_OP_LIST without one does not compile.
  void run_node(const parity_node_desc& desc) const {
    if (desc.op != PARITY_OP_CAST && desc.op != PARITY_OP_RESHAPE && touches_half(desc)) {
      run_widened(desc);
      return;
    }
    dispatch(RefNode(desc, values_, storage_));
  }

  bool touches_half(const parity_node_desc& desc) const {
    for (int32_t k = 0; k < desc.num_inputs; ++k)
      if (is_half(values_[static_cast<size_t>(desc.inputs[k])].dtype)) return true;
    for (int32_t k = 0; k < desc.num_outputs; ++k)
      if (is_half(values_[static_cast<size_t>(desc.outputs[k])].dtype)) return true;
    return false;
  }

  // Half inputs decoded (exact), the float64 op, half outputs rounded once to their dtype.
  void run_widened(const parity_node_desc& desc) const {
    for (int32_t k = 0; k < desc.num_inputs; ++k) {
      const auto v = static_cast<size_t>(desc.inputs[k]);
      if (!is_half(values_[v].dtype)) continue;
      const std::vector<uint16_t>& bits = storage_[v]->h16;
      std::vector<double>& wide = widened_storage_[v]->f64;
      for (size_t i = 0; i < bits.size(); ++i) wide[i] = static_cast<double>(detail::float_of_half(bits[i], values_[v].dtype));
    }
    if (poison_outputs_)  // an element the op leaves unwritten reads as NaN, as in storage_
      for (int32_t k = 0; k < desc.num_outputs; ++k) {
        const auto v = static_cast<size_t>(desc.outputs[k]);
        if (is_half(values_[v].dtype))
          std::fill(widened_storage_[v]->f64.begin(), widened_storage_[v]->f64.end(), kit::poison_value<double>());
      }
    dispatch(RefNode(desc, widened_values_, widened_storage_));
    for (int32_t k = 0; k < desc.num_outputs; ++k) {
      const auto v = static_cast<size_t>(desc.outputs[k]);
      if (!is_half(values_[v].dtype)) continue;
      const std::vector<double>& wide = widened_storage_[v]->f64;
      std::vector<uint16_t>& bits = storage_[v]->h16;
      for (size_t i = 0; i < bits.size(); ++i) bits[i] = detail::double_to_half(wide[i], values_[v].dtype);
    }
  }

  static void dispatch(const RefNode& node) {
    const parity_node_desc& desc = node.desc();
    switch (desc.op) {
#define PARITY_REF_RUN_CASE(ID, name, inputs, outputs, builder) \
  case PARITY_OP_##ID:                                          \
    run_##name(node);                                           \
    break;
      PARITY_OP_LIST(PARITY_REF_RUN_CASE)
#undef PARITY_REF_RUN_CASE
      case PARITY_OP_COUNT:
        throw Error(ErrorKind::internal, "ref: node '" + std::string(desc.name) +
                                             "' has op PARITY_OP_COUNT, which is a count, not an op");
    }
  }

  std::vector<parity_value_desc> values_;
  std::vector<parity_node_desc> nodes_;
  std::shared_ptr<PersistentStore> persistent_;
  std::vector<std::shared_ptr<Storage>> storage_;  // by value index; persistent ones point into persistent_
  // The same values as nodes on half values see them: half ones as f32 with float64 copies of
  // their own, the others shared with storage_.
  std::vector<parity_value_desc> widened_values_;
  std::vector<std::shared_ptr<Storage>> widened_storage_;
  bool poison_outputs_;
};

class RefBackend final : public Backend {
 public:
  std::string name() const override { return "ref"; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    // Read the enum's bits as an integer: a node from across the ABI may hold a value this
    // build's enum does not have, and loading that as a parity_op would be undefined.
    static_assert(sizeof(parity_op) == sizeof(int32_t), "parity_op crosses the ABI as a 32-bit int");
    int32_t op;
    std::memcpy(&op, &node.op, sizeof op);
    if (op >= 0 && op < PARITY_OP_COUNT) return true;
    if (reason)
      *reason = "ref: op " + std::to_string(op) + " of node '" + node.name +
                "' is not one this build knows (ops are 0.." + std::to_string(PARITY_OP_COUNT - 1) + ")";
    return false;
  }

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    check_plan(plan);
    return std::make_unique<RefExecutable>(plan, options, shared_executable(share_persistent_with));
  }

  // What RefExecutable allocates: a double per f32 element, an int32 per i32 element and a
  // uint16 per bf16 or f16 element of every value, persistent ones only when the executable shared with does not hold them yet,
  // and a double per half element for the float64 copy the ops on half values compute on.
  std::optional<MemoryNeed> memory_need(const parity_plan& plan, const CompileOptions& /*poisoning allocates nothing*/,
                                        Executable* share_persistent_with) const override {
    check_plan(plan);
    const RefExecutable* share = shared_executable(share_persistent_with);
    int64_t bytes = 0;
    for (int32_t i = 0; i < plan.num_values; ++i) {
      const parity_value_desc& v = plan.values[i];
      if (is_persistent(v) && share && share->holds(v)) continue;
      bytes += numel_of(v) * static_cast<int64_t>(v.dtype == PARITY_F32 ? sizeof(double)
                                                  : is_half(v.dtype)     ? sizeof(uint16_t)
                                                                         : sizeof(int32_t));
    }
    for (int32_t i = 0; i < plan.num_values; ++i) {  // every half value's float64 copy (RefExecutable)
      const parity_value_desc& v = plan.values[i];
      if (is_half(v.dtype)) bytes += numel_of(v) * static_cast<int64_t>(sizeof(double));
    }
    return MemoryNeed{bytes, 0};
  }

  int threads() const override { return 1; }

 private:
  static RefExecutable* shared_executable(Executable* share_persistent_with) {
    if (!share_persistent_with) return nullptr;
    auto* share = dynamic_cast<RefExecutable*>(share_persistent_with);
    if (!share)
      throw Error(ErrorKind::invalid_argument,
                  "ref: share_persistent_with must be an executable compiled by the ref backend; got one "
                  "from another backend");
    return share;
  }

  // What ref needs of a plan before it sizes its vectors: the kit's checks, f32, i32, bf16 and
  // f16 values (what ref stores), one name per persistent value (values are shared by name). An op or dtype
  // ref lacks is a backend error; any other broken rule is a bug in the graph layer.
  static void check_plan(const parity_plan& plan) {
    kit::PlanRules rules;
    rules.dtypes = PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) | PARITY_DTYPE_BIT(PARITY_BF16) |
                   PARITY_DTYPE_BIT(PARITY_F16);
    rules.unique_persistent_names = true;
    try {
      kit::check_plan("ref", plan, rules);
    } catch (const kit::PlanError& e) {
      const bool lacking = e.fault == kit::PlanFault::unknown_op || e.fault == kit::PlanFault::dtype;
      throw Error(lacking ? ErrorKind::backend : ErrorKind::internal, e.what());
    }
  }
};

}  // namespace
}  // namespace ref

std::unique_ptr<Backend> make_ref_backend(const BackendOptions& /*options: ref is single-threaded*/) {
  return std::make_unique<ref::RefBackend>();
}

}  // namespace parity
