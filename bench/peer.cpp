// bench/peer.cpp — spawning the LibTorch peer and parity's peak-memory worker with popen, and
// reading the one JSON line each prints.
#include "bench/peer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

namespace parity::bench {
namespace {

using json = nlohmann::json;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs a shell command; the last line of its stdout that parses as JSON, or {"error": ...}.
json run_for_json(const std::string& cmd) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return {{"error", "cannot start: " + cmd}};
  std::string out;
  char buf[4096];
  while (size_t got = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, got);
  const int status = ::pclose(pipe);
  json result;
  size_t end = out.size();
  while (end > 0) {
    size_t begin = out.rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    const std::string line = out.substr(begin, end - begin);
    if (!line.empty() && line[0] == '{') {
      try {
        result = json::parse(line);
        break;
      } catch (const json::exception&) {
      }
    }
    if (begin == 0) break;
    end = begin - 1;
  }
  if (result.is_null())
    return {{"error", fmt::format("exit status {}, no JSON result from: {}", status, cmd)}};
  return result;
}

std::string find_jemalloc(const std::string& given) {
  if (!given.empty()) return given;
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                        "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2"})
    if (std::filesystem::exists(p)) return p;
  return "";
}

}  // namespace

Peer::Peer(std::string path, std::string jemalloc, int threads, uint64_t seed)
    : path_(std::move(path)), jemalloc_(find_jemalloc(jemalloc)), threads_(threads), seed_(seed) {}

std::string Peer::command(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                          double min_time, int warmup, bool with_jemalloc) const {
  std::string cmd = with_jemalloc ? "LD_PRELOAD=" + quote(jemalloc_) + " " : "";
  cmd += fmt::format(
      "{} --model {} --model-file {} --mode {} --batch {} --threads {} --weights {} --seed {} --min-time {} --warmup {}",
      quote(path_), model, quote(model_file_beside(weights)), mode, batch, threads_, quote(weights), seed_, min_time, warmup);
  return cmd;
}

json Peer::spawn(const std::string& cmd) const { return run_for_json(cmd); }

json Peer::run(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
               double min_time, int warmup) {
  const std::string key = model + " " + mode;
  auto it = use_jemalloc_.find(key);
  if (it != use_jemalloc_.end()) return spawn(command(model, mode, batch, weights, min_time, warmup, it->second));
  json plain = spawn(command(model, mode, batch, weights, min_time, warmup, false));
  if (jemalloc_.empty() || plain.contains("error")) {
    use_jemalloc_[key] = false;
    return plain;
  }
  json with = spawn(command(model, mode, batch, weights, min_time, warmup, true));
  const bool faster = !with.contains("error") && with.value("images_per_s", 0.0) > plain.value("images_per_s", 0.0);
  use_jemalloc_[key] = faster;
  json chosen = faster ? with : plain;
  chosen["tried"] = {{"system_malloc_images_per_s", plain.value("images_per_s", 0.0)},
                     {"jemalloc_images_per_s", with.value("images_per_s", 0.0)}};
  return chosen;
}

std::string Peer::describe() const {
  return fmt::format("{} (threads {}; jemalloc {})", path_, threads_,
                     jemalloc_.empty() ? "not found, system malloc only" : jemalloc_ + " tried, the faster kept");
}

std::string model_file_beside(const std::string& weights) {
  return std::filesystem::path(weights).replace_extension(".model.json").string();
}

std::string torch_peer_path(const std::string& path) {
  std::string p = path;
  if (p.empty())
    if (const char* env = std::getenv("PARITY_TORCH_PEER")) p = env;
#ifdef PARITY_TORCH_PEER_PATH
  if (p.empty()) p = PARITY_TORCH_PEER_PATH;
#endif
  return p;
}

std::unique_ptr<Peer> make_torch_peer(const std::string& path, const std::string& jemalloc, int threads,
                                      uint64_t seed, std::string* why) {
  const std::string p = torch_peer_path(path);
  if (p.empty()) {
    *why = "not built: libtorch (Debian libtorch-dev) was not found when parity was configured, or "
           "PARITY_BUILD_TORCH_PEER was OFF; --peer PATH or PARITY_TORCH_PEER names one built elsewhere";
    return nullptr;
  }
  if (::access(p.c_str(), X_OK) != 0) {
    *why = "not found: " + p;
    return nullptr;
  }
  return std::make_unique<Peer>(p, jemalloc, threads, seed);
}

json summarize_peer(const std::vector<json>& rounds) {
  std::vector<double> medians;
  json s;
  double lo = 1e300, hi = 0;
  long long hwm = 0;
  for (const json& r : rounds) {
    if (r.contains("error")) {
      s["error"] = r["error"];
      continue;
    }
    medians.push_back(r["median_s"]);
    lo = std::min(lo, r["min_s"].get<double>());
    hi = std::max(hi, r["max_s"].get<double>());
    hwm = std::max(hwm, r.value("vm_hwm_kib", 0LL));
    if (!s.contains("loss0")) {
      s["loss0"] = r["loss0"];
      s["loss1"] = r["loss1"];
      s["batch"] = r["batch"];
      s["config"] = fmt::format("libtorch {}, {} BLAS, {}", r.value("torch_version", "?"), r.value("blas", "?"),
                                r.value("jemalloc", false) ? "jemalloc" : "system malloc");
      if (r.contains("tried")) s["tried"] = r["tried"];
    }
  }
  s["rounds"] = rounds;
  if (medians.empty()) return s;
  std::sort(medians.begin(), medians.end());
  const double median = medians[medians.size() / 2];
  s["median_s"] = median;
  s["min_s"] = lo;
  s["max_s"] = hi;
  s["images_per_s"] = s["batch"].get<double>() / median;
  s["vm_hwm_kib"] = hwm;
  return s;
}

json run_rss_process(const std::string& self, const std::string& model, const std::string& backend, int64_t batch,
                     int threads, int64_t steps, uint64_t seed) {
  return run_for_json(fmt::format("{} bench --rss-worker --models {} --backend {} --batch {} --threads {} "
                                  "--rss-steps {} --seed {}",
                                  quote(self), model, backend, batch, threads, steps, seed));
}

}  // namespace parity::bench
