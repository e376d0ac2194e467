// backends/cpu/cpu_ops.cpp — the shape checks and worker-slot lookup that the op files of the
// cpu backend share (declared in cpu_ops.h).
#include <oneapi/tbb/task_arena.h>

#include "backends/cpu/cpu_ops.h"
#include "backends/kit/value_desc.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
std::string shape_str(const int64_t* dims, int32_t rank) { return kit::shape_str(rank, dims); }

const char* dtype_name(parity_dtype dtype) { return kit::dtype_name(dtype); }

std::string BoundValue::shape_str() const { return cpu::shape_str(dims, rank); }

void fail(const BoundNode& node, const std::string& message) {
  throw Error(ErrorKind::shape, std::string("cpu: ") + parity_op_name(node.op) + " '" + node.name + "': " + message);
}

void expect_arity(const BoundNode& node, int32_t min_inputs, int32_t max_inputs, int32_t min_outputs,
                  int32_t max_outputs) {
  auto range = [](int32_t lo, int32_t hi) {
    return lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi);
  };
  if (node.num_inputs < min_inputs || node.num_inputs > max_inputs)
    fail(node, "takes " + range(min_inputs, max_inputs) + " inputs, got " + std::to_string(node.num_inputs));
  if (node.num_outputs < min_outputs || node.num_outputs > max_outputs)
    fail(node, "gives " + range(min_outputs, max_outputs) + " outputs, got " + std::to_string(node.num_outputs));
}

void expect_value(const BoundNode& node, const BoundValue& v, const char* role, parity_dtype dtype, int32_t rank) {
  if (v.dtype != dtype)
    fail(node, std::string(role) + " ('" + v.name + "') must be " + dtype_name(dtype) + ", got " +
                   dtype_name(v.dtype));
  if (rank >= 0 && v.rank != rank)
    fail(node, std::string(role) + " ('" + v.name + "') must have rank " + std::to_string(rank) + ", got " +
                   v.shape_str());
}

void expect_dims(const BoundNode& node, const BoundValue& v, const char* role, const int64_t* dims, int32_t rank,
                 const char* rule) {
  bool same = v.rank == rank;
  for (int32_t i = 0; same && i < rank; ++i) same = v.dims[i] == dims[i];
  if (same) return;
  BoundValue expected;
  expected.rank = rank;
  for (int32_t i = 0; i < rank; ++i) expected.dims[i] = dims[i];
  fail(node, std::string(role) + " ('" + v.name + "') must be " + expected.shape_str() + " (" + rule + "), got " +
                 v.shape_str());
}

void expect_same_shape(const BoundNode& node, const BoundValue& a, const char* role_a, const BoundValue& b,
                       const char* role_b) {
  expect_dims(node, b, role_b, a.dims, a.rank, (std::string("the shape of ") + role_a).c_str());
}

int32_t worker_slot(int32_t slots) {
  const int index = tbb::this_task_arena::current_thread_index();
  if (index < 0 || index >= slots)
    throw Error(ErrorKind::internal, "cpu: worker slot " + std::to_string(index) + " is outside [0, " +
                                         std::to_string(slots) + "): an op ran outside its executable's arena");
  return index;
}

}  // namespace cpu
}  // namespace parity
