// backends/cpu/cpu_fusion.h — the cpu backend's fusion pass at compile, which fills each bound
// node's NodeFusion record (cpu_ops.h) from the plan alone.
#pragma once

#include <cstdint>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "parity/plugin.h"

namespace parity {
namespace cpu {

// Called for each node in plan order while binding: tracks the values that are a max-pool's
// gradient (pool_gradient, by value index) and sets NodeFusion::sparse_dy of a conv backward
// reading one as its dy.
void mark_pool_gradient(const parity_node_desc& desc, std::vector<bool>& pool_gradient, BoundNode& node);

// After every node is bound and prepared: fuses neighbours (NodeFusion) and returns the scratch
// bytes the pooled-form fusion needs.
int64_t fuse_nodes(const parity_plan& plan, std::vector<BoundNode>& nodes);

}  // namespace cpu
}  // namespace parity
