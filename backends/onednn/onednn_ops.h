// backends/onednn/onednn_ops.h — internal to the onednn backend: a node run by one oneDNN
// primitive made at compile, the context every primitive is made in, and the per-op makers
// (onednn_conv2d.cpp, onednn_linear.cpp, onednn_eltwise.cpp, onednn_pool.cpp, onednn_batchnorm.cpp,
// onednn_softmax.cpp).
//
// Layouts: every value keeps the plan's plain layout (nchw / oihw / nc / oi), bound by pointer
// to the cpu executable's arena and store. Inner products, eltwise, pooling, batch norm and
// softmax run on it directly. Convolutions let oneDNN choose (format_tag::any: blocked nChw16c /
// OIhw16i16o on AVX-512) and reorder at each node's edges, every run: on seed-cnn's conv2 that is
// 0.26 ms against 0.60 ms on plain nchw (2 threads, AVX-512). Keeping values blocked from node
// to node (and weights blocked between steps) would need every node between two convolutions
// on oneDNN; max-pool cannot be (onednn_pool.cpp), so that is left undone.
#pragma once

#include <dnnl.hpp>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_executable.h"

namespace parity {
namespace onednn {

// What every primitive of one executable is made and run with.
struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  int threads = 1;  // OpenMP threads of each primitive (set before it is made and before each run)
};

// One node run by one oneDNN primitive, with the reorders into and out of the layouts that
// primitive chose when those differ from the plan's plain ones. Its plain memories wrap the
// node's bound pointers, which stay put for the executable's life; every other buffer (a
// reordered operand, each scratchpad: scratchpad_mode::user) is allocated here, once, so that a
// run allocates nothing. Made by input/output for each operand, then set_primitive.
class PrimitiveNode final : public cpu::TakenNode {
 public:
  explicit PrimitiveNode(const Context& context);
  // The operand the primitive reads, laid out as `wanted`: `plain` itself when it already is,
  // else a buffer made here that a reorder from `plain` fills before each run of the primitive.
  dnnl::memory input(const dnnl::memory& plain, const dnnl::memory::desc& wanted);
  // The operand the primitive writes, laid out as `given`: `plain` itself, or a buffer made here
  // that a reorder copies into `plain` after each run.
  dnnl::memory output(const dnnl::memory& plain, const dnnl::memory::desc& given);
  void set_primitive(const dnnl::primitive& primitive, const dnnl::memory::desc& scratchpad,
                     std::unordered_map<int, dnnl::memory> args);
  // Host work the op's contract needs around the primitive (batch norm's statistics, relu where
  // oneDNN's would drop a NaN), run in the caller's task_arena: `before` ahead of the reorders
  // into the primitive, `after` once the reorders out of it are done. Either may be empty.
  void set_host_steps(std::function<void()> before, std::function<void()> after);
  void run() override;

 private:
  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, dnnl::memory> args;
  };
  Step step(const dnnl::primitive& primitive, const dnnl::memory::desc& scratchpad,
            std::unordered_map<int, dnnl::memory> args) const;
  Step reorder(const dnnl::memory& from, const dnnl::memory& to) const;

  dnnl::engine engine_;
  int threads_;
  dnnl::stream stream_;
  std::vector<Step> before_;  // reorders into the primitive's layouts
  std::vector<Step> main_;    // the primitive (one)
  std::vector<Step> after_;   // reorders back into the plan's
  std::function<void()> host_before_, host_after_;
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
// Each is called only for its ops (onednn_routes.h), after cpu's checks passed on the node.
std::unique_ptr<cpu::TakenNode> make_conv2d(const Context& context, const cpu::BoundNode& node, std::string* why);
std::unique_ptr<cpu::TakenNode> make_linear(const Context& context, const cpu::BoundNode& node, std::string* why);
std::unique_ptr<cpu::TakenNode> make_eltwise(const Context& context, const cpu::BoundNode& node, std::string* why);
std::unique_ptr<cpu::TakenNode> make_avgpool(const Context& context, const cpu::BoundNode& node, std::string* why);
std::unique_ptr<cpu::TakenNode> make_batchnorm(const Context& context, const cpu::BoundNode& node, std::string* why);
std::unique_ptr<cpu::TakenNode> make_softmax(const Context& context, const cpu::BoundNode& node, std::string* why);

}  // namespace onednn
}  // namespace parity
