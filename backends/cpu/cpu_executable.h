// backends/cpu/cpu_executable.h — the cpu executable for backends built on it (onednn): made with
// a NodeDelegate that may take nodes over from cpu's kernels, once, at compile.
#pragma once

#include <memory>
#include <optional>

#include "backends/cpu/cpu_ops.h"
#include "parity/backend.h"

namespace parity {
namespace cpu {

// A node's computation, prepared at compile by a delegate, that runs instead of cpu's kernel.
class TakenNode {
 public:
  virtual ~TakenNode() = default;
  // Called at each execute inside the executable's task_arena, nodes one at a time.
  virtual void run() = 0;
};

class NodeDelegate {
 public:
  virtual ~NodeDelegate() = default;
  // Called once per node that runs (not skipped by cpu's fusion pass), after cpu has checked,
  // prepared and fused it, with the node as bound then (out[0] of a conv fused with its relu is
  // the relu's output, NodeFusion::relu says so): what runs it instead of cpu's kernel, or
  // nullptr for cpu's kernel. A node with NodeFusion::pool_source reads a dy that is never
  // written; a delegate must leave such a node to cpu. A conv with NodeFusion::pool_after must
  // also run that pool (its node is skipped).
  virtual std::unique_ptr<TakenNode> take(const BoundNode& node) = 0;
};

// The cpu executable of `plan` (threads: its task_arena's concurrency), sharing persistent values
// with `share_persistent_with` (an executable made here or by the cpu backend), with `delegate`
// (may be null) asked for every node. `backend` names the caller in error messages: it replaces
// the "cpu: " that leads cpu's own.
std::unique_ptr<Executable> make_cpu_executable(const char* backend, const parity_plan& plan,
                                                const CompileOptions& options, int threads,
                                                Executable* share_persistent_with, NodeDelegate* delegate);

}  // namespace cpu
}  // namespace parity
