// backends/onednn/onednn_pool.cpp — AVGPOOL2D, AVGPOOL2D_BWD, GLOBAL_AVGPOOL and
// GLOBAL_AVGPOOL_BWD as oneDNN pooling primitives over the plan's plain nchw memory, for the
// windows where oneDNN's divisor is the op's (below); the others stay on cpu's kernels.
//
// Max pooling is not here, on purpose: MAXPOOL2D's contract includes its idx output (the flat
// h*W+w of each window's first maximum), which MAXPOOL2D_BWD reads as an input; oneDNN's max
// pooling keeps an opaque workspace instead, so neither direction can honour the op as it
// crosses the ABI (a MAXPOOL2D_BWD given any valid idx must route dy there). Tried on oneDNN
// 2.6.3's jit:avx512_core, nchw and nChw16c: ties go to the first maximum, as the op's, but a
// window [NaN, 1; 2, 3] gives 3 (and its gradient to the 3) where the op gives NaN, as torch.
//
// Divisors. PyTorch's (the op's) divisor of a window is the count of its taps inside
// [-pad, H + pad) with count_include_pad, else inside the input. oneDNN's avg_include_padding
// divides by the whole kernel and avg_exclude_padding by the taps inside the input. The second
// always agrees; the first when every window ends inside H + pad, i.e. the end padding oneDNN
// needs for the output size (derived from P, as the convolutions do) is at most pad. A window
// with no input element gives 0 in the op and a 0 divisor in oneDNN: such geometries stay on cpu.
#include <algorithm>
#include <string>

#include "backends/onednn/onednn_ops.h"

namespace parity {
namespace onednn {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

struct Window {
  memory::dims x, y, strides, kernel, pad_begin, pad_end;
  dnnl::algorithm alg = dnnl::algorithm::pooling_avg_exclude_padding;
};

// From x[N,C,H,W] and y[N,C,P,Q] as cpu checked them; false (with `why`) where oneDNN's divisor
// differs from the op's.
bool window(const cpu::BoundNode& node, const cpu::BoundValue& x, const cpu::BoundValue& y, Window* win,
            std::string* why) {
  const int64_t H = x.dims[2], W = x.dims[3], P = y.dims[2], Q = y.dims[3];
  win->x = {x.dims[0], x.dims[1], H, W};
  win->y = {y.dims[0], y.dims[1], P, Q};
  const bool global = node.op == PARITY_OP_GLOBAL_AVGPOOL || node.op == PARITY_OP_GLOBAL_AVGPOOL_BWD;
  if (global) {
    win->strides = {1, 1};
    win->kernel = {H, W};
    win->pad_begin = win->pad_end = {0, 0};
    return true;
  }
  const parity_avgpool2d_params& p = node.params.avgpool2d;
  win->strides = {p.stride_h, p.stride_w};
  win->kernel = {p.kernel_h, p.kernel_w};
  win->pad_begin = {p.pad_h, p.pad_w};
  // The least end padding that gives P and Q (oneDNN: out = (in + begin + end - kernel) / stride + 1).
  const int64_t end_h = std::max<int64_t>(0, (P - 1) * p.stride_h + p.kernel_h - H - p.pad_h);
  const int64_t end_w = std::max<int64_t>(0, (Q - 1) * p.stride_w + p.kernel_w - W - p.pad_w);
  win->pad_end = {end_h, end_w};
  if (p.pad_h >= p.kernel_h || p.pad_w >= p.kernel_w || end_h >= p.kernel_h || end_w >= p.kernel_w) {
    *why = "a window can hold no input element (the op gives 0 there, oneDNN would divide by 0)";
    return false;
  }
  if (p.count_include_pad) {
    if (end_h > p.pad_h || end_w > p.pad_w) {
      *why = "ceil_mode's last window passes the padding: torch divides it by fewer taps than oneDNN's "
             "avg_include_padding does";
      return false;
    }
    win->alg = dnnl::algorithm::pooling_avg_include_padding;
  }
  return true;
}

memory::desc f32(const memory::dims& dims) { return memory::desc(dims, memory::data_type::f32, tag::nchw); }

dnnl::pooling_forward::desc forward_desc(const Window& win) {
  return dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training, win.alg, f32(win.x), f32(win.y), win.strides,
                                     win.kernel, win.pad_begin, win.pad_end);
}

}  // namespace

std::unique_ptr<cpu::TakenNode> make_avgpool(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const bool backward = node.op == PARITY_OP_AVGPOOL2D_BWD || node.op == PARITY_OP_GLOBAL_AVGPOOL_BWD;
  // Forward: x -> y; backward: dy -> dx.
  const cpu::BoundValue& x = backward ? node.out[0] : node.in[0];
  const cpu::BoundValue& y = backward ? node.in[0] : node.out[0];
  Window win;
  if (!window(node, x, y, &win, why)) return nullptr;
  auto taken = std::make_unique<PrimitiveNode>(context);
  if (!backward) {
    const dnnl::pooling_forward::primitive_desc pd(forward_desc(win), user_scratchpad_attr(), context.engine);
    if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
    taken->set_primitive(dnnl::pooling_forward(pd), pd.scratchpad_desc(),
                         {{DNNL_ARG_SRC, plain_memory(context, x, win.x, tag::nchw)},
                          {DNNL_ARG_DST, plain_memory(context, y, win.y, tag::nchw)}});
    return taken;
  }
  const dnnl::pooling_forward::primitive_desc hint(forward_desc(win), context.engine);
  const dnnl::pooling_backward::desc desc(win.alg, f32(win.x), f32(win.y), win.strides, win.kernel, win.pad_begin,
                                          win.pad_end);
  const dnnl::pooling_backward::primitive_desc pd(desc, user_scratchpad_attr(), context.engine, hint);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  taken->set_primitive(dnnl::pooling_backward(pd), pd.scratchpad_desc(),
                       {{DNNL_ARG_DIFF_DST, plain_memory(context, y, win.y, tag::nchw)},
                        {DNNL_ARG_DIFF_SRC, plain_memory(context, x, win.x, tag::nchw)}});
  return taken;
}

}  // namespace onednn
}  // namespace parity
