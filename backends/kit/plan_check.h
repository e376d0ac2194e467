// backends/kit/plan_check.h — the checks of a plan's descriptors that every backend makes before
// it sizes anything from them, written once: counts and arrays, each node's op, arity and value
// indices, each value's dtype, kind, rank, dimensions and bytes, persistent names, arena offsets.
// A backend states what it needs in PlanRules; a broken rule throws PlanError (an AbiError with
// the plugin status, and which rule it was so a backend can map it to its own error kind), with a
// message naming the backend and the value or node. Header-only plain C++ (plugins link nothing).
#pragma once

#include <cstring>
#include <limits>
#include <set>
#include <string>

#include "backends/kit/abi_guard.h"
#include "backends/kit/value_desc.h"
#include "parity/plugin.h"

namespace parity {
namespace kit {

// What a backend requires of a plan beyond what every plan must satisfy.
struct PlanRules {
  // PARITY_DTYPE_BIT of each dtype the backend stores.
  uint32_t dtypes = PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32);
  // TEMP values must lie inside [0, arena_bytes), at an offset that is a multiple of their element size.
  bool temps_in_arena = false;
  // INPUT values too (a backend that keeps inputs in the plan's arena).
  bool inputs_in_arena = false;
  // Every PARAM and STATE value has a name, and no two of them share one (they are shared by name).
  bool unique_persistent_names = false;
  // Every node output is a TEMP value (PARAM and STATE values are updated in place, as inputs).
  bool outputs_are_temp = false;
};

// Which rule a plan broke.
enum class PlanFault {
  malformed,        // negative counts, missing arrays, negative arena size
  unknown_op,       // an op outside [0, PARITY_OP_COUNT)
  arity,            // a node's numbers of inputs and outputs are not its op's (PARITY_OP_LIST)
  value_index,      // a node refers to a value the plan does not have
  output_kind,      // a node writes a value that is not TEMP (rules.outputs_are_temp)
  dtype,            // not a parity_dtype, or one the backend does not store
  kind,             // not a parity_value_kind
  rank,             // outside [0, PARITY_MAX_RANK]
  dims,             // a dimension < 1
  bytes,            // bytes is not the element count times the element size
  persistent_name,  // a PARAM or STATE value without a name, or two with one name
  arena,            // an arena value outside the arena or misaligned
};

struct PlanError : AbiError {
  PlanError(PlanFault f, parity_status s, const std::string& m) : AbiError(s, m), fault(f) {}
  PlanFault fault;
};

// The status a fault crosses the plugin ABI as: what the backend lacks is UNSUPPORTED, the rest
// is a nonsensical argument.
inline parity_status status_of(PlanFault fault) {
  return fault == PlanFault::unknown_op || fault == PlanFault::dtype ? PARITY_STATUS_UNSUPPORTED
                                                                     : PARITY_STATUS_INVALID_ARGUMENT;
}

inline int64_t dtype_size(parity_dtype dtype) {
  return dtype == PARITY_I64 ? 8 : dtype == PARITY_BF16 || dtype == PARITY_F16 ? 2 : 4;
}

namespace plan_check_detail {

[[noreturn]] inline void fail(PlanFault fault, const std::string& message) {
  throw PlanError(fault, status_of(fault), message);
}

inline std::string node_name(const parity_node_desc& n) {
  return std::string(n.name, strnlen(n.name, sizeof n.name));
}

// Read as integers: a descriptor from across the ABI may hold a value the enum does not have.
template <class Enum>
int32_t enum_bits(const Enum& e) {
  static_assert(sizeof(Enum) == sizeof(int32_t), "ABI enums cross as 32-bit ints");
  int32_t bits;
  std::memcpy(&bits, &e, sizeof bits);
  return bits;
}

inline std::string stored_dtypes(uint32_t dtypes) {
  std::string s;
  for (parity_dtype d : {PARITY_F32, PARITY_I32, PARITY_I64, PARITY_BF16, PARITY_F16})
    if (dtypes & PARITY_DTYPE_BIT(d)) s += (s.empty() ? "" : ", ") + std::string(dtype_name(d));
  return s;
}

inline void check_node(const char* backend, const parity_plan& plan, const PlanRules& rules,
                       const parity_node_desc& n) {
  const std::string node = std::string(backend) + ": node '" + node_name(n) + "'";
  const int32_t op = enum_bits(n.op);
  if (op < 0 || op >= PARITY_OP_COUNT)
    fail(PlanFault::unknown_op, std::string(backend) + ": op " + std::to_string(op) + " of node '" + node_name(n) +
                                    "' is not one this build knows (ops are 0.." +
                                    std::to_string(PARITY_OP_COUNT - 1) + ")");
  const parity_op_info info = parity_op_info_of(n.op);
  // Optional trailing operands (PARITY_OP_OPTIONAL_TRAILING) make a range of arities.
  auto range = [](int32_t lo, int32_t hi) { return lo == hi ? std::to_string(hi) : std::to_string(lo) + " to " + std::to_string(hi); };
  if (n.num_inputs < info.min_inputs || n.num_inputs > info.num_inputs || n.num_outputs < info.min_outputs ||
      n.num_outputs > info.num_outputs)
    fail(PlanFault::arity, node + " (" + info.name + ") has " + std::to_string(n.num_inputs) + " inputs and " +
                               std::to_string(n.num_outputs) + " outputs; " + info.name + " takes " +
                               range(info.min_inputs, info.num_inputs) + " and " +
                               range(info.min_outputs, info.num_outputs));
  for (int32_t k = 0; k < n.num_inputs + n.num_outputs; ++k) {
    const bool is_input = k < n.num_inputs;
    const int32_t index = is_input ? n.inputs[k] : n.outputs[k - n.num_inputs];
    if (index < 0 || index >= plan.num_values)
      fail(PlanFault::value_index, node + " refers to value " + std::to_string(index) + ", outside [0, " +
                                       std::to_string(plan.num_values) + ")");
    const parity_value_desc& v = plan.values[index];
    if (!is_input && rules.outputs_are_temp && v.kind != PARITY_VALUE_TEMP)
      fail(PlanFault::output_kind, node + ": output '" + value_name(v) +
                                       "' must be a TEMP value (params and state are updated in place as inputs)");
  }
}

inline void check_value(const char* backend, const parity_plan& plan, const PlanRules& rules,
                        const parity_value_desc& v, std::set<std::string>& persistent_names) {
  const std::string value = std::string(backend) + ": plan value '" + value_name(v) + "'";
  const int32_t dtype = enum_bits(v.dtype);
  if (dtype < PARITY_F32 || dtype > PARITY_F16)
    fail(PlanFault::dtype, value + ": dtype " + std::to_string(dtype) + " is not a parity_dtype");
  if (!(rules.dtypes & PARITY_DTYPE_BIT(v.dtype)))
    fail(PlanFault::dtype, value + " has dtype " + dtype_name(v.dtype) + "; " + backend + " stores " +
                               stored_dtypes(rules.dtypes) + " values only");
  const int32_t kind = enum_bits(v.kind);
  if (kind < PARITY_VALUE_INPUT || kind > PARITY_VALUE_TEMP)
    fail(PlanFault::kind, value + ": kind " + std::to_string(kind) + " is not a parity_value_kind");
  if (v.rank < 0 || v.rank > PARITY_MAX_RANK)
    fail(PlanFault::rank, value + ": rank must be in [0, " + std::to_string(PARITY_MAX_RANK) + "], got " +
                              std::to_string(v.rank));
  int64_t numel = 1;
  for (int32_t d = 0; d < v.rank; ++d) {
    if (v.dims[d] < 1)
      fail(PlanFault::dims, value + ": every dimension must be >= 1, got " + shape_str(v.rank, v.dims));
    if (numel > std::numeric_limits<int64_t>::max() / 8 / v.dims[d])
      fail(PlanFault::dims, value + ": shape " + shape_str(v.rank, v.dims) + " has too many elements");
    numel *= v.dims[d];
  }
  const int64_t bytes = numel * dtype_size(v.dtype);
  if (v.bytes != bytes)
    fail(PlanFault::bytes, value + ": bytes must be " + std::to_string(bytes) + " for " +
                               shape_str(v.rank, v.dims) + " " + dtype_name(v.dtype) + ", got " +
                               std::to_string(v.bytes));
  if (rules.unique_persistent_names && (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE)) {
    if (v.name[0] == '\0')
      fail(PlanFault::persistent_name, value + ": a PARAM or STATE value needs a name, by which it is shared");
    if (!persistent_names.insert(value_name(v)).second)
      fail(PlanFault::persistent_name, value + ": two persistent values have this name");
  }
  const bool in_arena = (rules.temps_in_arena && v.kind == PARITY_VALUE_TEMP) ||
                        (rules.inputs_in_arena && v.kind == PARITY_VALUE_INPUT);
  if (in_arena) {
    if (v.offset < 0 || v.offset > plan.arena_bytes - v.bytes)
      fail(PlanFault::arena, value + ": bytes [" + std::to_string(v.offset) + ", " +
                                 std::to_string(v.offset + v.bytes) + ") must lie inside the arena of " +
                                 std::to_string(plan.arena_bytes) + " bytes");
    if (v.offset % dtype_size(v.dtype) != 0)
      fail(PlanFault::arena, value + ": offset " + std::to_string(v.offset) + " must be a multiple of " +
                                 std::to_string(dtype_size(v.dtype)) + " (its element size)");
  }
}

}  // namespace plan_check_detail

// Checks `plan` against what every plan must satisfy and against `rules`; throws PlanError at
// the first rule broken. Values are checked before nodes, so a node's values are known sound.
inline void check_plan(const char* backend, const parity_plan& plan, const PlanRules& rules) {
  namespace detail = plan_check_detail;
  if (plan.num_values < 0 || plan.num_nodes < 0 || plan.arena_bytes < 0 || (plan.num_values > 0 && !plan.values) ||
      (plan.num_nodes > 0 && !plan.nodes))
    detail::fail(PlanFault::malformed, std::string(backend) + ": the plan is malformed (negative counts or arena "
                                                              "size, or missing arrays)");
  std::set<std::string> persistent_names;
  for (int32_t i = 0; i < plan.num_values; ++i)
    detail::check_value(backend, plan, rules, plan.values[i], persistent_names);
  for (int32_t i = 0; i < plan.num_nodes; ++i) detail::check_node(backend, plan, rules, plan.nodes[i]);
}

}  // namespace kit
}  // namespace parity
