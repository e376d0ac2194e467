// bench/torch_peer/torch_peer.cpp — the LibTorch peer of `parity bench`: the same model (layers
// from parity's model description file, initial weights read from parity's safetensors, batches
// from util/synthetic_batch.h, Adam, thread count) trained or run forward in its own process,
// timed the way parity times itself, printed as one JSON object; `--autocast bf16` runs each
// forward and loss under CPU bf16 autocast (torch.autocast("cpu", dtype=torch.bfloat16): float32
// master weights and optimizer, conv and linear in bf16). Standalone use (README,
// "Benchmarks"; `parity bench --weights-dir DIR` writes both files):
//   parity-torch-peer --model-file seed-cnn.model.json --mode train --batch 64 --threads 2 \
//       --weights seed-cnn.safetensors
// `--mode step` (step_mode.cpp) is the other side of `parity check model --against torch`.
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/synthetic_batch.h"
#include "bench/torch_peer/layer_net.h"
#include "bench/torch_peer/step_mode.h"

namespace {

struct Options {
  std::string model, model_file, mode = "train", weights;
  std::string autocast;  // "": float32; "bf16": CPU bf16 autocast
  int64_t batch = 64;
  int threads = 1;
  uint64_t seed = 1;
  double min_time = 1.0;
  int warmup = 3;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "parity-torch-peer: %s\nusage: parity-torch-peer --model-file MODEL.json [--model NAME] --mode train|infer "
               "--batch N --threads T --weights FILE.safetensors [--seed S] [--min-time SECONDS] [--warmup N] "
               "[--autocast bf16]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--model") o.model = v;
    else if (a == "--model-file") o.model_file = v;
    else if (a == "--mode") o.mode = v;
    else if (a == "--weights") o.weights = v;
    else if (a == "--batch") o.batch = std::stoll(v);
    else if (a == "--threads") o.threads = std::stoi(v);
    else if (a == "--seed") o.seed = std::stoull(v);
    else if (a == "--min-time") o.min_time = std::stod(v);
    else if (a == "--warmup") o.warmup = std::stoi(v);
    else if (a == "--autocast") o.autocast = v;
    else usage("unknown option " + a);
  }
  if (o.model_file.empty()) usage("--model-file is required");
  if (o.mode != "train" && o.mode != "infer") usage("mode must be train or infer (or step: see step_mode.cpp)");
  if (o.weights.empty()) usage("--weights is required");
  if (o.batch < 1 || o.threads < 1) usage("batch and threads must be >= 1");
  if (o.autocast == "fp16" || o.autocast == "f16")
    usage("--autocast fp16: PyTorch 1.13's CPU autocast runs bfloat16 only (fp16 autocast is CUDA's)");
  if (!o.autocast.empty() && o.autocast != "bf16") usage("--autocast must be bf16, got '" + o.autocast + "'");
  return o;
}

bool mapped(const char* needle) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find(needle) != std::string::npos) return true;
  return false;
}

std::string blas_name() {
  if (mapped("openblas")) return "openblas";
  if (mapped("libblis")) return "blis";
  if (mapped("libmkl")) return "mkl";
  if (mapped("libblas")) return "reference";
  return "unknown";
}

int64_t vm_hwm_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

// The body of Python's `with torch.autocast("cpu", dtype=torch.bfloat16):` (libtorch 1.13 has no
// C++ guard for it): enabled for one forward and loss, and on leaving the outermost region the
// cache of bf16 weight copies is cleared, so the next step casts the weights Adam just updated.
class CpuBf16Autocast {
 public:
  explicit CpuBf16Autocast(bool on) : on_(on) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~CpuBf16Autocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  }
  CpuBf16Autocast(const CpuBf16Autocast&) = delete;
  CpuBf16Autocast& operator=(const CpuBf16Autocast&) = delete;

 private:
  bool on_, prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 2 && std::string(argv[1]) == "--mode" && std::string(argv[2]) == "step")
      return parity::torch_peer::run_step_mode(argc, argv);
    const Options o = parse(argc, argv);
    torch::set_num_threads(o.threads);
    parity::torch_peer::LayerNet model = parity::torch_peer::make_layer_net(o.model_file, o.model);
    parity::torch_peer::load_weights(model, o.weights);
    const parity::torch_peer::ModelDescription& m = model->description();
    torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
    const bool train = o.mode == "train";
    if (!train) model->eval();

    const int64_t chw = m.channels * m.height * m.width;
    std::vector<torch::Tensor> xs, ys;
    for (int64_t b = 0; b < parity::kSyntheticBatches; ++b) {
      torch::Tensor x = torch::empty({o.batch, m.channels, m.height, m.width}, torch::kFloat32);
      torch::Tensor y32 = torch::empty({o.batch}, torch::kInt32);
      parity::synthetic_batch(o.seed, b, o.batch, chw, static_cast<int32_t>(m.num_classes), x.data_ptr<float>(), y32.data_ptr<int32_t>());
      xs.push_back(x);
      ys.push_back(y32.to(torch::kInt64));
    }

    auto step = [&](int64_t i) -> float {
      const torch::Tensor& x = xs[i % xs.size()];
      const torch::Tensor& y = ys[i % ys.size()];
      if (train) {
        // parity's step i + 1 (its bench counts steps from 1): the same dropout masks
        model->set_dropout(parity::torch_peer::DropoutClock{true, o.seed, static_cast<int32_t>(i + 1), 0});
        optimizer.zero_grad();
        torch::Tensor loss;
        {
          CpuBf16Autocast autocast(!o.autocast.empty());  // the backward runs outside, as in Python
          loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        }
        loss.backward();
        optimizer.step();
        return loss.item<float>();
      }
      torch::NoGradGuard no_grad;
      CpuBf16Autocast autocast(!o.autocast.empty());
      return torch::nn::functional::cross_entropy(model->forward(x), y).item<float>();
    };

    // The validation figures parity compares with its own: the losses of the first two steps.
    const float loss0 = step(0), loss1 = step(1);
    for (int i = 0; i < o.warmup; ++i) step(2 + i);
    std::vector<double> times;
    double total = 0;
    for (int64_t i = 0; total < o.min_time || times.size() < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step(i);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      times.push_back(dt);
      total += dt;
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    nlohmann::json out = {
        {"peer", "libtorch"},
        {"torch_version", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                              std::to_string(TORCH_VERSION_PATCH)},
        {"blas", blas_name()},
        {"jemalloc", mapped("jemalloc")},
        {"model", m.name},
        {"mode", o.mode},
        {"autocast", o.autocast.empty() ? "off" : "cpu " + o.autocast},
        {"batch", o.batch},
        {"threads", o.threads},
        {"iterations", times.size()},
        {"median_s", median},
        {"min_s", sorted.front()},
        {"max_s", sorted.back()},
        {"images_per_s", static_cast<double>(o.batch) / median},
        {"loss0", loss0},
        {"loss1", loss1},
        {"vm_hwm_kib", vm_hwm_kib()},
    };
    for (const auto& p : model->parameters())
      if (p.scalar_type() != torch::kFloat32) throw std::runtime_error("a master weight is not float32 after training");
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parity-torch-peer: %s\n", e.what());
    return 1;
  }
}
