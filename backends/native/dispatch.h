// backends/native/dispatch.h — where a plan's nodes meet the native kernels: NodeDispatcher
// checks that nodes refer to existing values, asks each op for its workspace (the size pass)
// and runs each node through the target's NativeOps table (checking, and launching unless it
// is a checks-only dispatcher). What an op checks and launches is its `run_<name>` in its .cuh
// (native_node.h). Shared by every backend that runs the native kernels (simt on the host, the
// HIP and CUDA plugins), parameterised on how that backend stores values:
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
// Plain C++ (no pk.h): the caller is host code compiled by g++, hipcc or nvcc.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "backends/native/native_node.h"
#include "backends/native/native_ops.h"
#include "parity/plugin.h"

namespace parity {
namespace native {

template <class Memory>
class NodeDispatcher {
 public:
  // backend: the prefix of messages ("simt"); op_name: the op's name in messages; pass: what
  // run() does, NodePass::launch or NodePass::check (validate only, launch nothing).
  NodeDispatcher(const char* backend, const char* (*op_name)(parity_op), const NativeOps& ops,
                 const std::vector<parity_value_desc>& values, Memory& memory, NodePass pass = NodePass::launch)
      : backend_(backend), op_name_(op_name), ops_(ops), values_(values), memory_(memory), pass_(pass) {}

  // Checks that every node refers to existing values; returns the workspace (floats) the nodes
  // need, the largest any op asks for in the size pass (im2col columns of a convolution, per-row
  // loss terms of softmax_xent).
  int64_t workspace_floats(const std::vector<parity_node_desc>& nodes) const {
    int64_t workspace = 0;
    for (const parity_node_desc& node : nodes) {
      for (int32_t i = 0; i < node.num_inputs + node.num_outputs; ++i) {
        const int32_t v = i < node.num_inputs ? node.inputs[i] : node.outputs[i - node.num_inputs];
        if (v < 0 || v >= static_cast<int32_t>(values_.size()))
          memory_.fail(PARITY_STATUS_INTERNAL, msg(backend_, ": node '", node.name, "' refers to value ", v,
                                                   ", outside [0, ", values_.size(), ")"));
      }
      run_node(ops_, NativeNode(backend_, op_name_, node, values_, memory_, NodePass::size, &workspace));
    }
    return workspace;
  }

  void run(const parity_node_desc& node) const {
    run_node(ops_, NativeNode(backend_, op_name_, node, values_, memory_, pass_, nullptr));
  }

 private:
  // The backend's Memory behind the type-erased NodeMemory the op code sees.
  class ErasedMemory final : public NodeMemory {
   public:
    explicit ErasedMemory(Memory& memory) : memory_(memory) {}
    float* f32(int32_t value) const override { return memory_.f32(value); }
    int32_t* i32(int32_t value) const override { return memory_.i32(value); }
    const int32_t* host_i32(int32_t value) const override { return memory_.host_i32(value); }
    float* workspace() const override { return memory_.workspace(); }
    [[noreturn]] void fail(parity_status status, const std::string& message) const override {
      memory_.fail(status, message);
    }

   private:
    Memory& memory_;
  };

  const char* backend_;
  const char* (*op_name_)(parity_op);
  const NativeOps& ops_;
  const std::vector<parity_value_desc>& values_;
  ErasedMemory memory_;
  NodePass pass_;
};

}  // namespace native
}  // namespace parity
