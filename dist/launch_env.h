// dist/launch_env.h — which rank of how many this process is, as its launcher (mpirun, mpiexec,
// srun) told it through environment variables, read before any communicator exists.
#pragma once

#include <map>
#include <string>

namespace parity {

struct LaunchEnv {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // the rank among the processes on this node (which GPU to take)
  int local_size = 1;
  std::string launcher;  // "Open MPI", "MPICH", "SLURM", or "" when not launched by one
};

// The launch described by `env` (variable name → value). Recognised launchers, in this order of
// precedence: Open MPI (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE), MPICH's Hydra
// (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS) and SLURM's srun (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID with SLURM_TASKS_PER_NODE or SLURM_NTASKS_PER_NODE).
// None of them: rank 0 of 1. Throws Error(invalid_argument) naming the variable and its value
// when one is not a count (not an integer, negative, a rank not below its size, a size below 1),
// or when a launcher's rank is set without its size.
LaunchEnv launch_env_from(const std::map<std::string, std::string>& env);

// launch_env_from() over this process's environment.
LaunchEnv launch_env();

}  // namespace parity
