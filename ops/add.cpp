// ops/add.cpp — elementwise add (how the autodiff sums gradients) and fill (its seed dL/dL = 1).
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

std::vector<Value> gradient_add(GraphBuilder&, const Node&, const std::vector<Value>& dL_dc,
                                const std::vector<bool>& needed) {
  return {needed[0] ? dL_dc[0] : Value{}, needed[1] ? dL_dc[0] : Value{}};
}

std::vector<OutputSpec> infer_fill(const OpCall&) { return {{Shape{1}, DType::f32}}; }

double flops_fill(const OpCall&) { return 0.0; }

}  // namespace

extern const OpRule add_rule{"ADD", 2, 1, infer_add, flops_add, gradient_add,
                                // a + b rounds once to float32 however precisely it is computed
                                kExactTolerance};
extern const OpRule fill_rule{"FILL", 0, 1, infer_fill, flops_fill, nullptr, kExactTolerance};

}  // namespace parity::ops
