// backends/native/cast.cuh — bf16 and f16 values (ABI 9) in the native kernels: the CAST op
// between f32, bf16 and f16 (to the other half dtype through f32: exact, then one rounding; to the
// same dtype a copy of the bits; as ref and cpu),
// and how the ops whose kernels are f32 only run on half values (the element-wise ones are
// templated on the storage type, elementwise.cuh): through their f32 kernels, as cpu does
// (backends/cpu/half_nodes.cpp). The half inputs are widened (exactly) into f32 staging at the
// front of the workspace, the op's f32 host code runs on a view of the node whose half values
// are f32 and live there (its own workspace follows the staging), and its half outputs are
// rounded once from the staging. So each op accumulates in f32 and rounds each output element
// once; an f32 operand (a bias, db) is the op's own; f32 nodes never come here and run unchanged.
// Optimizer steps write their inputs, so they refuse half values (the policy keeps them f32).
#pragma once

#include <stdint.h>

#include <cstdlib>
#include <vector>

#include "backends/native/elementwise.cuh"  // copy_values
#include "backends/native/half_storage.h"
#include "backends/native/launch_shape.cuh"
#include "backends/native/native_node.h"

namespace parity {
namespace native {
namespace PARITY_NATIVE_NS {

// y[i] = x[i] converted: exact to f32, rounded to nearest even to bf16 and f16.
template <class From, class To>
PK_GLOBAL void convert_elements(const From* x, To* y, int64_t count) {
  for (int64_t i = grid_first(); i < count; i += grid_stride()) pk::store(y, i, pk::load(x, i));
}

template <class From, class To>
inline void convert(const void* x, void* y, int64_t count) {
  // Through a pointer: the macros would split the template's argument list at its comma.
  void (*const kernel)(const From*, To*, int64_t) = convert_elements<From, To>;
  PK_LAUNCH(kernel, element_grid(count), pk::dim3(kElementBlock), static_cast<const From*>(x), static_cast<To*>(y),
            count);
}

template <class From>
inline void convert_to(const void* x, parity_dtype to, void* y, int64_t count) {
  if (to == PARITY_BF16) convert<From, pk::bf16>(x, y, count);
  else if (to == PARITY_F16) convert<From, pk::f16>(x, y, count);
  else convert<From, float>(x, y, count);
}

// y[0, count) = x[0, count) converted from `from` to `to` (each f32, bf16 or f16).
inline void convert(const void* x, parity_dtype from, void* y, parity_dtype to, int64_t count) {
  if (from == to && is_half(from))
    PK_LAUNCH(copy_values<uint16_t>, element_grid(count), pk::dim3(kElementBlock), static_cast<const uint16_t*>(x),
              static_cast<uint16_t*>(y), count);
  else if (from == to)
    PK_LAUNCH(copy_values<float>, element_grid(count), pk::dim3(kElementBlock), static_cast<const float*>(x),
              static_cast<float*>(y), count);
  else if (from == PARITY_BF16) convert_to<pk::bf16>(x, to, y, count);
  else if (from == PARITY_F16) convert_to<pk::f16>(x, to, y, count);
  else convert_to<float>(x, to, y, count);
}

inline void* storage_of(const NativeNode& node, int32_t value) {
  const parity_value_desc& v = node.values()[static_cast<size_t>(value)];
  if (v.dtype == PARITY_F32 || is_half(v.dtype)) return node.memory().f32(value);
  node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": value '", v.name, "' must be f32, bf16 or f16"));
}

// x -> y of the same element count, y's dtype params.cast.dtype.
inline void run_cast(const NativeNode& node) {
  if (node.sizing()) return;
  const parity_value_desc &x = node.in(0), &y = node.out(0);
  node.expect_numel(y, numel_of(x));
  if (static_cast<int32_t>(y.dtype) != node.desc().params.cast.dtype)
    node.fail(PARITY_STATUS_INTERNAL, msg(node.label(), ": output '", y.name, "' has dtype ", static_cast<int>(y.dtype),
                                          ", params.cast.dtype is ", node.desc().params.cast.dtype));
  const void* from = storage_of(node, node.in_index(0));
  void* to = storage_of(node, node.out_index(0));
  if (node.launching()) convert(from, x.dtype, to, y.dtype, numel_of(x));
}

// The f32 view of a node on half values: its half values live in f32 staging in the workspace.
class WidenedMemory final : public NodeMemory {
 public:
  WidenedMemory(const NodeMemory& base, std::vector<int64_t> staged_at, int64_t op_workspace_at)
      : base_(base), staged_at_(std::move(staged_at)), op_workspace_at_(op_workspace_at) {}
  float* f32(int32_t value) const override {
    const int64_t at = staged_at_[static_cast<size_t>(value)];
    return at < 0 ? base_.f32(value) : offset(at);
  }
  int32_t* i32(int32_t value) const override { return base_.i32(value); }
  const int32_t* host_i32(int32_t value) const override { return base_.host_i32(value); }
  float* workspace() const override { return offset(op_workspace_at_); }
  [[noreturn]] void fail(parity_status status, const std::string& message) const override {
    base_.fail(status, message);
    std::abort();  // not reached: a virtual call is not known to be noreturn
  }

 private:
  float* offset(int64_t floats) const {
    float* base = base_.workspace();  // null where nothing runs (the size and check passes)
    return base ? base + floats : nullptr;
  }
  const NodeMemory& base_;
  std::vector<int64_t> staged_at_;  // per value: its staging's offset in floats, or -1
  int64_t op_workspace_at_;
};

// Runs `runner` (an op's f32 host code) on a node that has bf16 or f16 operands, as above.
inline void run_widened(const NativeNode& node, NodeRunner runner) {
  const parity_node_desc& d = node.desc();
  if (d.op == PARITY_OP_ADAM_STEP || d.op == PARITY_OP_SGD_STEP)
    node.fail(PARITY_STATUS_UNSUPPORTED, msg(node.label(), ": optimizer steps run on f32 values only (they "
                                                           "update their inputs; the precision policy keeps master "
                                                           "weights and their state f32)"));
  std::vector<parity_value_desc> values = node.values();
  std::vector<int64_t> staged_at(values.size(), -1);
  std::vector<int32_t> inputs, outputs;  // the staged values, each once
  int64_t staging = 0;
  auto stage = [&](int32_t value, std::vector<int32_t>& list) {
    parity_value_desc& v = values[static_cast<size_t>(value)];
    if (!is_half(v.dtype) || staged_at[static_cast<size_t>(value)] >= 0) return;
    staged_at[static_cast<size_t>(value)] = staging;
    staging += (numel_of(v) + 63) / 64 * 64;  // 256-byte aligned, as the workspace itself
    v.dtype = PARITY_F32;
    v.bytes = numel_of(v) * 4;
    list.push_back(value);
  };
  for (int32_t slot = 0; slot < d.num_inputs; ++slot) stage(node.in_index(slot), inputs);
  for (int32_t slot = 0; slot < d.num_outputs; ++slot) stage(node.out_index(slot), outputs);
  const WidenedMemory memory(node.memory(), staged_at, staging);
  int64_t op_workspace = 0;
  const NativeNode widened = node.rebound(values, memory, node.sizing() ? &op_workspace : nullptr);
  if (node.sizing()) {
    runner(widened);
    node.need_workspace(staging + op_workspace);
    return;
  }
  auto half_pointer = [&](int32_t value) { return node.memory().f32(value); };
  if (node.launching())
    for (int32_t value : inputs)
      convert(half_pointer(value), node.values()[static_cast<size_t>(value)].dtype, memory.f32(value), PARITY_F32,
              numel_of(values[static_cast<size_t>(value)]));
  runner(widened);  // checks, and launches when launching
  if (node.launching())
    for (int32_t value : outputs)
      convert(memory.f32(value), PARITY_F32, half_pointer(value), node.values()[static_cast<size_t>(value)].dtype,
              numel_of(values[static_cast<size_t>(value)]));
}

inline bool touches_half(const NativeNode& node) {
  const parity_node_desc& d = node.desc();
  for (int32_t slot = 0; slot < d.num_inputs; ++slot)
    if (is_half(node.in(slot).dtype)) return true;
  for (int32_t slot = 0; slot < d.num_outputs; ++slot)
    if (is_half(node.out(slot).dtype)) return true;
  return false;
}

// The ops whose kernels are templated on the storage type (elementwise.cuh, broadcast.cuh's add
// and mul, and CAST): they
// take half values as they are, with no staging.
inline bool takes_half_itself(parity_op op) {
  switch (op) {
    case PARITY_OP_CAST:
    case PARITY_OP_RESHAPE:
    case PARITY_OP_ADD:
    case PARITY_OP_MUL:
    case PARITY_OP_RELU:
    case PARITY_OP_RELU_BWD:
    case PARITY_OP_LEAKY_RELU:
    case PARITY_OP_LEAKY_RELU_BWD:
    case PARITY_OP_HARDTANH:
    case PARITY_OP_HARDTANH_BWD:
    case PARITY_OP_SIGMOID:
    case PARITY_OP_SIGMOID_BWD:
    case PARITY_OP_TANH:
    case PARITY_OP_TANH_BWD:
    case PARITY_OP_GELU:
    case PARITY_OP_GELU_BWD: return true;
    default: return false;
  }
}

// The entry of an op in the NativeOps table (native_ops_impl.h): its host code, through the
// widened view when the node has half operands and its kernels are f32 only.
template <NodeRunner runner>
inline void run_any_dtype(const NativeNode& node) {
  if (!takes_half_itself(node.desc().op) && touches_half(node)) run_widened(node, runner);
  else runner(node);
}

}  // namespace PARITY_NATIVE_NS
}  // namespace native
}  // namespace parity
