// ops/op_rule.cpp — the op table (one explicit entry per op) and the shared validation helpers.
#include "ops/op_rule.h"

#include <fmt/format.h>

#include "parity/error.h"

namespace parity::ops {

// In a training step every node's inputs differ from ref's by the float32 rounding of up to a
// dozen nodes before it, each adding NMSE ~1e-12..1e-11; 1e-8 keeps two orders of margin.
const Tolerance kDotProductTolerance{1e-9, 1e-8, "float32 dot products: sqrt(K) * 2^-24 relative error per element",
                                     true};
// Inside a step, the inputs of a copy/select op already differ from ref's (see above); a
// maxpool window whose top two values are within that error may pick another element, so
// index outputs may differ in a small fraction (1e-3) of elements.
const Tolerance kExactTolerance{0.0, 1e-8, "no arithmetic on values: bit equality with ref rounded to float32", true};

extern const OpRule conv2d_rule, conv2d_bwd_data_rule, conv2d_bwd_weight_rule;
extern const OpRule relu_rule, relu_bwd_rule;
extern const OpRule maxpool2d_rule, maxpool2d_bwd_rule;
extern const OpRule reshape_rule;
extern const OpRule linear_rule, linear_bwd_data_rule, linear_bwd_weight_rule;
extern const OpRule softmax_xent_rule, softmax_xent_bwd_rule;
extern const OpRule argmax_rule, accuracy_rule;
extern const OpRule add_rule, fill_rule;
extern const OpRule adam_step_rule, sgd_step_rule;

const OpRule& rule(parity_op op) {
  switch (op) {
    case PARITY_OP_CONV2D: return conv2d_rule;
    case PARITY_OP_CONV2D_BWD_DATA: return conv2d_bwd_data_rule;
    case PARITY_OP_CONV2D_BWD_WEIGHT: return conv2d_bwd_weight_rule;
    case PARITY_OP_RELU: return relu_rule;
    case PARITY_OP_RELU_BWD: return relu_bwd_rule;
    case PARITY_OP_MAXPOOL2D: return maxpool2d_rule;
    case PARITY_OP_MAXPOOL2D_BWD: return maxpool2d_bwd_rule;
    case PARITY_OP_RESHAPE: return reshape_rule;
    case PARITY_OP_LINEAR: return linear_rule;
    case PARITY_OP_LINEAR_BWD_DATA: return linear_bwd_data_rule;
    case PARITY_OP_LINEAR_BWD_WEIGHT: return linear_bwd_weight_rule;
    case PARITY_OP_SOFTMAX_XENT: return softmax_xent_rule;
    case PARITY_OP_SOFTMAX_XENT_BWD: return softmax_xent_bwd_rule;
    case PARITY_OP_ARGMAX: return argmax_rule;
    case PARITY_OP_ACCURACY: return accuracy_rule;
    case PARITY_OP_ADD: return add_rule;
    case PARITY_OP_ADAM_STEP: return adam_step_rule;
    case PARITY_OP_SGD_STEP: return sgd_step_rule;
    case PARITY_OP_FILL: return fill_rule;
    case PARITY_OP_COUNT: break;
  }
  throw Error(ErrorKind::invalid_argument, fmt::format("unknown op {}", static_cast<int>(op)));
}

void fail(const OpCall& call, const char* op, const std::string& message) {
  throw Error(ErrorKind::shape, fmt::format("{} '{}': {}", op, call.node, message));
}

void require_rank(const OpCall& call, int input, int rank, const char* what) {
  const ValueInfo& v = *call.inputs[static_cast<size_t>(input)];
  if (v.shape.rank() != rank)
    throw Error(ErrorKind::shape, fmt::format("'{}': {} '{}' must have rank {}, got shape {}", call.node, what,
                                              v.name, rank, v.shape.str()));
}

void require_dtype(const OpCall& call, int input, DType dtype, const char* what) {
  const ValueInfo& v = *call.inputs[static_cast<size_t>(input)];
  if (v.dtype != dtype)
    throw Error(ErrorKind::shape, fmt::format("'{}': {} '{}' must be {}, got {}", call.node, what, v.name,
                                              to_string(dtype), to_string(v.dtype)));
}

void require_same_shape(const OpCall& call, int a, int b) {
  const ValueInfo& va = *call.inputs[static_cast<size_t>(a)];
  const ValueInfo& vb = *call.inputs[static_cast<size_t>(b)];
  if (va.shape != vb.shape)
    throw Error(ErrorKind::shape, fmt::format("'{}': '{}' {} and '{}' {} must have the same shape", call.node,
                                              va.name, va.shape.str(), vb.name, vb.shape.str()));
}

}  // namespace parity::ops

extern "C" const char* parity_op_name(parity_op op) {
  if (op < 0 || op >= PARITY_OP_COUNT) return "UNKNOWN";
  return parity::ops::rule(op).name;
}
