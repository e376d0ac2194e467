// util/process.h — running another program: its argument list spawned without a shell, its
// standard output captured, its exit status returned; and the list quoted for a shell to show.
#pragma once

#include <string>
#include <vector>

namespace parity {

struct ProcessResult {
  bool started = false;  // false: the program could not be spawned at all
  int exit_status = -1;  // the exit code, or -1 when the program ended by a signal
  std::string out;       // its standard output, when captured
};

// Runs argv[0] (searched in PATH when it has no '/') with `argv` and the current environment
// plus `extra_env` ("NAME=value", replacing a variable of that name). With `capture_out` its
// standard output is returned in `out`; otherwise the program shares this process's. Standard
// error is always shared, so the program's own messages reach the user.
ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {},
                          bool capture_out = true);

// The same invocation as one line a POSIX shell runs: `extra_env` first, then argv, each word
// single-quoted when it holds anything but [A-Za-z0-9_./=:,+-].
std::string shell_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {});

}  // namespace parity
