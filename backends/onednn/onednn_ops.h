// backends/onednn/onednn_ops.h — internal to the onednn backend: a node run by one oneDNN
// primitive made at compile, the context every primitive is made in, and the per-op makers
// (onednn_conv2d.cpp, onednn_linear.cpp).
//
// First slice: every memory is the plan's own plain layout (nchw / oihw / nc / oi), bound by
// pointer to the cpu executable's arena and store, so no reorder runs and no copy is made.
// oneDNN's fastest convolutions want blocked layouts (nChw16c, OIhw16i16o) chosen through
// format_tag::any, with reorders at the edges and weights kept blocked between steps: a later
// step, not done here.
#pragma once

#include <dnnl.hpp>

#include <memory>
#include <string>
#include <unordered_map>

#include "backends/cpu/cpu_executable.h"

namespace parity {
namespace onednn {

// What every primitive of one executable is made and run with.
struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  int threads = 1;  // OpenMP threads of each primitive (set before it is made and before each run)
};

// One node run by one oneDNN primitive. Its memories wrap the node's bound pointers, which
// stay put for the executable's life; its scratchpad (scratchpad_mode::user) is allocated
// here, once, so that a run allocates nothing.
class PrimitiveNode final : public cpu::TakenNode {
 public:
  PrimitiveNode(const Context& context, dnnl::primitive primitive, const dnnl::memory::desc& scratchpad,
                std::unordered_map<int, dnnl::memory> args);
  void run() override;

 private:
  int threads_;
  dnnl::stream stream_;
  dnnl::primitive primitive_;
  dnnl::memory scratchpad_;
  std::unordered_map<int, dnnl::memory> args_;
};

// The attributes every primitive is made with: a user scratchpad (the node allocates it).
dnnl::primitive_attr user_scratchpad_attr();

// A plain f32 memory over a bound value, with the layout `tag` over `dims`.
dnnl::memory plain_memory(const Context& context, const cpu::BoundValue& v, const dnnl::memory::dims& dims,
                          dnnl::memory::format_tag tag);

// Whether oneDNN chose its reference implementation: slower than cpu's kernels, so the node
// stays on cpu. `why` gets the implementation's name.
bool is_reference_impl(const char* impl, std::string* why);

// The makers: a node run by oneDNN, or nullptr with `why` saying why cpu's kernel runs it.
// Each is called only for its ops, after cpu's checks passed on the node.
std::unique_ptr<cpu::TakenNode> make_conv2d(const Context& context, const cpu::BoundNode& node, std::string* why);
std::unique_ptr<cpu::TakenNode> make_linear(const Context& context, const cpu::BoundNode& node, std::string* why);

}  // namespace onednn
}  // namespace parity
