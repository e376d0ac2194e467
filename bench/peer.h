// bench/peer.h — timing the LibTorch peer (bench/torch_peer/) in a separate process, in its
// best configuration (with and without jemalloc preloaded, keeping the faster; the BLAS is the
// one Debian's alternatives select), and the peak-memory worker of parity itself.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "check/torch_peer_launcher.h"

namespace parity::bench {

class Peer {
 public:
  Peer(std::string path, std::string jemalloc, int threads, uint64_t seed);
  // One timed run of the peer: its JSON, or {"error": ...}. The first run of each (model, mode,
  // autocast) tries both allocators and keeps the faster for the later ones. autocast "bf16": under
  // CPU bf16 autocast; "": float32.
  nlohmann::json run(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                     double min_time, int warmup, const std::string& autocast = "");
  std::string describe() const;
  // The command that runs the peer alone with the same settings (for the README and the report).
  std::string command(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                      double min_time, int warmup, bool with_jemalloc, const std::string& autocast = "") const;

 private:
  TorchPeerJob job(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                   double min_time, int warmup, const std::string& autocast) const;
  std::vector<std::string> preload(bool with_jemalloc) const;  // the environment that preloads jemalloc
  nlohmann::json spawn(const TorchPeerJob& job, bool with_jemalloc) const;
  std::string path_, jemalloc_;
  int threads_;
  uint64_t seed_;
  std::map<std::string, bool> use_jemalloc_;  // per "model mode autocast", once decided
};

// The peer found from `path`, PARITY_TORCH_PEER or the build (torch_peer_path); nullptr with the reason when none.
std::unique_ptr<Peer> make_torch_peer(const std::string& path, const std::string& jemalloc, int threads,
                                      uint64_t seed, std::string* why);

// Rounds of one case combined: median of the rounds' medians, extremes, losses, memory, config.
nlohmann::json summarize_peer(const std::vector<nlohmann::json>& rounds);

// Runs `self bench --rss-worker ...` and returns its JSON ({"vm_hwm_kib": ...}) or {"error": ...}.
nlohmann::json run_rss_process(const std::string& self, const std::string& model, const std::string& backend,
                               int64_t batch, int threads, int64_t steps, uint64_t seed);

}  // namespace parity::bench
