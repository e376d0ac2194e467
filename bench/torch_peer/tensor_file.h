// bench/torch_peer/tensor_file.h — the LibTorch peer's minimal safetensors reader and writer:
// parity's weights and batches in, the peer's values out.
#pragma once

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace parity::torch_peer {

// A minimal safetensors reader: F32, I32 and I64 tensors (what parity writes).
inline std::map<std::string, torch::Tensor> read_weights(const std::string& path) {
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
    const std::string dtype = entry.at("dtype");
    const auto type = dtype == "F32" ? torch::kFloat32 : dtype == "I32" ? torch::kInt32 : torch::kInt64;
    if (dtype != "F32" && dtype != "I32" && dtype != "I64") throw std::runtime_error(path + ": " + name + " is " + dtype);
    std::vector<int64_t> shape = entry.at("shape").get<std::vector<int64_t>>();
    const auto offsets = entry.at("data_offsets").get<std::vector<int64_t>>();
    torch::Tensor t = torch::empty(shape, type);
    if (offsets[1] - offsets[0] != static_cast<int64_t>(t.nbytes()) || offsets[1] > static_cast<int64_t>(data.size()))
      throw std::runtime_error(path + ": bad data offsets for " + name);
    std::memcpy(t.data_ptr(), data.data() + offsets[0], static_cast<size_t>(offsets[1] - offsets[0]));
    out.emplace(name, t);
  }
  return out;
}

// Writes F32 and I64 tensors; the caller renames the file into place.
inline void write_tensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  int64_t offset = 0;
  std::vector<torch::Tensor> contiguous;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().contiguous();
    if (c.scalar_type() != torch::kFloat32 && c.scalar_type() != torch::kInt64)
      throw std::runtime_error("write_tensors: " + name + " is neither float32 nor int64");
    const int64_t bytes = static_cast<int64_t>(c.nbytes());
    header[name] = {{"dtype", c.scalar_type() == torch::kFloat32 ? "F32" : "I64"},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const torch::Tensor& c : contiguous) out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace parity::torch_peer
