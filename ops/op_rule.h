// ops/op_rule.h — what the graph knows about each op: arity, validation with shape inference,
// FLOP count, the gradient rule, the tolerance and the conformance cases. One OpRule per op,
// defined in the op's own file; the table of them is generated from PARITY_OP_LIST. ops/
// depends only on api/: a gradient emits its nodes through NodeEmitter, which graph/ implements.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "ops/conformance.h"
#include "parity/graph.h"
#include "parity/plugin.h"
#include "parity/tensor.h"

namespace parity::ops {

struct OutputSpec {
  Shape shape;
  DType dtype = DType::f32;
};

// The node being checked: its name for messages, its params, and its inputs' shapes. `op`
// names the op in the shared checks' messages (callers that only count FLOPs may leave it).
struct OpCall {
  const std::string& node;
  const parity_op_params& params;
  const std::vector<const ValueInfo*>& inputs;
  parity_op op = PARITY_OP_COUNT;
};

// What a gradient rule adds nodes through: the graph being differentiated (graph/autodiff.cpp
// implements it over GraphBuilder), so that ops/ needs nothing of graph/.
class NodeEmitter {
 public:
  virtual ~NodeEmitter() = default;
  // Adds a node validated by its rule; returns its outputs.
  virtual std::vector<Value> node(parity_op op, const parity_op_params& params, const std::vector<Value>& inputs,
                                  const std::string& name) = 0;
  // A RESHAPE of x to `shape` (the target shape is no op parameter, so it has its own call).
  virtual Value reshape(Value x, const Shape& shape, const std::string& name) = 0;
  virtual const ValueInfo& value(Value v) const = 0;
};

// Emits the backward of one node. `dL_doutputs[i]` is invalid when output i receives no
// gradient; `needed[i]` says whether input i wants one. Returns dL/d(input) per input
// (invalid where not needed or not differentiable).
using GradientFn = std::vector<Value> (*)(NodeEmitter& emit, const Node& node, const std::vector<Value>& dL_doutputs,
                                          const std::vector<bool>& needed);

// How closely a float32 backend must match ref's float64 result, and why that number.
struct Tolerance {
  // The op alone, on identical inputs: normalised mean squared error bound (0: bit equality
  // with ref's result rounded to float32).
  double op_nmse;
  // The op inside a training step, whose inputs already carry the float32 error of the nodes
  // before it. Integer outputs (indices) are compared by the fraction of elements that differ.
  double step_nmse;
  const char* why;
  // With small-integer inputs every intermediate is an exactly representable integer, so the
  // float32 result must equal ref's bit for bit (`parity check ops --exact`).
  bool integer_exact;
};

// An op that accepts bf16 and f16 values (issue #14, docs/autocast.md): how closely a backend's
// half output must match ref's float64 result rounded once to the half dtype, and which operands
// stay f32 when the others are half (the bias of conv2d and linear, added in f32 before the one
// rounding). Outputs follow the half operands' dtype unless the op's rule says otherwise
// (db, indices).
struct HalfSupport {
  Tolerance bf16;
  Tolerance f16;
  uint32_t f32_operands = 0;  // bit k: input k stays f32 in a half case
};

struct OpRule {
  const char* name;  // parity_op_name(op); tests/test_graph.cpp checks it and the arity against the list
  int num_inputs;
  int num_outputs;
  // Validates the call (throws Error(shape/invalid_argument) naming op, node, value and rule)
  // and returns the outputs' shapes and dtypes.
  std::vector<OutputSpec> (*infer)(const OpCall& call);
  // Floating-point operations of one execution (a multiply-add counts 2).
  double (*flops)(const OpCall& call);
  GradientFn gradient;  // nullptr: the op is not differentiable
  Tolerance tolerance;
  // The `parity check ops` cases of the op's family, set on the family's forward op only
  // (nullptr on the others: their cases come with the forward's).
  const ConformanceFamily* conformance = nullptr;
  // Bit k set: output k carries no gradient (the gradient rule ignores dL/d output k), as
  // torch's output_differentiability says of batchnorm's saved statistics. `parity check ops
  // --gradient` seeds only the other f32 outputs.
  uint32_t nondifferentiable_outputs = 0;
  // Set on the ops that accept bf16 and f16 values; nullptr: f32 only (a half operand is refused
  // by the rule's infer).
  const HalfSupport* half = nullptr;
};

// The tolerance of `rule` for outputs of `dtype`: the rule's own for f32 (and integer outputs),
// its HalfSupport's for bf16 and f16 (an op with half outputs but no HalfSupport, CAST, states
// one tolerance for every dtype).
const Tolerance& tolerance_for(const OpRule& rule, DType dtype);
bool is_half(DType dtype);

// Shared tolerance arguments (the per-op files pick one or state their own).
// Dot products: a float32 sum of K products has a relative error of about sqrt(K) * 2^-24 per
// element (random signs), so for K up to a few thousand the NMSE is below 1e-11; 1e-9 leaves
// margin, while one wrong element in a thousand by 1% gives NMSE ~1e-7 and fails.
extern const Tolerance kDotProductTolerance;
// No arithmetic on values (copies, selections, comparisons): ref's result rounded to float32
// is exactly what a correct backend produces.
extern const Tolerance kExactTolerance;
// The same two classes for half outputs (op_rule.cpp argues the numbers): arithmetic in f32
// rounded once to the half dtype, and no arithmetic on values (bit equality).
extern const HalfSupport kHalfRoundedSupport;
extern const HalfSupport kHalfExactSupport;
// Arithmetic in f32 whose one multiply or divide by a non-integer rounds twice (f32, then half):
// kHalfRoundedSupport's bounds, not exact on small integers.
extern const HalfSupport kHalfScaledSupport;

// The op's rule; throws Error(invalid_argument) outside [0, PARITY_OP_COUNT).
const OpRule& rule(parity_op op);
// The op's lower-case name from PARITY_OP_LIST ("softmax_xent"), as messages and builder
// methods spell it; "unknown" outside the list.
const char* lower_name(parity_op op);

// Shared pieces of element-wise ops (the activations): f32 x -> y of x's shape; y (the forward
// output), dy -> dx of one shape; and the gradient that feeds the forward's output and dy to
// `backward`.
std::vector<OutputSpec> infer_elementwise_forward(const OpCall& call);
std::vector<OutputSpec> infer_elementwise_backward(const OpCall& call);
std::vector<Value> gradient_from_output(NodeEmitter& emit, const Node& node, const std::vector<Value>& dL_dy,
                                        const std::vector<bool>& needed, parity_op backward);

// Shared checks with messages of the form "<op> '<node>': <value> <rule>, got <what>".
void require_rank(const OpCall& call, int input, int rank, const char* what);
void require_dtype(const OpCall& call, int input, DType dtype, const char* what);
void require_same_shape(const OpCall& call, int a, int b);
// For ops that run in their operands' dtype: input `operands[0]` must be f32, bf16 or f16 and
// every other listed input must have the same dtype; returns it. A mismatch names the op, both
// operands and both dtypes ("conv2d 'c1': weight 'w' is f16 but input 'x' is bf16 ...").
DType require_float_operands(const OpCall& call, std::initializer_list<std::pair<int, const char*>> operands);
[[noreturn]] void fail(const OpCall& call, const char* op, const std::string& message);

}  // namespace parity::ops
