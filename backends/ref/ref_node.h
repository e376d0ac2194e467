// backends/ref/ref_node.h — one node of a ref executable as its run_<op> function sees it: a
// value's Storage, and RefNode, the node's descriptor with typed access to its operands and the
// op-independent shape checks (rank, element counts), each failing with the node's name.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/kit/value_desc.h"
#include "parity/error.h"
#include "parity/plugin.h"

namespace parity::ref {

// One value's storage. f32 values are widened to double on write (exact) and rounded to the
// nearest float on read; i32 values are kept as int32 so labels and indices need no conversion;
// bf16 and f16 values (ABI 9) are kept as their bit patterns, so that what CAST makes of a NaN
// is read back bit for bit.
struct Storage {
  parity_dtype dtype = PARITY_F32;
  int32_t rank = 0;
  int64_t dims[PARITY_MAX_RANK] = {};
  std::vector<double> f64;
  std::vector<int32_t> i32;
  std::vector<uint16_t> h16;
};

inline bool is_half(parity_dtype dtype) { return dtype == PARITY_BF16 || dtype == PARITY_F16; }

// A node and the values of the executable running it. A mismatch found here (a missing operand,
// a wrong dtype, rank or element count) is a bug in the graph layer, reported as internal.
class RefNode {
 public:
  RefNode(const parity_node_desc& desc, const std::vector<parity_value_desc>& values,
          const std::vector<std::shared_ptr<Storage>>& storage)
      : desc_(desc), values_(values), storage_(storage) {}

  const parity_node_desc& desc() const { return desc_; }
  const parity_op_params& params() const { return desc_.params; }

  // "ref: <OP> node '<name>'", the start of every message about this node.
  std::string label() const { return std::string("ref: ") + parity_op_name(desc_.op) + " node '" + desc_.name + "'"; }

  // --- typed access to the node's operands ---

  double* f_in(int32_t slot) const { return typed(input_index(slot), PARITY_F32).f64.data(); }
  int32_t* i_in(int32_t slot) const { return typed(input_index(slot), PARITY_I32).i32.data(); }
  double* f_out(int32_t slot) const { return typed(output_index(slot), PARITY_F32).f64.data(); }
  int32_t* i_out(int32_t slot) const { return typed(output_index(slot), PARITY_I32).i32.data(); }
  // The bits of a bf16 or f16 operand (`dtype` is the one the op expects).
  uint16_t* h_in(int32_t slot, parity_dtype dtype) const { return typed(input_index(slot), dtype).h16.data(); }
  uint16_t* h_out(int32_t slot, parity_dtype dtype) const { return typed(output_index(slot), dtype).h16.data(); }
  const parity_value_desc& in_desc(int32_t slot) const { return values_[static_cast<size_t>(input_index(slot))]; }
  const parity_value_desc& out_desc(int32_t slot) const { return values_[static_cast<size_t>(output_index(slot))]; }

  // --- shape checks ---

  // Dimension `axis` of a value the op reads as rank `rank`.
  int64_t dim(const parity_value_desc& v, int32_t rank, int32_t axis) const {
    if (v.rank != rank)
      throw Error(ErrorKind::internal, label() + ": value '" + v.name + "' has rank " + std::to_string(v.rank) +
                                           ", the op needs rank " + std::to_string(rank));
    return v.dims[axis];
  }

  // Guards the loops of ref_ops against writing or reading past a vector the graph sized wrongly.
  void expect_numel(const parity_value_desc& v, int64_t expected) const {
    if (kit::numel_of(v) != expected)
      throw Error(ErrorKind::internal, label() + ": value '" + v.name + "' " + kit::shape_str(v.rank, v.dims) +
                                           " has " + std::to_string(kit::numel_of(v)) + " elements, the op needs " +
                                           std::to_string(expected));
  }

  // The element count of an element-wise node (the activations and their gradients), whose
  // `inputs` inputs and one output all hold that many values.
  int64_t elementwise_count(int32_t inputs) const {
    const int64_t count = kit::numel_of(in_desc(0));
    for (int32_t slot = 1; slot < inputs; ++slot) expect_numel(in_desc(slot), count);
    expect_numel(out_desc(0), count);
    return count;
  }

 private:
  int32_t input_index(int32_t slot) const {
    if (slot >= desc_.num_inputs)
      throw Error(ErrorKind::internal, label() + " has " + std::to_string(desc_.num_inputs) +
                                           " inputs; the op needs input " + std::to_string(slot));
    return desc_.inputs[slot];
  }
  int32_t output_index(int32_t slot) const {
    if (slot >= desc_.num_outputs)
      throw Error(ErrorKind::internal, label() + " has " + std::to_string(desc_.num_outputs) +
                                           " outputs; the op needs output " + std::to_string(slot));
    return desc_.outputs[slot];
  }

  Storage& typed(int32_t value, parity_dtype dtype) const {
    const parity_value_desc& v = values_[static_cast<size_t>(value)];
    if (v.dtype != dtype)
      throw Error(ErrorKind::internal, label() + ": value '" + v.name + "' is " + kit::dtype_name(v.dtype) +
                                           ", the op needs " + kit::dtype_name(dtype));
    return *storage_[static_cast<size_t>(value)];
  }

  const parity_node_desc& desc_;
  const std::vector<parity_value_desc>& values_;
  const std::vector<std::shared_ptr<Storage>>& storage_;
};

}  // namespace parity::ref
