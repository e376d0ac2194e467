// bench/peer.h — running the LibTorch peer (bench/torch_peer/) as a separate process, in its
// best configuration (with and without jemalloc preloaded, keeping the faster; the BLAS is the
// one Debian's alternatives select), and the peak-memory worker of parity itself.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace parity::bench {

class Peer {
 public:
  Peer(std::string path, std::string jemalloc, int threads, uint64_t seed);
  // One timed run of the peer: its JSON, or {"error": ...}. The first run of each (model, mode)
  // tries both allocators and keeps the faster for the later ones.
  nlohmann::json run(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                     double min_time, int warmup);
  std::string describe() const;
  // The command that runs the peer alone with the same settings (for the README and the report).
  std::string command(const std::string& model, const std::string& mode, int64_t batch, const std::string& weights,
                      double min_time, int warmup, bool with_jemalloc) const;

 private:
  nlohmann::json spawn(const std::string& cmd) const;
  std::string path_, jemalloc_;
  int threads_;
  uint64_t seed_;
  std::map<std::string, bool> use_jemalloc_;  // per "model mode", once decided
};

// The model description file (model/model_description.h) the peer reads beside `weights`:
// "DIR/NAME.safetensors" -> "DIR/NAME.model.json". Whoever writes the weights writes it there.
std::string model_file_beside(const std::string& weights);

// The peer found from `path`, PARITY_TORCH_PEER or the build; nullptr with the reason when none.
// The peer executable: `path`, else $PARITY_TORCH_PEER, else the one this build made; empty when none.
std::string torch_peer_path(const std::string& path = "");

std::unique_ptr<Peer> make_torch_peer(const std::string& path, const std::string& jemalloc, int threads,
                                      uint64_t seed, std::string* why);

// Rounds of one case combined: median of the rounds' medians, extremes, losses, memory, config.
nlohmann::json summarize_peer(const std::vector<nlohmann::json>& rounds);

// Runs `self bench --rss-worker ...` and returns its JSON ({"vm_hwm_kib": ...}) or {"error": ...}.
nlohmann::json run_rss_process(const std::string& self, const std::string& model, const std::string& backend,
                               int64_t batch, int threads, int64_t steps, uint64_t seed);

}  // namespace parity::bench
