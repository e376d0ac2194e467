// ops/op_rule.h — what the graph knows about each op: arity, validation with shape inference,
// FLOP count, and the gradient rule. One OpRule per op, defined in the op's own file.
#pragma once

#include <string>
#include <vector>

#include "parity/graph.h"
#include "parity/plugin.h"
#include "parity/tensor.h"

namespace parity::ops {

struct OutputSpec {
  Shape shape;
  DType dtype = DType::f32;
};

// The node being checked: its name for messages, its params, and its inputs' shapes.
struct OpCall {
  const std::string& node;
  const parity_op_params& params;
  const std::vector<const ValueInfo*>& inputs;
};

// Emits the backward of one node. `dL_doutputs[i]` is invalid when output i receives no
// gradient; `needed[i]` says whether input i wants one. Returns dL/d(input) per input
// (invalid where not needed or not differentiable).
using GradientFn = std::vector<Value> (*)(GraphBuilder& builder, const Node& node,
                                          const std::vector<Value>& dL_doutputs,
                                          const std::vector<bool>& needed);

struct OpRule {
  const char* name;
  int num_inputs;
  int num_outputs;
  // Validates the call (throws Error(shape/invalid_argument) naming node, value and rule)
  // and returns the outputs' shapes and dtypes.
  std::vector<OutputSpec> (*infer)(const OpCall& call);
  // Floating-point operations of one execution (a multiply-add counts 2).
  double (*flops)(const OpCall& call);
  GradientFn gradient;  // nullptr: the op is not differentiable
};

const OpRule& rule(parity_op op);

// Shared checks with messages of the form "<op> '<node>': <value> <rule>, got <what>".
void require_rank(const OpCall& call, int input, int rank, const char* what);
void require_dtype(const OpCall& call, int input, DType dtype, const char* what);
void require_same_shape(const OpCall& call, int a, int b);
[[noreturn]] void fail(const OpCall& call, const char* op, const std::string& message);

}  // namespace parity::ops
