// util/process.cpp — spawning a program with posix_spawn, its standard output read through a pipe.
#include "util/process.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace parity {
namespace {

// The current environment with `extra` added; a variable named in `extra` is replaced.
std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    bool replaced = false;
    for (const std::string& x : extra) {
      const size_t eq = x.find('=');
      if (entry.compare(0, eq + 1, x, 0, eq + 1) == 0) replaced = true;
    }
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& words) {
  std::vector<char*> out;
  for (std::string& w : words) out.push_back(w.data());
  out.push_back(nullptr);
  return out;
}

std::string quote_word(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_./=:,+-", c))) plain = false;
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                          bool capture_out) {
  ProcessResult result;
  if (argv.empty()) return result;
  std::vector<std::string> args = argv, env = environment_with(extra_env);
  std::vector<char*> c_args = c_strings(args), c_env = c_strings(env);
  int pipe_fds[2] = {-1, -1};
  if (capture_out && ::pipe(pipe_fds) != 0) return result;
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  if (capture_out) {
    ::posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    ::posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    ::posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
  }
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, c_args[0], &actions, nullptr, c_args.data(), c_env.data());
  ::posix_spawn_file_actions_destroy(&actions);
  if (capture_out) ::close(pipe_fds[1]);
  if (spawned != 0) {
    if (capture_out) ::close(pipe_fds[0]);
    return result;
  }
  result.started = true;
  if (capture_out) {
    char buf[4096];
    for (;;) {
      const ssize_t got = ::read(pipe_fds[0], buf, sizeof buf);
      if (got > 0) result.out.append(buf, static_cast<size_t>(got));
      else if (got == 0 || errno != EINTR) break;
    }
    ::close(pipe_fds[0]);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string shell_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
  std::string cmd;
  for (const std::string& e : extra_env) {
    const size_t eq = e.find('=');
    cmd += e.substr(0, eq + 1) + quote_word(e.substr(eq + 1)) + " ";
  }
  for (const std::string& a : argv) cmd += (cmd.empty() || cmd.back() == ' ' ? "" : " ") + quote_word(a);
  return cmd;
}

}  // namespace parity
