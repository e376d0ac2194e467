// tools/threads_option.h — the --threads option every command shares: 0 means every hardware
// thread, and a count above the hardware threads this process may use is refused.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace parity::tools {

// "--threads N": negative counts are left to the library (its message names the option);
// N > hardware_threads() fails parsing with a message naming both numbers.
CLI::Option* add_threads_option(CLI::App& cmd, int& threads, const std::string& help);

// The refusal's text, or "" when `threads` is allowed on a machine with `hardware` threads.
std::string threads_above_hardware(int threads, int hardware);

}  // namespace parity::tools
