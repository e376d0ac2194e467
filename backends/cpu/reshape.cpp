// backends/cpu/reshape.cpp — reshape on the cpu backend, any dtype: the same elements under a
// new shape. A copy, unless the plan placed y on x's bytes, when there is nothing to do.
#include <cstring>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {

int64_t prepare_reshape(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  const BoundValue& x = node.in[0];
  const BoundValue& y = node.out[0];
  if (x.dtype != y.dtype) fail(node, "y must have the dtype of x");
  if (x.numel != y.numel)
    fail(node, "y " + y.shape_str() + " must have as many elements as x " + x.shape_str());
  return 0;
}

void run_reshape(const BoundNode& node) {
  if (node.in[0].data == node.out[0].data) return;
  const size_t bytes = static_cast<size_t>(node.in[0].numel) * dtype_bytes(node.in[0].dtype);
  std::memmove(node.out[0].data, node.in[0].data, bytes);
}

}  // namespace cpu
}  // namespace parity
