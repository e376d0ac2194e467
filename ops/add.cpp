// ops/add.cpp — elementwise add (how the autodiff sums gradients) and fill (its seed dL/dL = 1),
// with their conformance cases and reshape's.
#include "ops/op_rule.h"

namespace parity::ops {
namespace {

std::vector<OutputSpec> infer_add(const OpCall& c) {
  require_dtype(c, 0, DType::f32, "a");
  require_dtype(c, 1, DType::f32, "b");
  require_same_shape(c, 0, 1);
  return {{c.inputs[0]->shape, DType::f32}};
}

double flops_add(const OpCall& c) { return double(c.inputs[0]->shape.numel()); }

std::vector<Value> gradient_add(NodeEmitter&, const Node&, const std::vector<Value>& dL_dc,
                                const std::vector<bool>& needed) {
  return {needed[0] ? dL_dc[0] : Value{}, needed[1] ? dL_dc[0] : Value{}};
}

std::vector<OutputSpec> infer_fill(const OpCall&) { return {{Shape{1}, DType::f32}}; }

double flops_fill(const OpCall&) { return 0.0; }

void elementwise_cases(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& dims) {
  const Shape shape(dims);
  Tensor a = draw.values(shape), b = draw.values(shape);
  out.push_back({PARITY_OP_ADD, {}, {{a}, {b}}, shape.str()});
  out.push_back({PARITY_OP_RESHAPE, {}, {{a}}, shape.str()});
}

void builtin_elementwise(std::vector<OpCase>& out, Draw& draw) { elementwise_cases(out, draw, {3, 4, 5}); }

void builtin_fill(std::vector<OpCase>& out, Draw&) {
  parity_op_params fill{};
  fill.fill.value = 1.0f;
  out.push_back({PARITY_OP_FILL, fill, {}, "[1]"});
}

const ConformanceFamily kElementwiseCases{"add reshape", "the tensor's dims", 1, 6, false, 5, builtin_elementwise,
                                          elementwise_cases};
const ConformanceFamily kFillCases{"", "", 0, 0, false, 6, builtin_fill, nullptr};

}  // namespace

extern const OpRule add_rule{"ADD", 2, 1, infer_add, flops_add, gradient_add,
                                // a + b rounds once to float32 however precisely it is computed
                                kExactTolerance, &kElementwiseCases};
extern const OpRule fill_rule{"FILL", 0, 1, infer_fill, flops_fill, nullptr, kExactTolerance, &kFillCases};

}  // namespace parity::ops
