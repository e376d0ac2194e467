// backends/onednn/onednn_eltwise.cpp — the activations whose contract oneDNN's eltwise keeps, as
// oneDNN eltwise primitives: SIGMOID, TANH and GELU with their backwards, and LEAKY_RELU forward,
// over the plan's plain memory seen as one flat vector (the ops are element-wise, so the shape
// does not matter).
//
// Each maps to the oneDNN algorithm whose documented formula is the op's contract (parity/op_list.h,
// ops/kernels/activation.h), NaN and infinities included (the forwards and gelu's backward tried
// with NaN and +-inf on 2.6.3's jit:avx512_core; the use_dst backwards are arithmetic on y, dy):
//   SIGMOID_BWD  reads y:  logistic_use_dst_for_bwd  ds = dd * d * (1 - d)
//   TANH_BWD     reads y:  tanh_use_dst_for_bwd      ds = dd * (1 - d^2)
//   LEAKY_RELU   relu with the slope as alpha (NaN stays NaN, -0 stays -0)
//   GELU(_BWD)   reads x:  gelu_erf (-inf gives NaN, as torch)
// The rest stay on cpu (onednn_routes.cpp says why), each for what oneDNN 2.6.3 does there:
//   RELU         relu(NaN) = 0; the op keeps NaN (so does the relu a conv fuses: onednn_conv2d.cpp)
//   HARDTANH     clip_v2(NaN) = min_val; the op keeps NaN
//   RELU_BWD, HARDTANH_BWD   dd * 0 is -0 for a negative dd where the op writes +0, under a
//                bit-equality tolerance (`parity check ops` failed 3 of 6 and 4 of 10 cases)
//   LEAKY_RELU_BWD  x = NaN passes dd where the op takes the slope branch
#include <string>

#include "backends/onednn/onednn_ops.h"

namespace parity {
namespace onednn {
namespace {

using dnnl::algorithm;
using dnnl::memory;

struct Eltwise {
  algorithm alg;
  float alpha = 0.f, beta = 0.f;
  bool backward = false;
};

Eltwise eltwise_of(const cpu::BoundNode& node) {
  const parity_op_params& p = node.params;
  switch (node.op) {
    case PARITY_OP_SIGMOID: return {algorithm::eltwise_logistic};
    case PARITY_OP_SIGMOID_BWD: return {algorithm::eltwise_logistic_use_dst_for_bwd, 0.f, 0.f, true};
    case PARITY_OP_TANH: return {algorithm::eltwise_tanh};
    case PARITY_OP_TANH_BWD: return {algorithm::eltwise_tanh_use_dst_for_bwd, 0.f, 0.f, true};
    case PARITY_OP_LEAKY_RELU: return {algorithm::eltwise_relu, p.leaky_relu.negative_slope};
    case PARITY_OP_GELU: return {algorithm::eltwise_gelu_erf};
    case PARITY_OP_GELU_BWD: return {algorithm::eltwise_gelu_erf, 0.f, 0.f, true};
    default: return {algorithm::undef};
  }
}

// The use_dst algorithms read the forward output (DNNL_ARG_DST), the others its input (SRC).
bool reads_dst(algorithm alg) {
  return alg == algorithm::eltwise_logistic_use_dst_for_bwd || alg == algorithm::eltwise_tanh_use_dst_for_bwd;
}

}  // namespace

std::unique_ptr<cpu::TakenNode> make_eltwise(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const Eltwise e = eltwise_of(node);
  if (e.alg == algorithm::undef) {
    *why = "not an activation this file runs";
    return nullptr;
  }
  if (node.op == PARITY_OP_LEAKY_RELU && e.alpha == 0.f) {
    *why = "slope 0 is relu, whose NaN oneDNN turns into 0";
    return nullptr;
  }
  const memory::dims flat{node.in[0].numel};
  const memory::desc desc(flat, memory::data_type::f32, memory::format_tag::a);
  auto flat_memory = [&](const cpu::BoundValue& v) { return plain_memory(context, v, flat, memory::format_tag::a); };
  const dnnl::eltwise_forward::primitive_desc forward(
      dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, e.alg, desc, e.alpha, e.beta),
      e.backward ? dnnl::primitive_attr() : user_scratchpad_attr(), context.engine);
  auto taken = std::make_unique<PrimitiveNode>(context);
  if (!e.backward) {
    if (is_reference_impl(forward.impl_info_str(), why)) return nullptr;
    taken->set_primitive(dnnl::eltwise_forward(forward), forward.scratchpad_desc(),
                         {{DNNL_ARG_SRC, flat_memory(node.in[0])}, {DNNL_ARG_DST, flat_memory(node.out[0])}});
    return taken;
  }
  // in: y or x (the forward's output or input), dy; out: dx.
  const dnnl::eltwise_backward::primitive_desc pd(dnnl::eltwise_backward::desc(e.alg, desc, desc, e.alpha, e.beta),
                                                  user_scratchpad_attr(), context.engine, forward);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  taken->set_primitive(dnnl::eltwise_backward(pd), pd.scratchpad_desc(),
                       {{reads_dst(e.alg) ? DNNL_ARG_DST : DNNL_ARG_SRC, flat_memory(node.in[0])},
                        {DNNL_ARG_DIFF_DST, flat_memory(node.in[1])},
                        {DNNL_ARG_DIFF_SRC, flat_memory(node.out[0])}});
  return taken;
}

}  // namespace onednn
}  // namespace parity
