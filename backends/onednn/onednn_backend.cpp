// backends/onednn/onednn_backend.cpp — the onednn backend: the cpu executable (its arena, store,
// checks and fusion pass) with a delegate that, at compile, hands each node of an op that
// onednn_routes.h routes to oneDNN to a primitive made then; every other node, and any such node
// oneDNN declines, runs on the cpu backend's kernels. Also: oneDNN's OpenMP threads and their
// wait policy.
//
// Threads. Debian's oneDNN runs on OpenMP (libgomp). BackendOptions::threads sizes both pools:
// cpu's task_arena and OpenMP's team, set with omp_set_num_threads before each primitive is made
// (its work split is fixed then) and before each run (onednn_primitive.cpp). oneDNN's threadpool
// API (dnnl_threadpool_interop) exists only in DNNL_CPU_RUNTIME=THREADPOOL builds, not this one.
//
// Wait policy. oneTBB's workers and OpenMP's take turns (a node runs on one pool or the other),
// so OpenMP threads should sleep, not spin, after their parallel region. libgomp reads
// OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its load-time constructor, which runs before any
// code of libparity (libgomp is a dependency of libdnnl, itself a dependency of libparity), and
// it has no call to change them later: a setenv() here would be silently ignored. So the policy
// can only be chosen by whoever starts the process; with it unset, libgomp spins for a bounded
// time (GOMP_SPINCOUNT's default, 300000 spins) and then sleeps. That costs: a seed-cnn-112
// training step on 2 threads took 50 to 53 ms unset and 41 to 48 ms with passive. `parity info`
// says which is in effect, and README recommends OMP_WAIT_POLICY=passive. (Re-executing the
// process with it set would work, but not under mpirun's launch and not for a library user.)
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "backends/builtin.h"
#include "backends/cpu/half_nodes.h"
#include "backends/onednn/onednn_routes.h"
#include "backends/onednn/onednn_ops.h"
#include "parity/error.h"

namespace parity {
namespace {

// Asked once per node at compile: oneDNN for the ops onednn_routes.h routes to it, when oneDNN
// makes a primitive for it that is not its reference implementation; otherwise cpu's kernel.
// With PARITY_ONEDNN_LOG set, each decision is written to stderr.
class OnednnDelegate final : public cpu::NodeDelegate {
 public:
  explicit OnednnDelegate(int threads) : log_(std::getenv("PARITY_ONEDNN_LOG") != nullptr) {
    context_.threads = threads;
  }

  std::unique_ptr<cpu::TakenNode> take(const cpu::BoundNode& node) override {
    std::string why;
    std::unique_ptr<cpu::TakenNode> taken;
    if (cpu::touches_half(node)) {
      if (log_)
        std::fprintf(stderr, "onednn: node '%s' (%s): cpu kernel; %s\n", node.name.c_str(), parity_op_name(node.op),
                     onednn::kHalfReason);
      return taken;
    }
    omp_set_num_threads(context_.threads);  // primitives fix their work split for this many threads
    try {
      switch (onednn::route_of(node.op)) {
        case onednn::Route::conv2d: taken = onednn::make_conv2d(context_, node, &why); break;
        case onednn::Route::linear: taken = onednn::make_linear(context_, node, &why); break;
        case onednn::Route::eltwise: taken = onednn::make_eltwise(context_, node, &why); break;
        case onednn::Route::avgpool: taken = onednn::make_avgpool(context_, node, &why); break;
        case onednn::Route::batchnorm: taken = onednn::make_batchnorm(context_, node, &why); break;
        case onednn::Route::softmax: taken = onednn::make_softmax(context_, node, &why); break;
        case onednn::Route::cpu: why = onednn::cpu_reason(node.op); break;
      }
    } catch (const dnnl::error& e) {
      why = std::string("oneDNN made no primitive for it: ") + e.what();
    }
    if (log_)
      std::fprintf(stderr, "onednn: node '%s' (%s): %s\n", node.name.c_str(), parity_op_name(node.op),
                   taken ? "oneDNN" : ("cpu kernel; " + why).c_str());
    return taken;
  }

 private:
  onednn::Context context_;
  bool log_;
};

class OnednnBackend final : public Backend {
 public:
  explicit OnednnBackend(const BackendOptions& options) {
    if (options.threads < 0)
      throw Error(ErrorKind::invalid_argument, "onednn: threads must be >= 0 (0 = every hardware thread), got " +
                                                   std::to_string(options.threads));
    threads_ = options.threads == 0 ? hardware_threads() : options.threads;
  }

  std::string name() const override { return "onednn"; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    if (node.op >= 0 && node.op < PARITY_OP_COUNT) return true;  // what oneDNN declines, cpu runs
    if (reason) *reason = "op " + std::to_string(static_cast<int>(node.op)) + " is not an op of plugin.h";
    return false;
  }

  // No memory_need: oneDNN's scratchpads are sized by the primitives it picks, known only once
  // they are made (Backend's default: nullopt, "cannot tell").

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    OnednnDelegate delegate(threads_);
    return cpu::make_cpu_executable("onednn", plan, options, threads_, share_persistent_with, &delegate);
  }

  int threads() const override { return threads_; }

 private:
  int threads_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_onednn_backend(const BackendOptions& options) {
  return std::make_unique<OnednnBackend>(options);
}

}  // namespace parity
