// model/autocast.cpp — the autocast pass (model/autocast.h): rebuilds a forward graph node by
// node, inserting the CASTs that Precision's policy asks for, and the precision names.
#include "model/autocast.h"

#include <map>
#include <utility>

#include <fmt/format.h>

#include "parity/error.h"

namespace parity {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::f32: return "f32";
    case Precision::bf16: return "bf16";
    case Precision::f16: return "fp16";
  }
  return "unknown";
}

Precision parse_precision(const std::string& text) {
  if (text == "f32") return Precision::f32;
  if (text == "bf16") return Precision::bf16;
  if (text == "fp16" || text == "f16") return Precision::f16;
  throw Error(ErrorKind::invalid_argument, fmt::format("precision must be f32, bf16 or fp16, got '{}'", text));
}

DType compute_dtype(Precision p) {
  switch (p) {
    case Precision::f32: return DType::f32;
    case Precision::bf16: return DType::bf16;
    case Precision::f16: return DType::f16;
  }
  return DType::f32;
}

AutocastClass autocast_class(parity_op op) {
  switch (op) {
    case PARITY_OP_CONV2D:
    case PARITY_OP_LINEAR:
      return AutocastClass::half_compute;
    case PARITY_OP_RELU:
    case PARITY_OP_LEAKY_RELU:
    case PARITY_OP_HARDTANH:
    case PARITY_OP_MAXPOOL2D:
    case PARITY_OP_AVGPOOL2D:
    case PARITY_OP_RESHAPE:
    case PARITY_OP_CONCAT:
    case PARITY_OP_SLICE:
    case PARITY_OP_DROPOUT:
    case PARITY_OP_ADD:
    case PARITY_OP_MUL:
      return AutocastClass::follow_the_input;
    default:
      // SOFTMAX, LOG_SOFTMAX, SOFTMAX_XENT, BATCHNORM2D_*, GLOBAL_AVGPOOL, SIGMOID, TANH, GELU,
      // REDUCE_SUM, CLIP_COEF, ARGMAX, ACCURACY, the optimizers, and any op added later until
      // it is placed in a class on purpose.
      return AutocastClass::f32_only;
  }
}

namespace {

bool is_float(DType d) { return d == DType::f32 || d == DType::bf16 || d == DType::f16; }

class Rewriter {
 public:
  explicit Rewriter(DType half) : half_(half) {}

  Graph run(const Graph& forward) {
    mapped_.assign(forward.values().size(), Value{});
    for (size_t i = 0; i < forward.values().size(); ++i) {
      const ValueInfo& v = forward.values()[i];
      if (v.producer >= 0) continue;
      switch (v.kind) {
        case PARITY_VALUE_INPUT: mapped_[i] = b_.input(v.name, v.shape, v.dtype); break;
        case PARITY_VALUE_PARAM: mapped_[i] = b_.parameter(v.name, v.shape); break;
        case PARITY_VALUE_STATE: mapped_[i] = b_.state(v.name, v.shape); break;
        default:
          throw Error(ErrorKind::invalid_argument,
                      fmt::format("autocast: value '{}' is a TEMP that no node produces", v.name));
      }
    }
    for (const Node& node : forward.nodes()) {
      std::vector<Value> inputs;
      for (int32_t in : node.inputs) inputs.push_back(mapped_[static_cast<size_t>(in)]);
      apply_policy(node.op, inputs);
      // RESHAPE carries its shape on the output value, not in params.
      std::vector<Value> outputs =
          node.op == PARITY_OP_RESHAPE
              ? std::vector<Value>{b_.reshape(inputs[0], forward.values()[static_cast<size_t>(node.outputs[0])].shape,
                                              node.name)}
              : b_.node(node.op, node.params, inputs, node.name);
      for (size_t o = 0; o < outputs.size(); ++o) {
        b_.rename(outputs[o], forward.values()[static_cast<size_t>(node.outputs[o])].name);
        mapped_[static_cast<size_t>(node.outputs[o])] = outputs[o];
      }
    }
    return b_.take();
  }

 private:
  DType dtype(Value v) const { return b_.graph().value(v).dtype; }

  // `v` converted to `to`, one CAST per (value, dtype) shared by every reader.
  Value as(Value v, DType to) {
    if (dtype(v) == to) return v;
    auto key = std::make_pair(v.id, static_cast<int32_t>(to));
    auto it = casts_.find(key);
    if (it != casts_.end()) return it->second;
    const std::string name = b_.graph().value(v).name + (to == DType::f32 ? ".f32" : ".half");
    const Value out = b_.cast(v, to, name);
    casts_.emplace(key, out);
    return out;
  }

  void apply_policy(parity_op op, std::vector<Value>& inputs) {
    switch (autocast_class(op)) {
      case AutocastClass::half_compute:
        // x and w in the half dtype; the bias (and anything after it) stays f32.
        for (size_t i = 0; i < inputs.size(); ++i)
          if (is_float(dtype(inputs[i]))) inputs[i] = as(inputs[i], i < 2 ? half_ : DType::f32);
        return;
      case AutocastClass::follow_the_input: {
        // All float operands in one half dtype: kept. Mixed (or any f32): the halves widened,
        // as torch's type promotion does.
        bool all_half = true, any_float = false;
        for (Value v : inputs)
          if (is_float(dtype(v))) {
            any_float = true;
            all_half = all_half && dtype(v) == half_;
          }
        if (!any_float || all_half) return;
        for (Value& v : inputs)
          if (is_float(dtype(v))) v = as(v, DType::f32);
        return;
      }
      case AutocastClass::f32_only:
        for (Value& v : inputs)
          if (is_float(dtype(v))) v = as(v, DType::f32);
        return;
    }
  }

  DType half_;
  GraphBuilder b_;
  std::vector<Value> mapped_;  // forward's value id -> the rewritten graph's value
  std::map<std::pair<int32_t, int32_t>, Value> casts_;
};

}  // namespace

Graph autocast(const Graph& forward, Precision p) {
  if (p == Precision::f32) return forward;
  return Rewriter(compute_dtype(p)).run(forward);
}

}  // namespace parity
