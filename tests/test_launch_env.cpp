// tests/test_launch_env.cpp — rank, size and local rank read from the environments of Open MPI's
// mpirun, MPICH's mpiexec (Hydra) and SLURM's srun, written out here since none of them runs in CI.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "dist/launch_env.h"
#include "parity/error.h"

namespace parity {
namespace {

using Env = std::map<std::string, std::string>;

void expect_launch(const LaunchEnv& launch, const std::string& launcher, int rank, int size, int local_rank,
                   int local_size) {
  EXPECT_EQ(launch.launcher, launcher);
  EXPECT_EQ(launch.rank, rank);
  EXPECT_EQ(launch.size, size);
  EXPECT_EQ(launch.local_rank, local_rank);
  EXPECT_EQ(launch.local_size, local_size);
}

// The message of the Error(invalid_argument) that `env` raises, or a failure when it raises none.
std::string rejection_of(const Env& env) {
  try {
    LaunchEnv launch = launch_env_from(env);
    ADD_FAILURE() << "accepted as rank " << launch.rank << " of " << launch.size << " (" << launch.launcher << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << e.what();
    return e.what();
  }
  return "";
}

const Env kOpenMpi = {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
const Env kMpich = {{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "1"}};
// srun -N 4 -n 7 with tasks 2,2,2,1 on nodes 0..3: global task 6 is alone on node 3.
const Env kSlurm = {{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "7"}, {"SLURM_LOCALID", "0"},
                    {"SLURM_NODEID", "3"}, {"SLURM_TASKS_PER_NODE", "2(x3),1"}};

Env merged(std::initializer_list<Env> envs) {
  Env all;
  for (const Env& env : envs) all.insert(env.begin(), env.end());
  return all;
}

TEST(LaunchEnv, NoLauncherIsRankZeroOfOne) {
  expect_launch(launch_env_from({}), "", 0, 1, 0, 1);
  expect_launch(launch_env_from({{"PATH", "/usr/bin"}, {"OMPI_COMM_WORLD_SIZE", "4"}}), "", 0, 1, 0, 1);
}

TEST(LaunchEnv, OpenMpi) { expect_launch(launch_env_from(kOpenMpi), "Open MPI", 5, 8, 1, 4); }

TEST(LaunchEnv, Mpich) { expect_launch(launch_env_from(kMpich), "MPICH", 2, 3, 0, 1); }

TEST(LaunchEnv, SlurmTakesThisNodesEntryOfTheCompressedList) {
  expect_launch(launch_env_from(kSlurm), "SLURM", 6, 7, 0, 1);
  Env env = kSlurm;
  env["SLURM_PROCID"] = "3";
  env["SLURM_LOCALID"] = "1";
  env["SLURM_NODEID"] = "1";  // inside the "2(x3)" run
  expect_launch(launch_env_from(env), "SLURM", 3, 7, 1, 2);
  env["SLURM_TASKS_PER_NODE"] = "1,2(x2),2";  // node 1 is the first of the repeated entry
  expect_launch(launch_env_from(env), "SLURM", 3, 7, 1, 2);
  env["SLURM_TASKS_PER_NODE"] = "4";
  env["SLURM_NODEID"] = "0";
  expect_launch(launch_env_from(env), "SLURM", 3, 7, 1, 4);
}

TEST(LaunchEnv, SlurmNtasksPerNodeIsOneNumberForEveryNode) {
  Env env = {{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "2"},
             {"SLURM_NODEID", "1"}, {"SLURM_NTASKS_PER_NODE", "3"}};
  expect_launch(launch_env_from(env), "SLURM", 5, 6, 2, 3);
  // SLURM_TASKS_PER_NODE, always set by srun, is read first.
  env["SLURM_TASKS_PER_NODE"] = "3,4";
  expect_launch(launch_env_from(env), "SLURM", 5, 6, 2, 4);
}

TEST(LaunchEnv, WithoutLocalVariablesTheLaunchIsOneNode) {
  expect_launch(launch_env_from({{"PMI_RANK", "1"}, {"PMI_SIZE", "4"}}), "MPICH", 1, 4, 1, 4);
  expect_launch(launch_env_from({{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "3"}}), "SLURM", 2, 3, 2, 3);
}

// mpirun inside a SLURM allocation: Open MPI's variables describe this process, SLURM's the job.
TEST(LaunchEnv, OpenMpiThenMpichThenSlurm) {
  expect_launch(launch_env_from(merged({kSlurm, kMpich, kOpenMpi})), "Open MPI", 5, 8, 1, 4);
  expect_launch(launch_env_from(merged({kSlurm, kMpich})), "MPICH", 2, 3, 0, 1);
  expect_launch(launch_env_from(merged({kSlurm, kOpenMpi})), "Open MPI", 5, 8, 1, 4);
}

TEST(LaunchEnv, MalformedValuesAreNamed) {
  struct Case {
    Env env;
    std::string expected;  // a part of the message
  };
  const Case cases[] = {
      {{{"OMPI_COMM_WORLD_RANK", "one"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK=\"one\" is not an integer"},
      {{{"OMPI_COMM_WORLD_RANK", ""}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK=\"\" is not an integer"},
      {{{"OMPI_COMM_WORLD_RANK", "1 "}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK=\"1 \" is not an integer"},
      {{{"OMPI_COMM_WORLD_RANK", "+1"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "is not an integer"},
      {{{"PMI_RANK", "-1"}, {"PMI_SIZE", "2"}}, "PMI_RANK=-1 is negative"},
      {{{"PMI_RANK", "2"}, {"PMI_SIZE", "2"}}, "PMI_RANK=2 must be below PMI_SIZE=2"},
      {{{"PMI_RANK", "0"}, {"PMI_SIZE", "0"}}, "PMI_SIZE=0 must be at least 1"},
      {{{"PMI_RANK", "0"}, {"PMI_SIZE", "99999999999"}}, "PMI_SIZE=99999999999 is out of range"},
      {{{"PMI_RANK", "0"}}, "PMI_RANK=0 is set but PMI_SIZE is not"},
      {{{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "1"}, {"MPI_LOCALNRANKS", "1"}},
       "MPI_LOCALRANKID=1 must be below MPI_LOCALNRANKS=1"},
      {{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "x"}},
       "OMPI_COMM_WORLD_LOCAL_RANK=\"x\" is not an integer"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_TASKS_PER_NODE", "2(x"}},
       "SLURM_TASKS_PER_NODE=\"2(x\" is not a SLURM count list"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_TASKS_PER_NODE", "2(3)"}},
       "SLURM_TASKS_PER_NODE=\"2(3)\" is not a SLURM count list"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_TASKS_PER_NODE", "1,,1"}},
       "SLURM_TASKS_PER_NODE=\"1,,1\" is not a SLURM count list"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_TASKS_PER_NODE", "2(x0)"}},
       "is not a SLURM count list"},
      {{{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_NODEID", "2"}, {"SLURM_TASKS_PER_NODE", "2(x2)"}},
       "SLURM_TASKS_PER_NODE=2(x2) lists fewer nodes than SLURM_NODEID=2 needs"},
      {{{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "2"}, {"SLURM_TASKS_PER_NODE", "2(x2)"}},
       "SLURM_LOCALID=2 must be below this node's task count, 2"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_NODEID", "n1"}}, "SLURM_NODEID=\"n1\" is not an integer"},
  };
  for (const Case& c : cases) {
    std::string message = rejection_of(c.env);
    EXPECT_NE(message.find(c.expected), std::string::npos) << "message: " << message << "\nexpected in it: " << c.expected;
  }
}

}  // namespace
}  // namespace parity
