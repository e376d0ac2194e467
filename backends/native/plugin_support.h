// backends/native/plugin_support.h — what the GPU plugins (backends/hip, backends/cuda) share
// around their device calls: the error that travels to the ABI boundary as status + message,
// the wrapper that keeps every exception from crossing it, op names, the validation of a plan's
// descriptors before anything is sized from them, the lookup of persistent values shared by
// name between executables, and the range check of raw buffer copies. Plain C++ (no vendor
// header), so it compiles under g++, hipcc and nvcc alike.
#pragma once

#include <stdint.h>

#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "backends/native/dispatch.h"  // msg, numel_of, shape_str, value_name
#include "parity/plugin.h"

namespace parity {
namespace native {

// A failure inside a plugin: returned by the entry point as this status and message.
struct PluginError : std::runtime_error {
  PluginError(parity_status s, const std::string& m) : std::runtime_error(m), status(s) {}
  parity_status status;
};

[[noreturn]] inline void plugin_fail(parity_status status, const std::string& message) {
  throw PluginError(status, message);
}

inline void copy_message(char* dst, size_t capacity, const std::string& message) {
  if (!dst || capacity == 0) return;
  const size_t n = message.size() < capacity - 1 ? message.size() : capacity - 1;
  std::memcpy(dst, message.data(), n);
  dst[n] = '\0';
}

inline parity_status report(parity_error* err, parity_status status, const std::string& message) {
  if (err) {
    err->status = status;
    copy_message(err->message, sizeof err->message, message);
  }
  return status;
}

// Runs one entry point's body; nothing thrown leaves it. `backend` prefixes the messages of
// exceptions that carry no backend name of their own.
template <class Body>
parity_status guarded(const char* backend, parity_error* err, Body&& body) {
  try {
    body();
    return PARITY_OK;
  } catch (const PluginError& e) {
    return report(err, e.status, e.what());
  } catch (const std::bad_alloc&) {
    return report(err, PARITY_STATUS_OUT_OF_MEMORY, msg(backend, ": out of host memory"));
  } catch (const std::exception& e) {  // a kernel launch that failed (pk.h names the kernel)
    return report(err, PARITY_STATUS_DEVICE, msg(backend, ": ", e.what()));
  } catch (...) {
    return report(err, PARITY_STATUS_INTERNAL, msg(backend, ": an unknown exception"));
  }
}

// The op names of plugin.h (generated from PARITY_OP_LIST), under the name the plugins pass.
inline const char* op_name(parity_op op) { return parity_op_name(op); }

// The ABI's supports(): every op this build knows (read as an integer: the caller may pass any).
inline int32_t supports_known_op(const char* backend, const parity_node_desc* node, char* reason, size_t reason_len) {
  if (!node) {
    copy_message(reason, reason_len, msg(backend, ": supports: node is NULL"));
    return 0;
  }
  int32_t op;
  std::memcpy(&op, &node->op, sizeof op);
  if (op >= 0 && op < PARITY_OP_COUNT) return 1;
  copy_message(reason, reason_len, msg(backend, ": op ", op, " of node '", node->name, "' is not one this build knows"));
  return 0;
}

inline bool is_persistent(const parity_value_desc& v) {
  return v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE;
}

// Refuses a malformed plan before anything is sized from it: counts and arrays, ops this build
// knows, ranks, dimensions, dtypes a GPU plugin stores (f32, i32), byte counts, and the arena
// offsets of the values that live in the plan's arena (TEMP, and INPUT when `inputs_in_arena`).
inline void validate_plan(const char* backend, const parity_plan* plan, bool inputs_in_arena) {
  if (plan->num_values < 0 || plan->num_nodes < 0 || (plan->num_values && !plan->values) ||
      (plan->num_nodes && !plan->nodes) || plan->arena_bytes < 0)
    plugin_fail(PARITY_STATUS_INVALID_ARGUMENT,
                msg(backend, ": compile: the plan's counts, arrays or arena size are malformed"));
  for (int32_t i = 0; i < plan->num_nodes; ++i) {
    char reason[256] = {};
    if (!supports_known_op(backend, &plan->nodes[i], reason, sizeof reason))
      plugin_fail(PARITY_STATUS_UNSUPPORTED, reason);
  }
  for (int32_t i = 0; i < plan->num_values; ++i) {
    const parity_value_desc& v = plan->values[i];
    if (v.rank < 0 || v.rank > PARITY_MAX_RANK)
      plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": value '", value_name(v), "' has rank ", v.rank,
                                                      ", must be in [0, ", PARITY_MAX_RANK, "]"));
    for (int32_t d = 0; d < v.rank; ++d)
      if (v.dims[d] < 1)
        plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": value '", value_name(v), "' has dimension ", d,
                                                        " = ", v.dims[d], ", must be >= 1"));
    if (v.dtype != PARITY_F32 && v.dtype != PARITY_I32)
      plugin_fail(PARITY_STATUS_UNSUPPORTED,
                  msg(backend, ": value '", value_name(v), "' has a dtype ", backend, " does not store (f32, i32)"));
    if (v.bytes != numel_of(v) * 4)
      plugin_fail(PARITY_STATUS_INVALID_ARGUMENT, msg(backend, ": value '", value_name(v), "' ",
                                                      shape_str(v.rank, v.dims), " says ", v.bytes,
                                                      " bytes, its shape needs ", numel_of(v) * 4));
    const bool in_arena = v.kind == PARITY_VALUE_TEMP || (inputs_in_arena && v.kind == PARITY_VALUE_INPUT);
    if (in_arena && (v.offset < 0 || v.offset % 4 != 0 || v.offset > plan->arena_bytes - v.bytes))
      plugin_fail(PARITY_STATUS_INVALID_ARGUMENT,
                  msg(backend, ": value '", value_name(v), "' at arena offset ", v.offset, " (", v.bytes,
                      " bytes) does not fit the plan's arena of ", plan->arena_bytes, " bytes 4-aligned"));
  }
}

// The storage of a PARAM or STATE value, shared by name between the executables of one
// instance: created on first use (Persistent(const parity_value_desc&) allocates it), else the
// existing one, which must have the same dtype and shape.
template <class Persistent>
std::shared_ptr<Persistent> shared_persistent(const char* backend, std::map<std::string, std::shared_ptr<Persistent>>& store,
                                              const parity_value_desc& v) {
  auto it = store.find(value_name(v));
  if (it == store.end()) return store[value_name(v)] = std::make_shared<Persistent>(v);
  const parity_value_desc& s = it->second->desc;
  bool same = s.dtype == v.dtype && s.rank == v.rank;
  for (int32_t i = 0; same && i < v.rank; ++i) same = s.dims[i] == v.dims[i];
  if (!same)
    plugin_fail(PARITY_STATUS_SHAPE, msg(backend, ": persistent value '", value_name(v), "' is ",
                                         shape_str(v.rank, v.dims), " in this plan but ", shape_str(s.rank, s.dims),
                                         " in the executable it shares storage with; shared values must match"));
  return it->second;
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
