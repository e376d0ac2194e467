// check/torch_peer_launcher.h — finding the LibTorch peer (bench/torch_peer/), the one place its
// argument list is built, and running it (or any program that prints one JSON line).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/process.h"

namespace parity {

// The peer executable: `path`, else $PARITY_TORCH_PEER, else the one this build made; empty when none.
std::string torch_peer_path(const std::string& path = "");

// What the peer is asked to do. mode "step": N Adam steps from `weights` on the batch in
// `input`, every value written to `out` (the other side of `parity check model`); "train" or
// "infer": timed steps on the synthetic batches, one JSON line printed (`parity bench`).
struct TorchPeerJob {
  std::string mode;
  std::string model;
  std::string weights;     // safetensors with parity's names
  std::string model_file;  // the network, as model/model_description.h writes it
  int threads = 1;
  // mode "step"
  std::string input, out;
  int steps = 1;
  // modes "train" and "infer"
  int64_t batch = 0;
  uint64_t seed = 0;
  double min_time = 0;
  int warmup = 0;
  std::string autocast;  // "bf16": CPU bf16 autocast (torch.autocast("cpu", dtype=torch.bfloat16)); "": float32
};

// Where a launcher writes the model description beside `weights`:
// "DIR/NAME.safetensors" -> "DIR/NAME.model.json".
std::string model_file_beside(const std::string& weights);

// The peer's whole argument list, argv[0] included: every option the peer is given is added here.
std::vector<std::string> torch_peer_arguments(const std::string& peer, const TorchPeerJob& job);

// Runs `argv` (plus `extra_env`) and returns the last line of its standard output that parses
// as a JSON object, or {"error": ...} naming the command.
nlohmann::json run_for_json(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {});

}  // namespace parity
