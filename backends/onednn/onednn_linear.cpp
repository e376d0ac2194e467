// backends/onednn/onednn_linear.cpp — LINEAR (bias optional), LINEAR_BWD_DATA and
// LINEAR_BWD_WEIGHT (db too) as oneDNN inner-product primitives over the plan's plain
// x[N,I] (nc), w[O,I] (oi), b[O] (x) and y[N,O] (nc).
#include <string>

#include "backends/onednn/onednn_ops.h"

namespace parity {
namespace onednn {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

struct Sizes {
  memory::dims x, w, b, y;
};

// From x[N,I] and w[O,I], as cpu checked them.
Sizes sizes(const cpu::BoundValue& x, const cpu::BoundValue& w) {
  const int64_t N = x.dims[0], I = x.dims[1], O = w.dims[0];
  return Sizes{{N, I}, {O, I}, {O}, {N, O}};
}

memory::desc f32(const memory::dims& dims, tag t) { return memory::desc(dims, memory::data_type::f32, t); }

dnnl::inner_product_forward::desc forward_desc(const Sizes& s, bool with_bias) {
  using dnnl::inner_product_forward;
  if (with_bias)
    return inner_product_forward::desc(dnnl::prop_kind::forward_training, f32(s.x, tag::nc), f32(s.w, tag::oi),
                                       f32(s.b, tag::x), f32(s.y, tag::nc));
  return inner_product_forward::desc(dnnl::prop_kind::forward_training, f32(s.x, tag::nc), f32(s.w, tag::oi),
                                     f32(s.y, tag::nc));
}

std::unique_ptr<cpu::TakenNode> forward(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const cpu::BoundValue &x = node.in[0], &w = node.in[1], &y = node.out[0];
  const bool with_bias = node.num_inputs == 3;
  const Sizes s = sizes(x, w);
  const dnnl::inner_product_forward::primitive_desc pd(forward_desc(s, with_bias), user_scratchpad_attr(),
                                                       context.engine);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, plain_memory(context, x, s.x, tag::nc)},
                                       {DNNL_ARG_WEIGHTS, plain_memory(context, w, s.w, tag::oi)},
                                       {DNNL_ARG_DST, plain_memory(context, y, s.y, tag::nc)}};
  if (with_bias) args.emplace(DNNL_ARG_BIAS, plain_memory(context, node.in[2], s.b, tag::x));
  auto taken = std::make_unique<PrimitiveNode>(context);
  taken->set_primitive(dnnl::inner_product_forward(pd), pd.scratchpad_desc(), std::move(args));
  return taken;
}

std::unique_ptr<cpu::TakenNode> backward_data(const Context& context, const cpu::BoundNode& node, std::string* why) {
  const cpu::BoundValue &dy = node.in[0], &w = node.in[1], &dx = node.out[0];
  const Sizes s = sizes(dx, w);
  const dnnl::inner_product_forward::primitive_desc hint(forward_desc(s, false), context.engine);
  const dnnl::inner_product_backward_data::desc desc(f32(s.x, tag::nc), f32(s.w, tag::oi), f32(s.y, tag::nc));
  const dnnl::inner_product_backward_data::primitive_desc pd(desc, user_scratchpad_attr(), context.engine, hint);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, plain_memory(context, dy, s.y, tag::nc)},
                                       {DNNL_ARG_WEIGHTS, plain_memory(context, w, s.w, tag::oi)},
                                       {DNNL_ARG_DIFF_SRC, plain_memory(context, dx, s.x, tag::nc)}};
  auto taken = std::make_unique<PrimitiveNode>(context);
  taken->set_primitive(dnnl::inner_product_backward_data(pd), pd.scratchpad_desc(), std::move(args));
  return taken;
}

std::unique_ptr<cpu::TakenNode> backward_weight(const Context& context, const cpu::BoundNode& node,
                                                std::string* why) {
  const cpu::BoundValue &x = node.in[0], &dy = node.in[1], &dw = node.out[0];
  const bool with_bias = node.num_outputs == 2;
  const Sizes s = sizes(x, dw);
  const dnnl::inner_product_forward::primitive_desc hint(forward_desc(s, with_bias), context.engine);
  using dnnl::inner_product_backward_weights;
  const inner_product_backward_weights::desc desc =
      with_bias ? inner_product_backward_weights::desc(f32(s.x, tag::nc), f32(s.w, tag::oi), f32(s.b, tag::x),
                                                       f32(s.y, tag::nc))
                : inner_product_backward_weights::desc(f32(s.x, tag::nc), f32(s.w, tag::oi), f32(s.y, tag::nc));
  const inner_product_backward_weights::primitive_desc pd(desc, user_scratchpad_attr(), context.engine, hint);
  if (is_reference_impl(pd.impl_info_str(), why)) return nullptr;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, plain_memory(context, x, s.x, tag::nc)},
                                       {DNNL_ARG_DIFF_DST, plain_memory(context, dy, s.y, tag::nc)},
                                       {DNNL_ARG_DIFF_WEIGHTS, plain_memory(context, dw, s.w, tag::oi)}};
  if (with_bias) args.emplace(DNNL_ARG_DIFF_BIAS, plain_memory(context, node.out[1], s.b, tag::x));
  auto taken = std::make_unique<PrimitiveNode>(context);
  taken->set_primitive(inner_product_backward_weights(pd), pd.scratchpad_desc(), std::move(args));
  return taken;
}

}  // namespace

std::unique_ptr<cpu::TakenNode> make_linear(const Context& context, const cpu::BoundNode& node, std::string* why) {
  switch (node.op) {
    case PARITY_OP_LINEAR: return forward(context, node, why);
    case PARITY_OP_LINEAR_BWD_DATA: return backward_data(context, node, why);
    case PARITY_OP_LINEAR_BWD_WEIGHT: return backward_weight(context, node, why);
    default: *why = "not a linear op"; return nullptr;
  }
}

}  // namespace onednn
}  // namespace parity
