// backends/loader.h — where backends come from: the built-in tables, and plugin files
// libparity-backend-<name>.so found on the search path, opened with dlopen, checked (entry
// point, ABI version, required functions) and probed. Holds no state: dlopen keeps its own.
#pragma once

#include <string>
#include <vector>

#include "parity/backend.h"  // plugin_search_folders()
#include "parity/plugin.h"

namespace parity {

struct FoundBackend {
  std::string name;
  bool known = false;       // built in, a plugin name parity knows (cuda, hip, simt), or a file was found
  const parity_backend_table* table = nullptr;  // non-null when usable
  // The table once it passed every check but the probe's (entry point, ABI version, name,
  // required functions): non-null also when the probe found no device, for what a table may be
  // asked without one (memory_need_without_device). Never used to create an instance.
  const parity_backend_table* checked_table = nullptr;
  std::string location;     // "built in", or the plugin file
  std::string detail;       // usable: what it is; otherwise why not
};

// Looks one backend up by name: built in first, then the first plugin file on the search path.
FoundBackend find_backend(const std::string& name);

// Names of plugin files present on the search path that parity does not list already.
std::vector<std::string> extra_plugin_names();

// The plugin names parity knows of whether or not they are built.
const std::vector<std::string>& known_plugin_names();

}  // namespace parity
