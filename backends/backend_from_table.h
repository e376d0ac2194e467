// backends/backend_from_table.h — the C++ parity::Backend and Executable over any
// parity_backend_table: every backend, built in or plugin, is used through this one wrapper.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "parity/backend.h"
#include "parity/plugin.h"

namespace parity {

// Creates an instance through `table` (which must outlive it: built-in tables are static and
// plugin libraries are never unloaded). A failing create throws Error with its message.
std::unique_ptr<Backend> make_backend_from_table(const parity_backend_table* table, const BackendOptions& options);

// The table's memory_need_without_device (ABI 4): what compiling `plan` would allocate on a
// default instance, asked of a table whose probe may have found no device; nullopt when the
// table has no such planner. An invalid plan throws Error with the plugin's message.
std::optional<MemoryNeed> memory_need_from_table_without_device(const parity_backend_table* table,
                                                                const parity_plan& plan, const CompileOptions& options);

// Why a table built for plugin ABI `abi_version` must not be handed `node`, or "" when it may:
// a CONV2D* node using what PARITY_ABI_CONV2D_GENERAL added (groups, dilation, asymmetric
// padding, no bias) and a table older than that. Until the unreleased ABI 5 is numbered
// (PARITY_ABI_VERSION still 4), a table reporting this header's own version knows them.
std::string abi_refusal(uint32_t abi_version, const parity_node_desc& node);

// "f32 i32 | host-memory deterministic threads | host, 16 threads": the capabilities of a
// default instance, for `parity info`.
std::string describe_capabilities(const parity_backend_table* table);

}  // namespace parity
