// dist/launch_env.cpp — the launchers' environment variables parsed into a LaunchEnv.
#include "dist/launch_env.h"

#include <fmt/format.h>
#include <unistd.h>  // environ

#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>

#include "parity/error.h"

namespace parity {
namespace {

using Env = std::map<std::string, std::string>;

const std::string* find(const Env& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

// A non-negative int written in decimal digits and nothing else (no sign, no spaces).
int parse_count(const std::string& name, const std::string& value) {
  int64_t parsed = 0;
  const char* begin = value.data();
  const char* end = value.data() + value.size();
  auto [stop, ec] = std::from_chars(begin, end, parsed);
  if (value.empty() || ec == std::errc::invalid_argument || stop != end) {
    throw Error(ErrorKind::invalid_argument, fmt::format("{}=\"{}\" is not an integer", name, value));
  }
  if (ec == std::errc::result_out_of_range || parsed > std::numeric_limits<int>::max()) {
    throw Error(ErrorKind::invalid_argument, fmt::format("{}={} is out of range", name, value));
  }
  if (parsed < 0) {
    throw Error(ErrorKind::invalid_argument, fmt::format("{}={} is negative", name, value));
  }
  return static_cast<int>(parsed);
}

// One launcher's four variables; the local pair may be absent (then the launch is taken to be on
// one node, where the local rank is the rank).
struct LauncherVariables {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_size;  // nullptr for SLURM, whose local size is an entry of a count list
};

// Checks a (rank, size) pair read from the variables named `rank_name` and `size_name`.
void check_rank_below_size(int rank, int size, const std::string& rank_name, const std::string& rank_value,
                           const std::string& size_name, const std::string& size_value) {
  if (size < 1) {
    throw Error(ErrorKind::invalid_argument, fmt::format("{}={} must be at least 1", size_name, size_value));
  }
  if (rank >= size) {
    throw Error(ErrorKind::invalid_argument, fmt::format("{}={} must be below {}={}", rank_name, rank_value,
                                                         size_name, size_value));
  }
}

// SLURM's compressed count list, "2(x3),1": 2 tasks on each of nodes 0..2, 1 on node 3. The whole
// list is checked, then the count of node `node` returned, or nullopt when the list has fewer nodes.
std::optional<int> compressed_count_of_node(const std::string& name, const std::string& value, int node) {
  auto malformed = [&] {
    return Error(ErrorKind::invalid_argument,
                 fmt::format("{}=\"{}\" is not a SLURM count list such as \"2(x3),1\"", name, value));
  };
  auto count_in = [&](const std::string& text) {
    try {
      return parse_count(name, text);
    } catch (const Error&) {
      throw malformed();
    }
  };
  std::optional<int> count_of_node;
  int64_t first_node_of_entry = 0;
  size_t at = 0;
  while (true) {
    size_t comma = value.find(',', at);
    std::string entry = value.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    int count = 0;
    int64_t repeat = 1;
    size_t paren = entry.find('(');
    if (paren == std::string::npos) {
      count = count_in(entry);
    } else {  // "N(xM)"
      if (entry.size() < paren + 4 || entry.compare(paren, 2, "(x") != 0 || entry.back() != ')') throw malformed();
      count = count_in(entry.substr(0, paren));
      repeat = count_in(entry.substr(paren + 2, entry.size() - paren - 3));
      if (repeat < 1) throw malformed();
    }
    if (!count_of_node && node < first_node_of_entry + repeat) count_of_node = count;
    first_node_of_entry += repeat;
    if (comma == std::string::npos) return count_of_node;
    at = comma + 1;
  }
}

LaunchEnv from_launcher(const Env& env, const LauncherVariables& names) {
  const std::string* rank_value = find(env, names.rank);
  const std::string* size_value = find(env, names.size);
  if (!size_value) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("{}={} is set but {} is not: the {} launch gives no world size", names.rank,
                            *rank_value, names.size, names.launcher));
  }
  LaunchEnv launch;
  launch.launcher = names.launcher;
  launch.rank = parse_count(names.rank, *rank_value);
  launch.size = parse_count(names.size, *size_value);
  check_rank_below_size(launch.rank, launch.size, names.rank, *rank_value, names.size, *size_value);
  // Without the local pair, the launch is taken to be on one node: the local rank is the rank.
  const std::string* local_rank_value = find(env, names.local_rank);
  const std::string* local_size_value = names.local_size ? find(env, names.local_size) : nullptr;
  launch.local_rank = local_rank_value ? parse_count(names.local_rank, *local_rank_value) : launch.rank;
  launch.local_size = local_size_value ? parse_count(names.local_size, *local_size_value) : launch.size;
  check_rank_below_size(launch.local_rank, launch.local_size, names.local_rank,
                        local_rank_value ? *local_rank_value : std::string("(not set)"),
                        local_size_value ? names.local_size : names.size,
                        local_size_value ? *local_size_value : *size_value);
  return launch;
}

// srun: the local size is not a variable of its own but this node's entry in a count list.
LaunchEnv from_slurm(const Env& env) {
  LaunchEnv launch = from_launcher(env, {"SLURM", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr});
  int node = 0;
  if (const std::string* v = find(env, "SLURM_NODEID")) node = parse_count("SLURM_NODEID", *v);
  // SLURM_TASKS_PER_NODE is always set under srun; SLURM_NTASKS_PER_NODE only with
  // --ntasks-per-node, and then as one number meaning every node (a single-entry list).
  for (const char* name : {"SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"}) {
    const std::string* v = find(env, name);
    if (!v) continue;
    bool one_number_for_every_node =
        std::string(name) == "SLURM_NTASKS_PER_NODE" && v->find_first_of("(,") == std::string::npos;
    std::optional<int> count = compressed_count_of_node(name, *v, one_number_for_every_node ? 0 : node);
    if (!count) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("{}={} lists fewer nodes than SLURM_NODEID={} needs", name, *v, node));
    }
    if (*count < 1 || launch.local_rank >= *count) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("SLURM_LOCALID={} must be below this node's task count, {} ({}={}, SLURM_NODEID={})",
                              launch.local_rank, *count, name, *v, node));
    }
    launch.local_size = *count;
    break;
  }
  return launch;
}

}  // namespace

LaunchEnv launch_env_from(const Env& env) {
  // mpirun inside a SLURM allocation (salloc, sbatch) sets its own variables and inherits
  // SLURM's, which then describe the allocation, not this process: the MPI launcher's come first.
  // Open MPI before MPICH because Open MPI's PMIx may export PMI_* variables as well.
  if (find(env, "OMPI_COMM_WORLD_RANK")) {
    return from_launcher(env, {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                               "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"});
  }
  if (find(env, "PMI_RANK")) {
    return from_launcher(env, {"MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"});
  }
  if (find(env, "SLURM_PROCID")) return from_slurm(env);
  return LaunchEnv{};
}

LaunchEnv launch_env() {
  Env env;
  for (char** entry = environ; entry && *entry; ++entry) {
    std::string text = *entry;
    size_t eq = text.find('=');
    if (eq != std::string::npos) env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return launch_env_from(env);
}

}  // namespace parity
