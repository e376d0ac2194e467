// backends/onednn/onednn_batchnorm.cpp — BATCHNORM2D_EVAL and BATCHNORM2D_BWD (the backward of
// TRAIN and of EVAL) as oneDNN batch_normalization primitives (scale = gamma, shift = beta) over
// the plan's plain nchw memory, with the per-channel glue the op's contract needs around them.
//
// The op and oneDNN mean the same normalisation (biased batch variance, eps inside the sqrt), but
// exchange different per-channel values:
//  - EVAL and its BWD read the running mean and variance, which oneDNN takes as they are
//    (use_global_stats).
//  - BWD of TRAIN reads saved_invstd: before each run the node turns it back into the variance
//    oneDNN wants, 1 / invstd^2 - eps (a few roundings; oneDNN adds eps back).
// BATCHNORM2D_TRAIN stays on cpu (onednn_routes.cpp). It was tried (oneDNN's variance into
// saved_invstd and the running update after the primitive): oneDNN normalises with x - mean, the
// batch mean rounded to float32, where the op subtracts the first pass's shift and then the small
// correction (ops/kernels/batchnorm.h), so a channel with a large common offset (the op's case
// "mean offset 1000") loses digits the contract keeps: nmse 9.9e-9 against its 1e-11 limit.
#include <cstring>
#include <string>

#include "backends/onednn/onednn_ops.h"

namespace parity {
namespace onednn {
namespace {

using dnnl::memory;
using dnnl::normalization_flags;
using tag = dnnl::memory::format_tag;

}  // namespace

std::unique_ptr<cpu::TakenNode> make_batchnorm(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const parity_batchnorm2d_params p = node.params.batchnorm2d;
  const cpu::BoundValue& x = node.in[0];
  const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
  const memory::dims image{N, C, H, W}, channel{C};
  const memory::desc data(image, memory::data_type::f32, tag::nchw);
  const memory::desc stats(channel, memory::data_type::f32, tag::x);
  auto image_memory = [&](const cpu::BoundValue& v) { return plain_memory(context, v, image, tag::nchw); };
  auto channel_memory = [&](const cpu::BoundValue& v) { return plain_memory(context, v, channel, tag::x); };

  if (node.op == PARITY_OP_BATCHNORM2D_TRAIN) {
    *why = "not a batch-norm op this file runs";
    return nullptr;
  }
  // The BWD of TRAIN uses the batch statistics; EVAL and its BWD the running ones.
  const bool batch_stats = node.op == PARITY_OP_BATCHNORM2D_BWD && p.training;
  const normalization_flags flags = batch_stats ? normalization_flags::use_scale | normalization_flags::use_shift
                                                : normalization_flags::use_scale | normalization_flags::use_shift |
                                                      normalization_flags::use_global_stats;
  const bool forward = node.op == PARITY_OP_BATCHNORM2D_EVAL;
  const dnnl::prop_kind kind = forward ? dnnl::prop_kind::forward_inference : dnnl::prop_kind::forward_training;
  const dnnl::batch_normalization_forward::primitive_desc fwd(
      dnnl::batch_normalization_forward::desc(kind, data, p.eps, flags),
      forward ? user_scratchpad_attr() : dnnl::primitive_attr(), context.engine);
  auto taken = std::make_unique<PrimitiveNode>(context);

  if (node.op == PARITY_OP_BATCHNORM2D_EVAL) {
    // in: x, gamma, beta, running_mean, running_var; out: y.
    if (is_reference_impl(fwd.impl_info_str(), why)) return nullptr;
    taken->set_primitive(dnnl::batch_normalization_forward(fwd), fwd.scratchpad_desc(),
                                    {{DNNL_ARG_SRC, image_memory(x)},
                                     {DNNL_ARG_SCALE, channel_memory(node.in[1])},
                                     {DNNL_ARG_SHIFT, channel_memory(node.in[2])},
                                     {DNNL_ARG_MEAN, channel_memory(node.in[3])},
                                     {DNNL_ARG_VARIANCE, channel_memory(node.in[4])},
                                     {DNNL_ARG_DST, image_memory(node.out[0])}});
    return taken;
  }

  // BWD. in: x, dy, gamma, mean, stat (saved_invstd, or the running variance); out: dx, dgamma, dbeta.
  const dnnl::batch_normalization_backward::primitive_desc pd(
      dnnl::batch_normalization_backward::desc(dnnl::prop_kind::backward, data, data, p.eps, flags),
      user_scratchpad_attr(), context.engine, fwd);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  // oneDNN 2.6's backward with use_shift refuses to run without a DNNL_ARG_SHIFT, which its math
  // never reads (the op has no beta input): a zeroed buffer of the node's stands in.
  const memory unread_shift(stats, context.engine);
  std::memset(unread_shift.get_data_handle(), 0, static_cast<size_t>(C) * sizeof(float));
  memory variance = channel_memory(node.in[4]);
  if (batch_stats) {
    variance = memory(stats, context.engine);
    float* var = static_cast<float*>(variance.get_data_handle());
    const float* invstd = node.in[4].f32();
    const float eps = p.eps;
    taken->set_host_steps(
        [=] {
          for (int64_t c = 0; c < C; ++c) var[c] = 1.0f / (invstd[c] * invstd[c]) - eps;
        },
        nullptr);
  }
  taken->set_primitive(dnnl::batch_normalization_backward(pd), pd.scratchpad_desc(),
                                  {{DNNL_ARG_SRC, image_memory(x)},
                                   {DNNL_ARG_DIFF_DST, image_memory(node.in[1])},
                                   {DNNL_ARG_SCALE, channel_memory(node.in[2])},
                                   {DNNL_ARG_MEAN, channel_memory(node.in[3])},
                                   {DNNL_ARG_VARIANCE, variance},
                                   {DNNL_ARG_DIFF_SRC, image_memory(node.out[0])},
                                   {DNNL_ARG_DIFF_SCALE, channel_memory(node.out[1])},
                                   {DNNL_ARG_DIFF_SHIFT, channel_memory(node.out[2])},
                                   {DNNL_ARG_SHIFT, unread_shift}});
  return taken;
}

}  // namespace onednn
}  // namespace parity
