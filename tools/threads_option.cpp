// tools/threads_option.cpp — the --threads option every command shares (tools/threads_option.h).
#include "tools/threads_option.h"

#include <fmt/format.h>

#include "parity/backend.h"

namespace parity::tools {

std::string threads_above_hardware(int threads, int hardware) {
  if (threads <= hardware) return "";
  return fmt::format("{} threads asked for, but this machine lets parity use {} hardware threads; pass at most {} "
                     "(0 uses all {})",
                     threads, hardware, hardware, hardware);
}

CLI::Option* add_threads_option(CLI::App& cmd, int& threads, const std::string& help) {
  return cmd.add_option("--threads", threads, help)
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& text) {
            int asked = 0;
            try {
              asked = std::stoi(text);
            } catch (const std::exception&) {
              return std::string();  // not a number: CLI11's own conversion says so
            }
            return threads_above_hardware(asked, hardware_threads());
          },
          "", "at most the hardware threads"));
}

}  // namespace parity::tools
