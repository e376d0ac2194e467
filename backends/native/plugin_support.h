// backends/native/plugin_support.h — what the native-kernel backends (the cuda and hip plugins,
// and simt where it applies) share around their device calls: the kit's ABI guard under the
// plugins' names, op names, the validation of a plan's descriptors before anything is sized from
// them, the start of a new executable, the persistent values shared by name (the kit's store),
// the checks of host writes and reads of a value, and the range check of raw buffer copies.
// Plain C++ (no vendor header), so it compiles under g++, hipcc and nvcc alike.
#pragma once

#include <stdint.h>

#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/kit/abi_guard.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/plan_check.h"
#include "backends/native/native_node.h"  // msg, numel_of, shape_str, value_name
#include "parity/plugin.h"

namespace parity {
namespace native {

// The ABI edge comes from the kit; these are the plugins' names for it.
using PluginError = kit::AbiError;
using kit::copy_message;
using kit::report;

[[noreturn]] inline void plugin_fail(parity_status status, const std::string& message) { kit::abi_fail(status, message); }

// Runs one entry point's body; nothing thrown leaves it. `backend` prefixes the messages of
// exceptions that carry no backend name of their own; any other std::exception is a kernel
// launch that failed (pk.h names the kernel), so a device failure.
template <class Body>
parity_status guarded(const char* backend, parity_error* err, Body&& body) {
  return kit::guarded(err, msg(backend, ": "), body, [&](const std::exception& e, parity_status& status,
                                                           std::string& message) {
    status = PARITY_STATUS_DEVICE;
    message = msg(backend, ": ", e.what());
  });
}

// The op names of plugin.h (generated from PARITY_OP_LIST), under the name the plugins pass.
inline const char* op_name(parity_op op) { return parity_op_name(op); }

// Why the native kernels cannot run op `op` of this build on a target that stores half values
// when `half_values` (else f32 and i32 only), or nullptr when they can: every op runs, CAST only
// where half values are stored (ABI 9: a plugin storing none refuses CAST in supports(); every
// target built on these kernels stores them now, so none passes `false` today).
inline const char* native_lacks(int32_t op, bool half_values) {
  return op == PARITY_OP_CAST && !half_values
             ? "CAST needs bf16 or f16 values, which this target does not store yet (its library routes are planned "
               "for f32)"
             : nullptr;
}

// The dtypes the native backends store: f32 and i32, and bf16 and f16 where `half_values` (simt
// and every GPU plugin: HIP and gpu_emu on the native kernels, CUDA with half descriptors for its
// cuDNN and cuBLAS routes, backends/gpu/gpu_executable.h).
inline uint32_t native_dtypes(bool half_values) {
  return PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32) |
         (half_values ? PARITY_DTYPE_BIT(PARITY_BF16) | PARITY_DTYPE_BIT(PARITY_F16) : 0u);
}

// The ABI's supports(): every op this build knows (read as an integer: the caller may pass any)
// that the native kernels have on a target storing half values or not (native_lacks).
inline int32_t supports_known_op(const char* backend, const parity_node_desc* node, char* reason, size_t reason_len,
                                 bool half_values) {
  if (!node) {
    copy_message(reason, reason_len, msg(backend, ": supports: node is NULL"));
    return 0;
  }
  int32_t op;
  std::memcpy(&op, &node->op, sizeof op);
  if (const char* lacking = op >= 0 && op < PARITY_OP_COUNT ? native_lacks(op, half_values) : nullptr) {
    copy_message(reason, reason_len, msg(backend, ": node '", node->name, "': ", lacking));
    return 0;
  }
  if (op >= 0 && op < PARITY_OP_COUNT) return 1;
  copy_message(reason, reason_len, msg(backend, ": op ", op, " of node '", node->name, "' is not one this build knows"));
  return 0;
}

inline bool is_persistent(const parity_value_desc& v) { return kit::is_persistent(v.kind); }

// Refuses a malformed plan before anything is sized from it, by the kit's checks (counts and
// arrays, ops this build knows and their arity, value indices, kinds, ranks, dimensions, byte
// counts) with the rules of the native backends: the dtypes of native_dtypes(half_values), and
// arena offsets for the values that live in the plan's arena (TEMP, and INPUT when
// `inputs_in_arena`). An op or dtype it lacks is PARITY_STATUS_UNSUPPORTED, any other fault
// PARITY_STATUS_INVALID_ARGUMENT.
inline void validate_plan(const char* backend, const parity_plan* plan, bool inputs_in_arena, bool half_values) {
  kit::PlanRules rules;
  rules.dtypes = native_dtypes(half_values);
  rules.temps_in_arena = true;
  rules.inputs_in_arena = inputs_in_arena;
  kit::check_plan(backend, *plan, rules);
}

// The storage of a PARAM or STATE value, shared by name between the executables of one
// instance: created on first use (Persistent(const parity_value_desc&) allocates it), else the
// existing one, which must have the same dtype and shape.
template <class Persistent>
std::shared_ptr<Persistent> shared_persistent(const char* backend, kit::PersistentStore<Persistent>& store,
                                              const parity_value_desc& v) {
  return store.bind(
      v, [&] { return std::make_shared<Persistent>(v); },
      [&](const parity_value_desc& s) {
        plugin_fail(PARITY_STATUS_SHAPE, msg(backend, ": persistent value '", value_name(v), "' is ",
                                             shape_str(v.rank, v.dims), " in this plan but ", shape_str(s.rank, s.dims),
                                             " in the executable it shares storage with; shared values must match"));
      });
}

// The descriptor of value `index` for `what` (a write, a read), which must name one of `values`.
inline const parity_value_desc& value_desc_at(const char* backend, const std::vector<parity_value_desc>& values,
                                              int32_t index, const char* what) {
  if (index < 0 || index >= static_cast<int32_t>(values.size()))
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT,
                msg(backend, ": ", what, " of value ", index, ": no such value, the plan has ", values.size()));
  return values[static_cast<size_t>(index)];
}

// A host copy of value v (`what`: write, read) must move exactly its bytes (f32 and i32: 4 each,
// bf16 and f16: 2).
inline void check_value_bytes(const char* backend, const char* what, const parity_value_desc& v, int64_t bytes) {
  const int64_t expected = numel_of(v) * kit::dtype_size(v.dtype);
  if (bytes != expected)
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": ", what, " value '", v.name, "' ",
                                                    shape_str(v.rank, v.dims), " needs ", expected, " bytes, got ",
                                                    bytes));
}

// The descriptor of a value a host write fills: it must exist, not be TEMP, and take `bytes`.
inline const parity_value_desc& value_to_write(const char* backend, const std::vector<parity_value_desc>& values,
                                               int32_t index, int64_t bytes) {
  const parity_value_desc& v = value_desc_at(backend, values, index, "write");
  if (v.kind == PARITY_VALUE_TEMP)
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": write to value '", v.name,
                                                    "' refused: only INPUT, PARAM and STATE values can be written"));
  check_value_bytes(backend, "write to", v, bytes);
  return v;
}

// The descriptor of a value a host read copies out: it must exist, be kept if TEMP, and give `bytes`.
inline const parity_value_desc& value_to_read(const char* backend, const std::vector<parity_value_desc>& values,
                                              int32_t index, int64_t bytes) {
  const parity_value_desc& v = value_desc_at(backend, values, index, "read");
  if (v.kind == PARITY_VALUE_TEMP && !v.keep)
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT,
                msg(backend, ": read of value '", v.name, "' refused: it is a TEMP value the plan did not mark keep"));
  check_value_bytes(backend, "read of", v, bytes);
  return v;
}

// What compile checks before it makes anything: the plan (validate_plan) and that share_with,
// when given, is an executable of the same instance (`same_instance`).
inline void check_compile(const char* backend, const parity_plan* plan, bool inputs_in_arena, bool half_values,
                          bool share_with_given, bool same_instance) {
  validate_plan(backend, plan, inputs_in_arena, half_values);
  if (share_with_given && !same_instance)
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT,
                msg(backend, ": share_with must be an executable of this same backend instance"));
}

// The part of a new GPU executable every plugin fills alike: its instance, the plan's values and
// nodes (copied: the plan is only borrowed), the persistent store (share_with's, or a new one)
// and whether temporaries are poisoned.
template <class Executable, class Instance>
void start_executable(Executable& exe, Instance* instance, const parity_plan* plan, const Executable* share_with,
                      uint32_t flags) {
  exe.instance = instance;
  exe.values.assign(plan->values, plan->values + plan->num_values);
  exe.nodes.assign(plan->nodes, plan->nodes + plan->num_nodes);
  using Store = typename decltype(exe.persistent)::element_type;
  exe.persistent = share_with ? share_with->persistent : std::make_shared<Store>();
  exe.poison = (flags & PARITY_COMPILE_POISON_OUTPUTS) != 0;
}

// A raw buffer copy's bytes [offset, offset + bytes) must lie within the buffer's `size`.
inline void check_buffer_range(const char* backend, bool buffer_is_null, int64_t size, int64_t offset, int64_t bytes,
                               const char* function) {
  if (buffer_is_null) plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": ", function, ": buffer is NULL"));
  if (offset < 0 || bytes < 0 || offset > size || bytes > size - offset)
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": ", function, ": bytes [", offset, ", ", offset + bytes,
                                                    ") are outside the buffer's ", size));
}

}  // namespace native
}  // namespace parity
