// ops/concat.cpp — concat along dim 1 (torch.cat(xs, 1): the channels of NCHW, the features of
// [N,F]) of 1 to PARITY_MAX_NODE_INPUTS inputs (GraphBuilder::concat splits a longer one into a
// tree of these), and SLICE, x[:, start : start + length] along dim 1, its backward: one SLICE
// of dy per input that wants a gradient. Validation (dtypes, ranks, every dim but dim 1 equal;
// the slice inside x), shapes, FLOPs, gradient, tolerance (exact: copies) and conformance cases.
#include <string>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {
namespace {

std::vector<OutputSpec> infer_concat(const OpCall& c) {
  if (c.inputs.empty()) fail(c, "concat", "needs at least one input, got none");
  const ValueInfo& first = *c.inputs[0];
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const ValueInfo& v = *c.inputs[i];
    if (v.dtype != first.dtype)
      fail(c, "concat", fmt::format("input {} '{}' is {}, input 0 '{}' is {}: every input must have the same dtype", i,
                                    v.name, to_string(v.dtype), first.name, to_string(first.dtype)));
  }
  require_float_operands(c, {{0, "input 0"}});
  if (first.shape.rank() < 2)
    fail(c, "concat", fmt::format("input 0 '{}' must have rank >= 2 (it joins dim 1), got shape {}", first.name,
                                  first.shape.str()));
  Shape out = first.shape;
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    const ValueInfo& v = *c.inputs[i];
    bool same = v.shape.rank() == first.shape.rank();
    for (int d = 0; same && d < first.shape.rank(); ++d) same = d == 1 || v.shape[d] == first.shape[d];
    if (!same)
      fail(c, "concat", fmt::format("input {} '{}' {} must match input 0 '{}' {} in every dim but dim 1 (N and the "
                                    "spatial sizes)",
                                    i, v.name, v.shape.str(), first.name, first.shape.str()));
    out[1] += v.shape[1];
  }
  if (out.numel() == 0) fail(c, "concat", fmt::format("the output {} must not be empty", out.str()));
  return {{out, first.dtype}};
}

std::vector<OutputSpec> infer_slice(const OpCall& c) {
  const DType dtype = require_float_operands(c, {{0, "input"}});
  const Shape& x = c.inputs[0]->shape;
  if (x.rank() < 2)
    fail(c, "slice", fmt::format("input '{}' must have rank >= 2 (it slices dim 1), got shape {}", c.inputs[0]->name,
                                 x.str()));
  const parity_slice_params& p = c.params.slice;
  if (p.start < 0 || p.length < 1 || int64_t{p.start} + p.length > x[1])
    throw Error(ErrorKind::invalid_argument,
                fmt::format("slice '{}': start {} and length {} must satisfy 0 <= start, 0 < length, start + length "
                            "<= {} (dim 1 of '{}' {})",
                            c.node, p.start, p.length, x[1], c.inputs[0]->name, x.str()));
  Shape out = x;
  out[1] = p.length;
  return {{out, dtype}};
}

// Copies: no arithmetic.
double flops_none(const OpCall&) { return 0.0; }

// dL/dx_i = dL/dy[:, offset_i : offset_i + C_i], one SLICE node per input that wants it.
std::vector<Value> concat_gradient(NodeEmitter& b, const Node& node, const std::vector<Value>& dL_dy,
                                   const std::vector<bool>& needed) {
  std::vector<Value> grads(node.inputs.size());
  if (!dL_dy[0].valid()) return grads;
  int64_t offset = 0;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const int64_t channels = b.value(Value{node.inputs[i]}).shape[1];
    if (needed[i]) {
      parity_op_params p{};
      p.slice.start = static_cast<int32_t>(offset);
      p.slice.length = static_cast<int32_t>(channels);
      grads[i] = b.node(PARITY_OP_SLICE, p, {dL_dy[0]}, fmt::format("{}.bwd{}", node.name, i))[0];
    }
    offset += channels;
  }
  return grads;
}

// One concat of `channels` (one input each), and a SLICE of its output per input.
void concat_cases(std::vector<OpCase>& out, Draw& draw, const Shape& each, const std::vector<int64_t>& channels) {
  OpCase cat{PARITY_OP_CONCAT, {}, {}, ""};
  Shape joined = each;
  joined[1] = 0;
  std::string list;
  for (int64_t ch : channels) {
    Shape s = each;
    s[1] = ch;
    cat.operands.push_back({draw.values(s)});
    joined[1] += ch;
    list += (list.empty() ? "" : "+") + std::to_string(ch);
  }
  cat.label = fmt::format("{} inputs {} along dim 1 ({})", channels.size(), each.str(), list);
  out.push_back(cat);
  Tensor y = draw.values(joined);
  int64_t start = 0;
  for (int64_t ch : channels) {
    parity_op_params p{};
    p.slice.start = static_cast<int32_t>(start);
    p.slice.length = static_cast<int32_t>(ch);
    out.push_back({PARITY_OP_SLICE, p, {{y}}, fmt::format("{} [{}, {}) of dim 1", joined.str(), start, start + ch)});
    start += ch;
  }
}

void builtin_cases(std::vector<OpCase>& out, Draw& draw) {
  concat_cases(out, draw, Shape{2, 0, 5, 7}, {3, 5});             // NCHW channels, odd sizes
  concat_cases(out, draw, Shape{1, 0, 3, 3}, {1, 2, 1});          // batch 1, one-channel inputs
  concat_cases(out, draw, Shape{4, 0}, {7, 1, 16});               // [N,F] features
  concat_cases(out, draw, Shape{3, 0, 2, 2}, {1, 2, 3, 4, 5, 6});  // the most one node takes
  concat_cases(out, draw, Shape{2, 0, 4}, {6});                   // one input: a copy
}

void user_case(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape) {
  Shape each(shape);
  const int64_t channels = each[1];
  concat_cases(out, draw, each, {channels, channels + 1, 1});
}

const ConformanceFamily kCases{"concat slice", "one input's dims (N,C,...: inputs of C, C+1 and 1 channels)", 2, 6,
                               false, 18, builtin_cases, user_case};

}  // namespace

extern const OpRule concat_rule{"CONCAT", PARITY_MAX_NODE_INPUTS, 1, infer_concat, flops_none, concat_gradient,
                                kExactTolerance, &kCases, 0, &kHalfExactSupport};
extern const OpRule slice_rule{"SLICE", 1, 1, infer_slice, flops_none, nullptr, kExactTolerance, nullptr, 0,
                               &kHalfExactSupport};

}  // namespace parity::ops
