// graph/dump.cpp — the text form of a graph, one line per value and per node, for debugging.
#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/graph.h"

namespace parity {
namespace {

const char* kind_name(parity_value_kind kind) {
  switch (kind) {
    case PARITY_VALUE_INPUT: return "input";
    case PARITY_VALUE_PARAM: return "param";
    case PARITY_VALUE_STATE: return "state";
    case PARITY_VALUE_TEMP: return "temp";
  }
  return "?";
}

std::string params_text(const Node& n) {
  const parity_op_params& p = n.params;
  switch (n.op) {
    case PARITY_OP_CONV2D:
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT:
      return fmt::format(" stride={}x{} pad={}x{}", p.conv2d.stride_h, p.conv2d.stride_w, p.conv2d.pad_h, p.conv2d.pad_w);
    case PARITY_OP_MAXPOOL2D:
    case PARITY_OP_MAXPOOL2D_BWD:
      return fmt::format(" kernel={}x{} stride={}x{}", p.maxpool2d.kernel_h, p.maxpool2d.kernel_w, p.maxpool2d.stride_h,
                         p.maxpool2d.stride_w);
    case PARITY_OP_ADAM_STEP:
      return fmt::format(" lr={} betas=({}, {}) eps={} weight_decay={}", p.adam.lr, p.adam.beta1, p.adam.beta2, p.adam.eps,
                         p.adam.weight_decay);
    case PARITY_OP_SGD_STEP:
      return fmt::format(" lr={} momentum={} weight_decay={}", p.sgd.lr, p.sgd.momentum, p.sgd.weight_decay);
    case PARITY_OP_FILL: return fmt::format(" value={}", p.fill.value);
    case PARITY_OP_LEAKY_RELU:
    case PARITY_OP_LEAKY_RELU_BWD: return fmt::format(" negative_slope={}", p.leaky_relu.negative_slope);
    case PARITY_OP_HARDTANH:
    case PARITY_OP_HARDTANH_BWD:
      return fmt::format(" min_val={} max_val={}", p.hardtanh.min_val, p.hardtanh.max_val);
    case PARITY_OP_SOFTMAX:
    case PARITY_OP_SOFTMAX_BWD:
    case PARITY_OP_LOG_SOFTMAX:
    case PARITY_OP_LOG_SOFTMAX_BWD: return fmt::format(" dim={}", p.softmax.has_dim ? p.softmax.dim : 1);
    case PARITY_OP_SLICE: return fmt::format(" start={} length={}", p.slice.start, p.slice.length);
    default: return "";
  }
}

}  // namespace

std::string Graph::dump() const {
  std::string out;
  for (size_t i = 0; i < values_.size(); ++i) {
    const ValueInfo& v = values_[i];
    if (v.kind != PARITY_VALUE_TEMP)
      out += fmt::format("%{} {} {} {} {}\n", i, kind_name(v.kind), v.name, to_string(v.dtype), v.shape.str());
  }
  for (const Node& n : nodes_) {
    std::string ins, outs;
    for (int32_t in : n.inputs) ins += fmt::format("{}%{}", ins.empty() ? "" : ", ", in);
    for (int32_t o : n.outputs) {
      const ValueInfo& v = values_[static_cast<size_t>(o)];
      outs += fmt::format("{}%{} {} {} {}", outs.empty() ? "" : ", ", o, v.name, to_string(v.dtype), v.shape.str());
    }
    out += fmt::format("{} = {}({}) '{}'{}\n", outs.empty() ? "()" : outs, ops::rule(n.op).name, ins, n.name,
                       params_text(n));
  }
  return out;
}

}  // namespace parity
