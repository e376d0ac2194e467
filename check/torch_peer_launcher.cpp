// check/torch_peer_launcher.cpp — the LibTorch peer's path, its argument list, and reading the
// JSON line a spawned program prints.
#include "check/torch_peer_launcher.h"

#include <filesystem>
#include <cstdlib>

#include <fmt/format.h>

namespace parity {

std::string torch_peer_path(const std::string& path) {
  std::string p = path;
  if (p.empty())
    if (const char* env = std::getenv("PARITY_TORCH_PEER")) p = env;
#ifdef PARITY_TORCH_PEER_PATH
  if (p.empty()) p = PARITY_TORCH_PEER_PATH;
#endif
  return p;
}

std::string model_file_beside(const std::string& weights) {
  return std::filesystem::path(weights).replace_extension(".model.json").string();
}

std::vector<std::string> torch_peer_arguments(const std::string& peer, const TorchPeerJob& job) {
  // "--mode" comes first: the peer picks its step mode from argv[1..2].
  std::vector<std::string> args = {peer,          "--mode",       job.mode,   "--model",
                                   job.model,     "--model-file", job.model_file, "--weights",
                                   job.weights};
  if (job.mode == "step") {
    args.insert(args.end(), {"--input", job.input, "--out", job.out, "--steps", std::to_string(job.steps), "--seed",
                             std::to_string(job.seed)});
  } else {
    args.insert(args.end(), {"--batch", std::to_string(job.batch), "--seed", std::to_string(job.seed), "--min-time",
                             fmt::format("{}", job.min_time), "--warmup", std::to_string(job.warmup)});
    if (!job.autocast.empty()) args.insert(args.end(), {"--autocast", job.autocast});
  }
  args.insert(args.end(), {"--threads", std::to_string(job.threads)});
  return args;
}

nlohmann::json run_for_json(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
  const ProcessResult r = run_process(argv, extra_env);
  if (!r.started) return {{"error", "cannot start: " + shell_command(argv, extra_env)}};
  const std::string& out = r.out;
  size_t end = out.size();
  while (end > 0) {
    size_t begin = out.rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    const std::string line = out.substr(begin, end - begin);
    if (!line.empty() && line[0] == '{') {
      try {
        return nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
      }
    }
    if (begin == 0) break;
    end = begin - 1;
  }
  return {{"error", fmt::format("exit status {}, no JSON result from: {}", r.exit_status, shell_command(argv, extra_env))}};
}

}  // namespace parity
