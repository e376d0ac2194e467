// backends/kit/node_hooks.h — node hooks (plugin.h, ABI 8) for an executor that runs or queues
// nodes in plan order: the points checked once when set, then the hook called at each node.
// Header-only plain C++, like abi_guard.h, so plugins share it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backends/kit/abi_guard.h"
#include "parity/plugin.h"

namespace parity {
namespace kit {

class NodeHookSchedule {
 public:
  using Hook = std::function<void(int32_t point, void* stream)>;

  // Keeps `points` (empty: no hooks). A point outside [0, num_nodes), with an unknown `when`, or
  // out of plan order (ascending node, BEFORE before AFTER at one node) is AbiError
  // INVALID_ARGUMENT naming it.
  void set(std::vector<parity_hook_point> points, Hook hook, int32_t num_nodes, const std::string& backend) {
    for (size_t i = 0; i < points.size(); ++i) {
      const parity_hook_point& p = points[i];
      const std::string where = backend + ": set_node_hooks: point " + std::to_string(i) + " (node " +
                                std::to_string(p.node) + ", when " + std::to_string(p.when) + ")";
      if (p.node < 0 || p.node >= num_nodes)
        abi_fail(PARITY_STATUS_INVALID_ARGUMENT, where + " is outside the plan's " + std::to_string(num_nodes) + " nodes");
      if (p.when != PARITY_HOOK_BEFORE && p.when != PARITY_HOOK_AFTER)
        abi_fail(PARITY_STATUS_INVALID_ARGUMENT, where + ": when must be PARITY_HOOK_BEFORE or PARITY_HOOK_AFTER");
      if (i > 0 && order(points[i - 1]) > order(p))
        abi_fail(PARITY_STATUS_INVALID_ARGUMENT, where + " comes after a later point: points must be in plan order");
    }
    if (!points.empty() && !hook) abi_fail(PARITY_STATUS_INVALID_ARGUMENT, backend + ": set_node_hooks: no hook function");
    points_ = std::move(points);
    hook_ = points_.empty() ? Hook() : std::move(hook);
    next_.assign(static_cast<size_t>(num_nodes) + 1, 0);
    size_t k = 0;
    for (int32_t node = 0; node <= num_nodes; ++node) {
      while (k < points_.size() && points_[k].node < node) ++k;
      next_[static_cast<size_t>(node)] = static_cast<int32_t>(k);
    }
  }

  bool empty() const { return points_.empty(); }

  // Calls the hook at every point of `node` and `when`, in order. What the hook throws passes.
  void at(int32_t node, parity_hook_when when, void* stream) const {
    if (points_.empty()) return;
    for (int32_t k = next_[static_cast<size_t>(node)]; k < static_cast<int32_t>(points_.size()) && points_[k].node == node; ++k)
      if (points_[k].when == when) hook_(k, stream);
  }

 private:
  static int64_t order(const parity_hook_point& p) { return int64_t{p.node} * 2 + p.when; }

  std::vector<parity_hook_point> points_;
  Hook hook_;
  std::vector<int32_t> next_;  // per node: the index of its first point
};

}  // namespace kit
}  // namespace parity
