// bench/torch_peer/torch_peer.cpp — the LibTorch peer of `parity bench`: the same model (layers,
// initial weights read from parity's safetensors, batches from bench/synthetic_batch.h, Adam,
// thread count) trained or run forward in its own process, timed the way parity times itself,
// printed as one JSON object. Standalone use (README, "Benchmarks"):
//   parity-torch-peer --model seed-cnn --mode train --batch 64 --threads 2 --weights w.safetensors
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

#include "bench/synthetic_batch.h"

namespace {

struct Options {
  std::string model = "seed-cnn", mode = "train", weights;
  int64_t batch = 64;
  int threads = 1;
  uint64_t seed = 1;
  double min_time = 1.0;
  int warmup = 3;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "parity-torch-peer: %s\nusage: parity-torch-peer --model seed-cnn|seed-cnn-112 --mode train|infer "
               "--batch N --threads T --weights FILE.safetensors [--seed S] [--min-time SECONDS] [--warmup N]\n",
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
    else if (a == "--mode") o.mode = v;
    else if (a == "--weights") o.weights = v;
    else if (a == "--batch") o.batch = std::stoll(v);
    else if (a == "--threads") o.threads = std::stoi(v);
    else if (a == "--seed") o.seed = std::stoull(v);
    else if (a == "--min-time") o.min_time = std::stod(v);
    else if (a == "--warmup") o.warmup = std::stoi(v);
    else usage("unknown option " + a);
  }
  if (o.model != "seed-cnn" && o.model != "seed-cnn-112") usage("unknown model " + o.model);
  if (o.mode != "train" && o.mode != "infer") usage("mode must be train or infer");
  if (o.weights.empty()) usage("--weights is required");
  if (o.batch < 1 || o.threads < 1) usage("batch and threads must be >= 1");
  return o;
}

// A minimal safetensors reader: F32 tensors only, which is all parity writes for weights.
std::map<std::string, torch::Tensor> read_weights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, torch::Tensor> out;
  const nlohmann::json parsed = nlohmann::json::parse(header);
  for (const auto& [name, entry] : parsed.items()) {
    if (name == "__metadata__") continue;
    if (entry.at("dtype") != "F32") throw std::runtime_error(path + ": " + name + " is not F32");
    std::vector<int64_t> shape = entry.at("shape").get<std::vector<int64_t>>();
    const auto offsets = entry.at("data_offsets").get<std::vector<int64_t>>();
    torch::Tensor t = torch::empty(shape, torch::kFloat32);
    if (offsets[1] - offsets[0] != t.numel() * 4 || offsets[1] > static_cast<int64_t>(data.size()))
      throw std::runtime_error(path + ": bad data offsets for " + name);
    std::memcpy(t.data_ptr<float>(), data.data() + offsets[0], static_cast<size_t>(offsets[1] - offsets[0]));
    out.emplace(name, t);
  }
  return out;
}

// conv(3x3,16,pad 1) → relu → maxpool 2 → conv(3x3,32,pad 1) → relu → maxpool 2 → linear(128) →
// relu → linear(10): parity's seed-cnn (model/models.cpp), PyTorch state_dict names.
struct SeedCnnImpl : torch::nn::Module {
  SeedCnnImpl(int64_t channels, int64_t side)
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(32 * (side / 4) * (side / 4), 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 10))) {}
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    x = torch::relu(fc1(x.flatten(1)));
    return fc2(x);
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(SeedCnn);

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

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    torch::set_num_threads(o.threads);
    const int64_t channels = o.model == "seed-cnn" ? 1 : 3, side = o.model == "seed-cnn" ? 28 : 112;
    SeedCnn model(channels, side);
    {
      torch::NoGradGuard no_grad;
      const auto weights = read_weights(o.weights);
      for (auto& item : model->named_parameters()) {
        const std::string& name = item.key();
        torch::Tensor& param = item.value();
        auto it = weights.find(name);
        if (it == weights.end()) throw std::runtime_error(o.weights + ": missing " + name);
        if (it->second.sizes() != param.sizes()) throw std::runtime_error(o.weights + ": wrong shape for " + name);
        param.copy_(it->second);
      }
    }
    torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
    const bool train = o.mode == "train";
    if (!train) model->eval();

    const int64_t chw = channels * side * side;
    std::vector<torch::Tensor> xs, ys;
    for (int64_t b = 0; b < parity::bench::kSyntheticBatches; ++b) {
      torch::Tensor x = torch::empty({o.batch, channels, side, side}, torch::kFloat32);
      torch::Tensor y32 = torch::empty({o.batch}, torch::kInt32);
      parity::bench::synthetic_batch(o.seed, b, o.batch, chw, 10, x.data_ptr<float>(), y32.data_ptr<int32_t>());
      xs.push_back(x);
      ys.push_back(y32.to(torch::kInt64));
    }

    auto step = [&](int64_t i) -> float {
      const torch::Tensor& x = xs[i % xs.size()];
      const torch::Tensor& y = ys[i % ys.size()];
      if (train) {
        optimizer.zero_grad();
        torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        loss.backward();
        optimizer.step();
        return loss.item<float>();
      }
      torch::NoGradGuard no_grad;
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
        {"model", o.model},
        {"mode", o.mode},
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
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parity-torch-peer: %s\n", e.what());
    return 1;
  }
}
