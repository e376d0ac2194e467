// backends/cpu/fill.cpp — fill on the cpu backend, float32: every element of y set to
// params.fill.value (the autodiff seed dL/dL = 1). No inputs, no gradient.
#include <algorithm>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {

int64_t prepare_fill(BoundNode& node) {
  expect_arity(node, 0, 0, 1, 1);
  expect_value(node, node.out[0], "y", PARITY_F32, -1);
  return 0;
}

void run_fill(const BoundNode& node) {
  std::fill_n(node.out[0].f32(), node.out[0].numel, node.params.fill.value);
}

}  // namespace cpu
}  // namespace parity
