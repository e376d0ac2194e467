// backends/native/native_node.h — what an op's host code (`run_<name>` in its .cuh) sees of one
// plan node: its descriptor and value descriptors, the device pointers of its operands, the
// host-readable contents of i32 inputs when the backend has them, the workspace, the shape
// checks every op uses, and the pass it runs in:
//
//   size    only report the workspace the node needs (need_workspace); nothing is checked that
//           a later pass checks, nothing is read or launched
//   check   validate arity, dtypes, shapes and run-time data; launch nothing (the CUDA plugin's
//           checks before it queues anything, and at compile)
//   launch  validate as `check` does, then launch the op's kernels
//
// An op's host code, in the .cuh of its family, has this shape (broadcast.cuh's run_clip_coef; elementwise.cuh's
// element-wise activations are one PARITY_NATIVE_ELEMENTWISE_OP line each):
//
//   inline void run_<name>(const NativeNode& node) {
//     [shapes the workspace depends on; node.need_workspace(floats);]
//     if (node.sizing()) return;
//     shape checks (dim, expect_numel), data checks (host_i32_in), operands (f32_in, f32_out:
//     their dtypes are checked even when nothing launches);
//     if (node.launching()) PK_LAUNCH(...);
//   }
//
// The backend's storage is reached through NodeMemory (type-erased: the per-target tables hold
// plain function pointers). Plain C++ (no pk.h): included by the backends' host code and by the
// .cuh files that nvcc, hipcc and g++ (simt) compile.
#pragma once

#include <stdint.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "backends/kit/value_desc.h"
#include "parity/plugin.h"

namespace parity {
namespace native {

using kit::numel_of;
using kit::shape_str;
using kit::value_name;

// Message text: strings and integers, concatenated.
inline std::string msg_part(const std::string& s) { return s; }
inline std::string msg_part(const char* s) { return s; }
template <class Int>
std::string msg_part(Int i) {
  return std::to_string(i);
}
template <class... Parts>
std::string msg(const Parts&... parts) {
  return (std::string() + ... + msg_part(parts));
}

// How a backend stores values, as the op code reaches them.
class NodeMemory {
 public:
  // The value's storage (device pointer on a GPU); for a bf16 or f16 value its first byte, typed
  // float* only to keep one accessor (half_in / half_out hand it on as void*).
  virtual float* f32(int32_t value) const = 0;
  virtual int32_t* i32(int32_t value) const = 0;
  // Its contents readable on the host now, or nullptr when they exist only on the device (then
  // the data checks of that value are skipped).
  virtual const int32_t* host_i32(int32_t value) const = 0;
  virtual float* workspace() const = 0;  // the floats the size pass asked for
  [[noreturn]] virtual void fail(parity_status status, const std::string& message) const = 0;

 protected:
  ~NodeMemory() = default;
};

enum class NodePass { size, check, launch };

inline bool is_half(parity_dtype dtype) { return dtype == PARITY_BF16 || dtype == PARITY_F16; }

class NativeNode {
 public:
  // backend: the prefix of messages ("simt"); op_name: the op's name in messages;
  // workspace_needed: where need_workspace keeps the largest need (the size pass), or nullptr.
  NativeNode(const char* backend, const char* (*op_name)(parity_op), const parity_node_desc& desc,
             const std::vector<parity_value_desc>& values, const NodeMemory& memory, NodePass pass,
             int64_t* workspace_needed)
      : backend_(backend), op_name_(op_name), desc_(desc), values_(values), mem_(memory), pass_(pass),
        workspace_needed_(workspace_needed) {}

  const parity_node_desc& desc() const { return desc_; }
  const std::vector<parity_value_desc>& values() const { return values_; }
  const NodeMemory& memory() const { return mem_; }
  // This node seen through other value descriptors and memory (the f32 view of a node on half
  // values, cast.cuh), in the same pass; the size pass records into `workspace_needed`.
  NativeNode rebound(const std::vector<parity_value_desc>& values, const NodeMemory& memory,
                     int64_t* workspace_needed) const {
    return NativeNode(backend_, op_name_, desc_, values, memory, pass_, workspace_needed);
  }
  const char* backend() const { return backend_; }
  NodePass pass() const { return pass_; }
  bool sizing() const { return pass_ == NodePass::size; }
  bool launching() const { return pass_ == NodePass::launch; }

  // The size pass: records that the node needs `floats` floats of workspace.
  void need_workspace(int64_t floats) const {
    if (workspace_needed_ && floats > *workspace_needed_) *workspace_needed_ = floats;
  }
  float* workspace() const { return mem_.workspace(); }

  // "<backend>: <op> node '<name>'", the start of the op's messages.
  std::string label() const { return msg(backend_, ": ", op_name_(desc_.op), " node '", desc_.name, "'"); }
  [[noreturn]] void fail(parity_status status, const std::string& message) const {
    mem_.fail(status, message);
    std::abort();  // not reached: a virtual call is not known to be noreturn
  }

  // The value index and descriptor of input / output `slot` (a node without it is a graph bug).
  int32_t in_index(int32_t slot) const {
    if (slot >= desc_.num_inputs)
      fail(PARITY_STATUS_INTERNAL, msg(label(), " has ", desc_.num_inputs, " inputs; the op needs input ", slot));
    return desc_.inputs[slot];
  }
  int32_t out_index(int32_t slot) const {
    if (slot >= desc_.num_outputs)
      fail(PARITY_STATUS_INTERNAL, msg(label(), " has ", desc_.num_outputs, " outputs; the op needs output ", slot));
    return desc_.outputs[slot];
  }
  const parity_value_desc& in(int32_t slot) const { return values_[static_cast<size_t>(in_index(slot))]; }
  const parity_value_desc& out(int32_t slot) const { return values_[static_cast<size_t>(out_index(slot))]; }

  // Operand storage, after checking the value's dtype.
  float* f32_in(int32_t slot) const { return f32(in_index(slot)); }
  int32_t* i32_in(int32_t slot) const { return i32(in_index(slot)); }
  float* f32_out(int32_t slot) const { return f32(out_index(slot)); }
  int32_t* i32_out(int32_t slot) const { return i32(out_index(slot)); }
  // The storage of a bf16 or f16 operand (its dtype checked: the caller reads it from the value).
  void* half_in(int32_t slot) const { return half(in_index(slot)); }
  void* half_out(int32_t slot) const { return half(out_index(slot)); }
  // Input `slot`'s contents on the host, or nullptr (always in the size pass: nothing is written yet).
  const int32_t* host_i32_in(int32_t slot) const {
    const int32_t value = in_index(slot);
    return sizing() ? nullptr : mem_.host_i32(value);
  }

  void expect_dtype(int32_t value, parity_dtype dtype) const {
    const parity_value_desc& v = values_[static_cast<size_t>(value)];
    if (v.dtype != dtype)
      fail(PARITY_STATUS_INTERNAL, msg(label(), ": value '", v.name, "' has the wrong dtype for the op"));
  }
  // Dimension `axis` of v, which must have rank `rank`.
  int64_t dim(const parity_value_desc& v, int32_t rank, int32_t axis) const {
    if (v.rank != rank)
      fail(PARITY_STATUS_INTERNAL,
           msg(label(), ": value '", v.name, "' has rank ", v.rank, ", the op needs rank ", rank));
    return v.dims[axis];
  }
  // The kernels index with the shapes they are given: a value of another size is a graph bug.
  void expect_numel(const parity_value_desc& v, int64_t expected) const {
    if (numel_of(v) != expected)
      fail(PARITY_STATUS_INTERNAL, msg(label(), ": value '", v.name, "' ", shape_str(v.rank, v.dims), " has ",
                                       numel_of(v), " elements, the op needs ", expected));
  }

 private:
  float* f32(int32_t value) const {
    expect_dtype(value, PARITY_F32);
    return mem_.f32(value);
  }
  int32_t* i32(int32_t value) const {
    expect_dtype(value, PARITY_I32);
    return mem_.i32(value);
  }
  void* half(int32_t value) const {
    const parity_value_desc& v = values_[static_cast<size_t>(value)];
    if (!is_half(v.dtype))
      fail(PARITY_STATUS_INTERNAL, msg(label(), ": value '", v.name, "' is not bf16 or f16 as the op needs"));
    return mem_.f32(value);
  }

  const char* backend_;
  const char* (*op_name_)(parity_op);
  const parity_node_desc& desc_;
  const std::vector<parity_value_desc>& values_;
  const NodeMemory& mem_;
  NodePass pass_;
  int64_t* workspace_needed_;
};

// The host code of one op for one target: checks, workspace need, launches (per pass).
using NodeRunner = void (*)(const NativeNode& node);

}  // namespace native
}  // namespace parity
