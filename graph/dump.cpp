// graph/dump.cpp — the text form of a graph, one line per value and per node, for debugging.
#include <algorithm>

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

// " schedule=..." of an optimizer's lr schedule; "" for a constant lr without warmup.
std::string schedule_text(const parity_lr_schedule& s) {
  std::string text;
  if (s.kind == PARITY_LR_STEP) text = fmt::format(" schedule=step(step_size={}, gamma={})", s.step_size, s.gamma);
  if (s.kind == PARITY_LR_COSINE) text = fmt::format(" schedule=cosine(total_steps={}, min_lr={})", s.total_steps, s.min_lr);
  if (s.warmup_steps > 0) text += fmt::format(" warmup={} from {}x", s.warmup_steps, s.warmup_start_factor);
  return text;
}

// stride and pad as before ABI 5; the general form's fields only where they are not the default.
std::string conv2d_params_text(const parity_conv2d_params& c) {
  std::string text = fmt::format(" stride={}x{} pad={}x{}", c.stride_h, c.stride_w, c.pad_h, c.pad_w);
  if (c.pad_end_given) text += fmt::format(" pad_end={}x{}", c.pad_bottom, c.pad_right);
  const int32_t dh = parity_conv2d_dilation_h(&c), dw = parity_conv2d_dilation_w(&c);
  if (dh != 1 || dw != 1) text += fmt::format(" dilation={}x{}", dh, dw);
  if (parity_conv2d_groups(&c) != 1) text += fmt::format(" groups={}", parity_conv2d_groups(&c));
  return text;
}

// Nothing for ABI 6's mean without an ignore_index, so the dumps of those graphs are unchanged.
std::string softmax_xent_params_text(const parity_softmax_xent_params& x) {
  std::string text;
  if (x.reduction == PARITY_REDUCTION_SUM) text += " reduction=sum";
  else if (x.reduction == PARITY_REDUCTION_NONE) text += " reduction=none";
  else if (x.reduction != PARITY_REDUCTION_MEAN) text += fmt::format(" reduction={}", x.reduction);
  if (x.has_ignore_index) text += fmt::format(" ignore_index={}", x.ignore_index);
  return text;
}

std::string params_text(const Node& n) {
  const parity_op_params& p = n.params;
  switch (n.op) {
    case PARITY_OP_CONV2D:
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT:
      return conv2d_params_text(p.conv2d);
    case PARITY_OP_MAXPOOL2D:
    case PARITY_OP_MAXPOOL2D_BWD: {
      const parity_maxpool2d_params& m = p.maxpool2d;
      std::string text = fmt::format(" kernel={}x{} stride={}x{}", m.kernel_h, m.kernel_w, m.stride_h, m.stride_w);
      if (m.pad_h || m.pad_w) text += fmt::format(" pad={}x{}", m.pad_h, m.pad_w);
      if (m.dilation_h > 1 || m.dilation_w > 1)
        text += fmt::format(" dilation={}x{}", std::max(m.dilation_h, 1), std::max(m.dilation_w, 1));
      if (m.ceil_mode) text += " ceil_mode";
      return text;
    }
    case PARITY_OP_AVGPOOL2D:
    case PARITY_OP_AVGPOOL2D_BWD: {
      const parity_avgpool2d_params& a = p.avgpool2d;
      return fmt::format(" kernel={}x{} stride={}x{} pad={}x{}{} count_include_pad={}", a.kernel_h, a.kernel_w,
                         a.stride_h, a.stride_w, a.pad_h, a.pad_w, a.ceil_mode ? " ceil_mode" : "",
                         a.count_include_pad ? "true" : "false");
    }
    case PARITY_OP_GLOBAL_AVGPOOL_BWD: return fmt::format(" input={}x{}", p.avgpool2d.input_h, p.avgpool2d.input_w);
    case PARITY_OP_ADAM_STEP:
      return fmt::format(" lr={} betas=({}, {}) eps={} weight_decay={}{}{}", p.adam.lr, p.adam.beta1, p.adam.beta2,
                         p.adam.eps, p.adam.weight_decay, p.adam.decoupled_weight_decay ? " decoupled (AdamW)" : "",
                         schedule_text(p.adam.schedule));
    case PARITY_OP_SGD_STEP:
      return fmt::format(" lr={} momentum={}{} weight_decay={}{}", p.sgd.lr, p.sgd.momentum,
                         p.sgd.nesterov ? " nesterov" : "", p.sgd.weight_decay, schedule_text(p.sgd.schedule));
    case PARITY_OP_FILL: return fmt::format(" value={}", p.fill.value);
    case PARITY_OP_LEAKY_RELU:
    case PARITY_OP_LEAKY_RELU_BWD: return fmt::format(" negative_slope={}", p.leaky_relu.negative_slope);
    case PARITY_OP_HARDTANH:
    case PARITY_OP_HARDTANH_BWD:
      return fmt::format(" min_val={} max_val={}", p.hardtanh.min_val, p.hardtanh.max_val);
    case PARITY_OP_DROPOUT:
    case PARITY_OP_DROPOUT_BWD:
      return fmt::format(" p={} seed={} node_key={:#x} first_sample={}", p.dropout.p,
                         (uint64_t{p.dropout.seed_hi} << 32) | p.dropout.seed_lo, p.dropout.node_key,
                         p.dropout.first_sample);
    case PARITY_OP_BATCHNORM2D_TRAIN:
      return fmt::format(" eps={} momentum={} convention={}", p.batchnorm2d.eps, p.batchnorm2d.momentum,
                         p.batchnorm2d.convention == PARITY_BATCHNORM_ONNX ? "onnx" : "pytorch");
    case PARITY_OP_BATCHNORM2D_EVAL: return fmt::format(" eps={}", p.batchnorm2d.eps);
    case PARITY_OP_BATCHNORM2D_BWD:
      return fmt::format(" eps={} {}", p.batchnorm2d.eps, p.batchnorm2d.training ? "training" : "evaluation");
    case PARITY_OP_SOFTMAX:
    case PARITY_OP_SOFTMAX_BWD:
    case PARITY_OP_LOG_SOFTMAX:
    case PARITY_OP_LOG_SOFTMAX_BWD: return fmt::format(" dim={}", p.softmax.has_dim ? p.softmax.dim : 1);
    case PARITY_OP_SLICE: return fmt::format(" start={} length={}", p.slice.start, p.slice.length);
    case PARITY_OP_REDUCE_SUM: return fmt::format(" dims={:#x}", p.reduce_sum.dims);
    case PARITY_OP_CLIP_COEF: return fmt::format(" max_norm={}", p.clip_coef.max_norm);
    case PARITY_OP_CAST: return fmt::format(" to={}", to_string(static_cast<DType>(p.cast.dtype)));
    case PARITY_OP_SOFTMAX_XENT:
    case PARITY_OP_SOFTMAX_XENT_BWD: return softmax_xent_params_text(p.softmax_xent);
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
