// backends/native/dispatch.h — the one place a plan node becomes native kernel launches: reads
// the shapes from the value descriptors, checks them against what the kernels will index, checks
// run-time data the graph cannot have validated (labels, pool indices, Adam's step), and calls
// the NativeOps table. Shared by every backend that runs the native kernels (simt on the host,
// the HIP plugin on AMD GPUs), parameterised on how that backend stores values:
//
//   struct Memory {
//     float* f32(int32_t value);              // the value's storage (device pointer on a GPU)
//     int32_t* i32(int32_t value);
//     const int32_t* host_i32(int32_t value); // its contents readable on the host now, or nullptr
//                                             // when they exist only on the device (then the
//                                             // data checks of that value are skipped)
//     float* workspace();                     // workspace_floats() floats
//     [[noreturn]] void fail(parity_status status, const std::string& message);
//   };
//
// Plain C++ (no pk.h): the caller is host code compiled by g++ or hipcc.
#pragma once

#include <stdint.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backends/kit/value_desc.h"
#include "backends/native/native_ops.h"
#include "ops/kernels/conv_geometry.h"
#include "parity/plugin.h"

namespace parity {
namespace native {

using kit::numel_of;
using kit::shape_str;
using kit::value_name;

// Message text: strings and integers, concatenated.
inline std::string msg_part(const std::string& s) { return s; }
inline std::string msg_part(const char* s) { return s; }
template <class Int>
std::string msg_part(Int i) {
  return std::to_string(i);
}
template <class... Parts>
std::string msg(const Parts&... parts) {
  std::string s;
  (void)std::initializer_list<int>{(s += msg_part(parts), 0)...};
  return s;
}

template <class Memory>
class NodeDispatcher {
 public:
  // backend: the prefix of messages ("simt"); op_name: the op's name in messages.
  NodeDispatcher(const char* backend, const char* (*op_name)(parity_op), const NativeOps& ops,
                 const std::vector<parity_value_desc>& values, Memory& memory)
      : backend_(backend), op_name_(op_name), ops_(ops), values_(values), mem_(memory) {}

  // Checks that every node refers to existing values; returns the workspace (floats) the nodes
  // need: im2col columns of the largest convolution, per-row loss terms of softmax_xent.
  int64_t workspace_floats(const std::vector<parity_node_desc>& nodes) const {
    int64_t workspace = 0;
    for (const parity_node_desc& node : nodes) {
      for (int32_t i = 0; i < node.num_inputs + node.num_outputs; ++i) {
        const int32_t v = i < node.num_inputs ? node.inputs[i] : node.outputs[i - node.num_inputs];
        if (v < 0 || v >= static_cast<int32_t>(values_.size()))
          mem_.fail(PARITY_STATUS_INTERNAL, msg(backend_, ": node '", node.name, "' refers to value ", v,
                                                ", outside [0, ", values_.size(), ")"));
      }
      if (node.op == PARITY_OP_CONV2D || node.op == PARITY_OP_CONV2D_BWD_DATA || node.op == PARITY_OP_CONV2D_BWD_WEIGHT)
        workspace = std::max(workspace, conv_shape(node).workspace_floats());
      if (node.op == PARITY_OP_SOFTMAX_XENT) workspace = std::max(workspace, dim(node, in_desc(node, 0), 2, 0));
    }
    return workspace;
  }

  void run(const parity_node_desc& node) {
    switch (node.op) {
      case PARITY_OP_CONV2D: {
        const ConvShape s = conv_shape(node);
        expect_numel(node, in_desc(node, 2), s.k);
        ops_.conv2d_forward(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_out(node, 0), s, mem_.workspace());
        break;
      }
      case PARITY_OP_CONV2D_BWD_DATA:
        ops_.conv2d_backward_data(f_in(node, 0), f_in(node, 1), f_out(node, 0), conv_shape(node), mem_.workspace());
        break;
      case PARITY_OP_CONV2D_BWD_WEIGHT: {
        const ConvShape s = conv_shape(node);
        expect_numel(node, out_desc(node, 1), s.k);
        ops_.conv2d_backward_weight(f_in(node, 0), f_in(node, 1), f_out(node, 0), f_out(node, 1), s,
                                    mem_.workspace());
        break;
      }
      case PARITY_OP_RELU: elementwise_forward(node, ops_.relu_forward); break;
      case PARITY_OP_RELU_BWD: elementwise_backward(node, ops_.relu_backward); break;
      case PARITY_OP_SIGMOID: elementwise_forward(node, ops_.sigmoid_forward); break;
      case PARITY_OP_SIGMOID_BWD: elementwise_backward(node, ops_.sigmoid_backward); break;
      case PARITY_OP_MAXPOOL2D: {
        const PoolShape s = pool_shape(node, in_desc(node, 0), out_desc(node, 0));
        expect_numel(node, out_desc(node, 1), s.n * s.c * s.p * s.q);
        ops_.maxpool2d_forward(f_in(node, 0), f_out(node, 0), i_out(node, 1), s);
        break;
      }
      case PARITY_OP_MAXPOOL2D_BWD: {
        const PoolShape s = pool_shape(node, out_desc(node, 0), in_desc(node, 0));
        expect_numel(node, in_desc(node, 1), s.n * s.c * s.p * s.q);
        const int32_t* idx = i_in(node, 1);
        if (const int32_t* host = mem_.host_i32(in_index(node, 1)))
          for (int64_t i = 0; i < s.n * s.c * s.p * s.q; ++i)
            if (host[i] < 0 || host[i] >= s.h * s.w)
              mem_.fail(PARITY_STATUS_DATA, msg(label(node), ": index ", host[i], " at element ", i,
                                                " is outside its ", s.h, "x", s.w, " plane"));
        ops_.maxpool2d_backward(f_in(node, 0), idx, f_out(node, 0), s);
        break;
      }
      case PARITY_OP_RESHAPE: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, out_desc(node, 0), count);
        ops_.copy(f_in(node, 0), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_LINEAR: {
        const int64_t in = dim(node, in_desc(node, 1), 2, 1), out = dim(node, in_desc(node, 1), 2, 0);
        const int64_t n = in ? numel_of(in_desc(node, 0)) / in : 0;
        expect_numel(node, in_desc(node, 0), n * in);
        expect_numel(node, in_desc(node, 2), out);
        expect_numel(node, out_desc(node, 0), n * out);
        ops_.linear_forward(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_out(node, 0), n, in, out);
        break;
      }
      case PARITY_OP_LINEAR_BWD_DATA: {  // dy, w -> dx
        const int64_t in = dim(node, in_desc(node, 1), 2, 1), out = dim(node, in_desc(node, 1), 2, 0);
        const int64_t n = in ? numel_of(out_desc(node, 0)) / in : 0;
        expect_numel(node, out_desc(node, 0), n * in);
        expect_numel(node, in_desc(node, 0), n * out);
        ops_.linear_backward_data(f_in(node, 0), f_in(node, 1), f_out(node, 0), n, in, out);
        break;
      }
      case PARITY_OP_LINEAR_BWD_WEIGHT: {  // x, dy -> dw, db
        const int64_t in = dim(node, out_desc(node, 0), 2, 1), out = dim(node, out_desc(node, 0), 2, 0);
        const int64_t n = in ? numel_of(in_desc(node, 0)) / in : 0;
        expect_numel(node, in_desc(node, 0), n * in);
        expect_numel(node, in_desc(node, 1), n * out);
        expect_numel(node, out_desc(node, 1), out);
        ops_.linear_backward_weight(f_in(node, 0), f_in(node, 1), f_out(node, 0), f_out(node, 1), n, in, out);
        break;
      }
      case PARITY_OP_SOFTMAX_XENT: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        check_labels(node, n, k);
        expect_numel(node, out_desc(node, 0), 1);
        ops_.softmax_xent_forward(f_in(node, 0), i_in(node, 1), f_out(node, 0), n, k, mem_.workspace());
        break;
      }
      case PARITY_OP_SOFTMAX_XENT_BWD: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        check_labels(node, n, k);
        expect_numel(node, in_desc(node, 2), 1);
        expect_numel(node, out_desc(node, 0), n * k);
        ops_.softmax_xent_backward(f_in(node, 0), i_in(node, 1), f_in(node, 2), f_out(node, 0), n, k);
        break;
      }
      case PARITY_OP_ARGMAX: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        expect_numel(node, out_desc(node, 0), n);
        ops_.argmax(f_in(node, 0), i_out(node, 0), n, k);
        break;
      }
      case PARITY_OP_ACCURACY: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        check_labels(node, n, k);
        expect_numel(node, out_desc(node, 0), 1);
        ops_.accuracy(f_in(node, 0), i_in(node, 1), f_out(node, 0), n, k);
        break;
      }
      case PARITY_OP_ADD: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, in_desc(node, 1), count);
        expect_numel(node, out_desc(node, 0), count);
        ops_.add(f_in(node, 0), f_in(node, 1), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_ADAM_STEP: {
        const int64_t count = numel_of(in_desc(node, 0));
        for (int32_t slot = 1; slot <= 3; ++slot) expect_numel(node, in_desc(node, slot), count);
        expect_numel(node, in_desc(node, 4), 1);
        const int32_t* step = i_in(node, 4);
        if (const int32_t* host = mem_.host_i32(in_index(node, 4)))
          if (host[0] < 1)
            mem_.fail(PARITY_STATUS_INVALID_ARGUMENT,
                      msg(label(node), ": step ", host[0], " in value '", in_desc(node, 4).name,
                          "' must be >= 1 (Adam counts steps from 1)"));
        ops_.adam_step(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_in(node, 3), step, count, node.params.adam);
        break;
      }
      case PARITY_OP_SGD_STEP: {
        const int64_t count = numel_of(in_desc(node, 0));
        for (int32_t slot = 1; slot <= 2; ++slot) expect_numel(node, in_desc(node, slot), count);
        ops_.sgd_step(f_in(node, 0), f_in(node, 1), f_in(node, 2), count, node.params.sgd);
        break;
      }
      case PARITY_OP_FILL:
        ops_.fill(f_out(node, 0), numel_of(out_desc(node, 0)), node.params.fill.value);
        break;
      case PARITY_OP_COUNT:
        mem_.fail(PARITY_STATUS_INTERNAL, msg(backend_, ": node '", node.name,
                                              "' has op PARITY_OP_COUNT, which is a count, not an op"));
    }
  }

 private:
  std::string label(const parity_node_desc& node) const {
    return msg(backend_, ": ", op_name_(node.op), " node '", node.name, "'");
  }
  int32_t in_index(const parity_node_desc& node, int32_t slot) const {
    if (slot >= node.num_inputs)
      mem_.fail(PARITY_STATUS_INTERNAL,
                msg(label(node), " has ", node.num_inputs, " inputs; the op needs input ", slot));
    return node.inputs[slot];
  }
  int32_t out_index(const parity_node_desc& node, int32_t slot) const {
    if (slot >= node.num_outputs)
      mem_.fail(PARITY_STATUS_INTERNAL,
                msg(label(node), " has ", node.num_outputs, " outputs; the op needs output ", slot));
    return node.outputs[slot];
  }
  const parity_value_desc& in_desc(const parity_node_desc& node, int32_t slot) const {
    return values_[static_cast<size_t>(in_index(node, slot))];
  }
  const parity_value_desc& out_desc(const parity_node_desc& node, int32_t slot) const {
    return values_[static_cast<size_t>(out_index(node, slot))];
  }
  void expect_dtype(const parity_node_desc& node, int32_t value, parity_dtype dtype) const {
    const parity_value_desc& v = values_[static_cast<size_t>(value)];
    if (v.dtype != dtype)
      mem_.fail(PARITY_STATUS_INTERNAL, msg(label(node), ": value '", v.name, "' has the wrong dtype for the op"));
  }
  float* f_in(const parity_node_desc& n, int32_t s) const { return f32(n, in_index(n, s)); }
  int32_t* i_in(const parity_node_desc& n, int32_t s) const { return i32(n, in_index(n, s)); }
  float* f_out(const parity_node_desc& n, int32_t s) const { return f32(n, out_index(n, s)); }
  int32_t* i_out(const parity_node_desc& n, int32_t s) const { return i32(n, out_index(n, s)); }
  float* f32(const parity_node_desc& n, int32_t value) const {
    expect_dtype(n, value, PARITY_F32);
    return mem_.f32(value);
  }
  int32_t* i32(const parity_node_desc& n, int32_t value) const {
    expect_dtype(n, value, PARITY_I32);
    return mem_.i32(value);
  }

  int64_t dim(const parity_node_desc& node, const parity_value_desc& v, int32_t rank, int32_t axis) const {
    if (v.rank != rank)
      mem_.fail(PARITY_STATUS_INTERNAL,
                msg(label(node), ": value '", v.name, "' has rank ", v.rank, ", the op needs rank ", rank));
    return v.dims[axis];
  }
  // The kernels index with the shapes they are given: a value of another size is a graph bug.
  void expect_numel(const parity_node_desc& node, const parity_value_desc& v, int64_t expected) const {
    if (numel_of(v) != expected)
      mem_.fail(PARITY_STATUS_INTERNAL, msg(label(node), ": value '", v.name, "' ", shape_str(v.rank, v.dims),
                                            " has ", numel_of(v), " elements, the op needs ", expected));
  }

  // x -> y and y, dy -> dx element by element (relu, sigmoid): every operand of one size.
  void elementwise_forward(const parity_node_desc& node, void (*launch)(const float*, float*, int64_t)) const {
    const int64_t count = numel_of(in_desc(node, 0));
    expect_numel(node, out_desc(node, 0), count);
    launch(f_in(node, 0), f_out(node, 0), count);
  }
  void elementwise_backward(const parity_node_desc& node,
                            void (*launch)(const float*, const float*, float*, int64_t)) const {
    const int64_t count = numel_of(in_desc(node, 0));
    expect_numel(node, in_desc(node, 1), count);
    expect_numel(node, out_desc(node, 0), count);
    launch(f_in(node, 0), f_in(node, 1), f_out(node, 0), count);
  }

  // x [N,C,H,W] (the forward input or dx) and w [K,C,R,S] (the weight or dw) fix the shape.
  ConvShape conv_shape(const parity_node_desc& node) const {
    const bool bwd_data = node.op == PARITY_OP_CONV2D_BWD_DATA, bwd_weight = node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
    const parity_value_desc& x = bwd_data ? out_desc(node, 0) : in_desc(node, 0);
    const parity_value_desc& w = bwd_weight ? out_desc(node, 0) : in_desc(node, 1);
    ConvShape s{dim(node, x, 4, 0), dim(node, x, 4, 1), dim(node, x, 4, 2), dim(node, x, 4, 3), dim(node, w, 4, 0),
                dim(node, w, 4, 2), dim(node, w, 4, 3), 0, 0, node.params.conv2d};
    s.p = kernels::conv2d_output_size(s.h, s.r, s.params.stride_h, s.params.pad_h);
    s.q = kernels::conv2d_output_size(s.w, s.s, s.params.stride_w, s.params.pad_w);
    const parity_value_desc& y = node.op == PARITY_OP_CONV2D ? out_desc(node, 0) : in_desc(node, bwd_data ? 0 : 1);
    expect_numel(node, y, s.n * s.k * s.p * s.q);
    return s;
  }

  PoolShape pool_shape(const parity_node_desc& node, const parity_value_desc& x, const parity_value_desc& y) const {
    PoolShape s{dim(node, x, 4, 0), dim(node, x, 4, 1), dim(node, x, 4, 2), dim(node, x, 4, 3), 0, 0,
                node.params.maxpool2d};
    s.p = kernels::pool2d_output_size(s.h, s.params.kernel_h, s.params.stride_h);
    s.q = kernels::pool2d_output_size(s.w, s.params.kernel_w, s.params.stride_w);
    expect_numel(node, y, s.n * s.c * s.p * s.q);
    return s;
  }

  // Run-time data the graph cannot have validated (the kernels cannot fail): labels name a class.
  void check_labels(const parity_node_desc& node, int64_t n, int64_t k) const {
    expect_numel(node, in_desc(node, 1), n);
    expect_dtype(node, in_index(node, 1), PARITY_I32);
    const int32_t* labels = mem_.host_i32(in_index(node, 1));
    if (!labels) return;
    for (int64_t i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= k)
        mem_.fail(PARITY_STATUS_DATA, msg(label(node), ": label ", labels[i], " at row ", i, " of value '",
                                          in_desc(node, 1).name, "' is outside [0, ", k, ")"));
  }

  const char* backend_;
  const char* (*op_name_)(parity_op);
  const NativeOps& ops_;
  const std::vector<parity_value_desc>& values_;
  Memory& mem_;
};

}  // namespace native
}  // namespace parity
