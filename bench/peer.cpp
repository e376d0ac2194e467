// bench/peer.cpp — the LibTorch peer in its best allocator configuration, its rounds summarised,
// and parity's peak-memory worker; both spawned through check/torch_peer_launcher.h.
#include "bench/peer.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <unistd.h>

#include "check/torch_peer_launcher.h"

namespace parity::bench {
namespace {

using json = nlohmann::json;

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

TorchPeerJob Peer::job(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                      double min_time, int warmup, const std::string& autocast) const {
  TorchPeerJob j;
  j.mode = mode;
  j.model = model;
  j.weights = weights;
  j.model_file = model_file_beside(weights);
  j.threads = threads_;
  j.batch = batch;
  j.seed = seed_;
  j.min_time = min_time;
  j.warmup = warmup;
  j.autocast = autocast;
  return j;
}

std::vector<std::string> Peer::preload(bool with_jemalloc) const {
  if (!with_jemalloc) return {};
  return {"LD_PRELOAD=" + jemalloc_};
}

std::string Peer::command(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                          double min_time, int warmup, bool with_jemalloc, const std::string& autocast) const {
  return shell_command(torch_peer_arguments(path_, job(model, mode, batch, weights, min_time, warmup, autocast)),
                       preload(with_jemalloc));
}

json Peer::spawn(const TorchPeerJob& j, bool with_jemalloc) const {
  return run_for_json(torch_peer_arguments(path_, j), preload(with_jemalloc));
}

json Peer::run(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
               double min_time, int warmup, const std::string& autocast) {
  const std::string key = model + " " + mode + " " + autocast;
  auto it = use_jemalloc_.find(key);
  const TorchPeerJob j = job(model, mode, batch, weights, min_time, warmup, autocast);
  if (it != use_jemalloc_.end()) return spawn(j, it->second);
  json plain = spawn(j, false);
  if (jemalloc_.empty() || plain.contains("error")) {
    use_jemalloc_[key] = false;
    return plain;
  }
  json with = spawn(j, true);
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
      s["config"] = fmt::format("libtorch {}, {} BLAS, {}{}", r.value("torch_version", "?"), r.value("blas", "?"),
                                r.value("jemalloc", false) ? "jemalloc" : "system malloc",
                                r.value("autocast", std::string("off")) == "off"
                                    ? ""
                                    : ", autocast " + r.value("autocast", std::string()));
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
  return run_for_json({self, "bench", "--rss-worker", "--models", model, "--backend", backend, "--batch",
                       std::to_string(batch), "--threads", std::to_string(threads), "--rss-steps", std::to_string(steps),
                       "--seed", std::to_string(seed)});
}

}  // namespace parity::bench
