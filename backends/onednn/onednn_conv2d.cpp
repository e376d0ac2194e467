// backends/onednn/onednn_conv2d.cpp — CONV2D (bias, and relu after it, on the host, when cpu's
// fusion pass fused the relu into it), CONV2D_BWD_DATA and CONV2D_BWD_WEIGHT (db too) as oneDNN
// convolution primitives in the layouts oneDNN chooses, reordered from and to the plan's plain
// nchw / oihw (goihw with groups) memory at each node's edges.
#include <string>

#include "backends/onednn/onednn_ops.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace onednn {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

// The window of a node in oneDNN's terms, from x[N,C,H,W], w[K,C/G,R,S] and y[N,K,P,Q] as cpu
// checked them. oneDNN counts dilation from 0, and wants the right/bottom padding that makes
// its output size formula give exactly P and Q: the op's floor division may leave padded rows
// unread, so the end padding is derived from P rather than taken from the params.
struct Window {
  memory::dims x, w, y, b, strides, dilates, pad_begin, pad_end;
  tag w_tag = tag::oihw;
};

Window window(const cpu::BoundNode& node, const cpu::BoundValue& x, const cpu::BoundValue& w,
              const cpu::BoundValue& y) {
  const kernels::Conv2dWindow cw = kernels::conv2d_window(node.params.conv2d);
  const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
  const int64_t K = w.dims[0], R = w.dims[2], S = w.dims[3], P = y.dims[2], Q = y.dims[3];
  Window win;
  win.x = {N, C, H, W};
  win.y = {N, K, P, Q};
  win.b = {K};
  if (cw.groups == 1) {
    win.w = {K, C, R, S};
  } else {
    // [K, C/G, R, S] is [G, K/G, C/G, R, S] in the same bytes.
    win.w = {cw.groups, K / cw.groups, C / cw.groups, R, S};
    win.w_tag = tag::goihw;
  }
  win.strides = {cw.stride_h, cw.stride_w};
  win.dilates = {cw.dilation_h - 1, cw.dilation_w - 1};
  win.pad_begin = {cw.pad_top, cw.pad_left};
  win.pad_end = {(P - 1) * cw.stride_h + cw.dilation_h * (R - 1) + 1 - H - cw.pad_top,
                 (Q - 1) * cw.stride_w + cw.dilation_w * (S - 1) + 1 - W - cw.pad_left};
  return win;
}

memory::desc f32(const memory::dims& dims, tag t) { return memory::desc(dims, memory::data_type::f32, t); }
// An operand whose layout oneDNN chooses (onednn_ops.h: reordered at the node's edges).
memory::desc chosen(const memory::dims& dims) { return f32(dims, tag::any); }

// The forward descriptor: the primitive of CONV2D, and the hint the backward ones are made with.
// Biases stay plain (x).
dnnl::convolution_forward::desc forward_desc(const Window& win, bool with_bias) {
  using dnnl::convolution_forward;
  if (with_bias)
    return convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                     chosen(win.x), chosen(win.w), f32(win.b, tag::x), chosen(win.y), win.strides,
                                     win.dilates, win.pad_begin, win.pad_end);
  return convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                   chosen(win.x), chosen(win.w), chosen(win.y), win.strides, win.dilates,
                                   win.pad_begin, win.pad_end);
}

std::unique_ptr<cpu::TakenNode> forward(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const cpu::BoundValue &x = node.in[0], &w = node.in[1], &y = node.out[0];
  const bool with_bias = node.num_inputs == 3;
  const Window win = window(node, x, w, y);
  const dnnl::convolution_forward::primitive_desc pd(forward_desc(win, with_bias), user_scratchpad_attr(),
                                                     context.engine);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  auto taken = std::make_unique<PrimitiveNode>(context);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, taken->input(plain_memory(context, x, win.x, tag::nchw), pd.src_desc())},
      {DNNL_ARG_WEIGHTS, taken->input(plain_memory(context, w, win.w, win.w_tag), pd.weights_desc())},
      {DNNL_ARG_DST, taken->output(plain_memory(context, y, win.y, tag::nchw), pd.dst_desc())}};
  if (with_bias) args.emplace(DNNL_ARG_BIAS, plain_memory(context, node.in[2], win.b, tag::x));
  taken->set_primitive(dnnl::convolution_forward(pd), pd.scratchpad_desc(), std::move(args));
  // cpu's fusion pass gave this node the relu's output (relu), the 2x2 max-pool after it
  // (pool_after), or both. The relu: relu(conv + b), as cpu's fused kernel. Not as oneDNN's relu
  // post-op, which (like its eltwise relu, jit:avx512_core of 2.6.3) turns a NaN into 0 where
  // the op keeps it: kernels::relu_f32 over y in place, once y is plain. The pool: cpu's kernel
  // over the whole of y after that (the node it would have run as is skipped).
  const bool relu = node.fusion.relu;
  const cpu::BoundNode* pool = node.fusion.pool_after;
  if (relu || pool) {
    float* out = y.f32();
    const int64_t count = y.numel;
    const int64_t chunk = cpu::fixed_chunk_size(count, 16384, 4096);
    const int64_t planes = y.dims[0] * y.dims[1];
    taken->set_host_steps(nullptr, [out, count, chunk, relu, pool, planes] {
      if (relu)
        cpu::parallel_chunks(count, chunk, [out](int64_t, int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) out[i] = kernels::relu_f32(out[i]);
        });
      if (pool)
        cpu::parallel_chunks(planes, pool->chunk, [pool](int64_t, int64_t begin, int64_t end) {
          cpu::maxpool2x2_rows_f32(*pool, begin, end, 0, pool->out[0].dims[2]);
        });
    });
  }
  return taken;
}

std::unique_ptr<cpu::TakenNode> backward_data(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const cpu::BoundValue &dy = node.in[0], &w = node.in[1], &dx = node.out[0];
  const Window win = window(node, dx, w, dy);
  const dnnl::convolution_forward::primitive_desc hint(forward_desc(win, false), context.engine);
  const dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, chosen(win.x), chosen(win.w),
                                                   chosen(win.y), win.strides, win.dilates, win.pad_begin,
                                                   win.pad_end);
  const dnnl::convolution_backward_data::primitive_desc pd(desc, user_scratchpad_attr(), context.engine, hint);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  auto taken = std::make_unique<PrimitiveNode>(context);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_DIFF_DST, taken->input(plain_memory(context, dy, win.y, tag::nchw), pd.diff_dst_desc())},
      {DNNL_ARG_WEIGHTS, taken->input(plain_memory(context, w, win.w, win.w_tag), pd.weights_desc())},
      {DNNL_ARG_DIFF_SRC, taken->output(plain_memory(context, dx, win.x, tag::nchw), pd.diff_src_desc())}};
  taken->set_primitive(dnnl::convolution_backward_data(pd), pd.scratchpad_desc(), std::move(args));
  return taken;
}

std::unique_ptr<cpu::TakenNode> backward_weight(const Context& context, const cpu::BoundNode& node,
                                                std::string* why) {
  if (node.fusion.pool_source) {
    *why = "cpu fused the max-pool backward that makes its dy into it (that dy is never written)";
    return nullptr;
  }
  const cpu::BoundValue &x = node.in[0], &dy = node.in[1], &dw = node.out[0];
  const bool with_bias = node.num_outputs == 2;
  const Window win = window(node, x, dw, dy);
  const dnnl::convolution_forward::primitive_desc hint(forward_desc(win, with_bias), context.engine);
  using dnnl::convolution_backward_weights;
  const convolution_backward_weights::desc desc =
      with_bias ? convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, chosen(win.x),
                                                     chosen(win.w), f32(win.b, tag::x), chosen(win.y), win.strides,
                                                     win.dilates, win.pad_begin, win.pad_end)
                : convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, chosen(win.x),
                                                     chosen(win.w), chosen(win.y), win.strides, win.dilates,
                                                     win.pad_begin, win.pad_end);
  const convolution_backward_weights::primitive_desc pd(desc, user_scratchpad_attr(), context.engine, hint);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  auto taken = std::make_unique<PrimitiveNode>(context);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, taken->input(plain_memory(context, x, win.x, tag::nchw), pd.src_desc())},
      {DNNL_ARG_DIFF_DST, taken->input(plain_memory(context, dy, win.y, tag::nchw), pd.diff_dst_desc())},
      {DNNL_ARG_DIFF_WEIGHTS,
       taken->output(plain_memory(context, dw, win.w, win.w_tag), pd.diff_weights_desc())}};
  if (with_bias) args.emplace(DNNL_ARG_DIFF_BIAS, plain_memory(context, node.out[1], win.b, tag::x));
  taken->set_primitive(convolution_backward_weights(pd), pd.scratchpad_desc(), std::move(args));
  return taken;
}

}  // namespace

std::unique_ptr<cpu::TakenNode> make_conv2d(const Context& context, const cpu::BoundNode& node, std::string* why) {
  if (node.fusion.sparse_dy && cpu::sparse_dy_applies(node)) {
    // A max-pool's gradient is at least three quarters zeros, and cpu's kernel for it visits the
    // nonzeros only; oneDNN's dense convolution does four times that work.
    *why = "its dy is a max-pool gradient, which cpu's sparse-dy kernel visits nonzero by nonzero";
    return nullptr;
  }
  switch (node.op) {
    case PARITY_OP_CONV2D: return forward(context, node, why);
    case PARITY_OP_CONV2D_BWD_DATA: return backward_data(context, node, why);
    case PARITY_OP_CONV2D_BWD_WEIGHT: return backward_weight(context, node, why);
    default: *why = "not a convolution"; return nullptr;
  }
}

}  // namespace onednn
}  // namespace parity
