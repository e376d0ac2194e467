// backends/onednn/onednn_softmax.cpp — SOFTMAX_BWD as a oneDNN softmax_v2 backward primitive
// (softmax_accurate) over the plan's plain row-major memory, along the op's dim, reading the
// forward's output y as the op does. Its arithmetic propagates NaN and infinities as the op's
// does (tried on 2.6.3's jit:avx512_core: y or dy holding NaN or inf). The other three ops of the
// family stay on cpu (onednn_routes.cpp): there a row holding a NaN or +inf comes out of the
// forwards as zeros (log_softmax: -inf) around it where the op gives NaN, and log_softmax's
// backward gives -inf where y is NaN (the op: NaN).
#include <string>

#include "backends/onednn/onednn_ops.h"
#include "ops/kernels/softmax.h"

namespace parity {
namespace onednn {

std::unique_ptr<cpu::TakenNode> make_softmax(const Context& context, const cpu::BoundNode& node, std::string* why) {
  using dnnl::memory;
  if (node.op != PARITY_OP_SOFTMAX_BWD) {
    *why = "not the softmax op this file runs";
    return nullptr;
  }
  const cpu::BoundValue& y = node.in[0];  // in: y (the forward's output), dy; out: dx, all one shape
  static const memory::format_tag kRowMajor[] = {memory::format_tag::a,    memory::format_tag::ab,
                                                 memory::format_tag::abc,  memory::format_tag::abcd,
                                                 memory::format_tag::abcde, memory::format_tag::abcdef};
  if (y.rank < 1 || y.rank > 6) {
    *why = "oneDNN's plain layouts here cover ranks 1 to 6, not " + std::to_string(y.rank);
    return nullptr;
  }
  const int axis = kernels::softmax_dim(node.params.softmax, y.rank);  // cpu checked it names a dim
  const memory::dims dims(y.dims, y.dims + y.rank);
  const memory::format_tag tag = kRowMajor[y.rank - 1];
  const memory::desc desc(dims, memory::data_type::f32, tag);
  const dnnl::algorithm alg = dnnl::algorithm::softmax_accurate;
  const dnnl::softmax_v2_forward::primitive_desc hint(
      dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_training, alg, desc, desc, axis), context.engine);
  const dnnl::softmax_v2_backward::primitive_desc pd(dnnl::softmax_v2_backward::desc(alg, desc, desc, desc, axis),
                                                     user_scratchpad_attr(), context.engine, hint);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  auto taken = std::make_unique<PrimitiveNode>(context);
  taken->set_primitive(dnnl::softmax_v2_backward(pd), pd.scratchpad_desc(),
                       {{DNNL_ARG_DST, plain_memory(context, y, dims, tag)},
                        {DNNL_ARG_DIFF_DST, plain_memory(context, node.in[1], dims, tag)},
                        {DNNL_ARG_DIFF_SRC, plain_memory(context, node.out[0], dims, tag)}});
  return taken;
}

}  // namespace onednn
}  // namespace parity
