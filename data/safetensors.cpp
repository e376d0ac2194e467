// data/safetensors.cpp — safetensors reading with full validation, and atomic (temp + fsync + rename) writing.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <tuple>
#include <limits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "parity/error.h"
#include "parity/safetensors.h"

#include "util/atomic_file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; parity copies it as is and needs a little-endian host"
#endif

namespace parity {
namespace {

// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::u8: return "U8";
  }
  return "?";
}

bool parse_dtype(const std::string& name, DType& out) {
  if (name == "F32") out = DType::f32;
  else if (name == "I32") out = DType::i32;
  else if (name == "I64") out = DType::i64;
  else if (name == "BF16") out = DType::bf16;
  else if (name == "F16") out = DType::f16;
  else if (name == "U8") out = DType::u8;
  else return false;
  return true;
}

Error data_error(const std::string& path, const std::string& what) {
  return Error(ErrorKind::data, fmt::format("safetensors file '{}': {}", path, what));
}

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    throw Error(ErrorKind::io, fmt::format("cannot open safetensors file '{}': {}", path, std::strerror(errno)));
  }
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error(ErrorKind::io, fmt::format("cannot read size of safetensors file '{}'", path));
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw Error(ErrorKind::io, fmt::format("cannot read safetensors file '{}' ({} bytes)", path, size));
  }
  return bytes;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& value) {
  if (!value.is_object()) throw data_error(path, fmt::format("tensor '{}': header entry must be an object", name));
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) throw data_error(path, fmt::format("tensor '{}': header entry lacks \"{}\"", name, key));
  }
  const auto& dtype = value["dtype"];
  const auto& shape = value["shape"];
  const auto& offsets = value["data_offsets"];
  if (!dtype.is_string()) throw data_error(path, fmt::format("tensor '{}': \"dtype\" must be a string", name));
  Entry e{name, DType::f32, {}, 0, 0};
  if (!parse_dtype(dtype.get<std::string>(), e.dtype)) {
    throw data_error(path, fmt::format("tensor '{}' has dtype {}; parity reads only F32, I32, I64, BF16, F16 and U8", name,
                                       dtype.get<std::string>()));
  }
  if (!shape.is_array()) throw data_error(path, fmt::format("tensor '{}': \"shape\" must be an array", name));
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& dim : shape) {
    if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
      throw data_error(path, fmt::format("tensor '{}': shape {} must hold non-negative integers", name, shape.dump()));
    }
    const auto d = dim.get<int64_t>();
    dims.push_back(d);
    const auto limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (d != 0 && numel > limit / static_cast<uint64_t>(d)) overflow = true;
    numel *= static_cast<uint64_t>(d);
  }
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    throw data_error(path, fmt::format("tensor '{}': \"data_offsets\" must be [begin, end] with non-negative "
                                       "integers, got {}",
                                       name, offsets.dump()));
  }
  e.shape = Shape(std::move(dims));
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.end < e.begin) {
    throw data_error(path, fmt::format("tensor '{}': data_offsets [{}, {}] end before they begin", name, e.begin, e.end));
  }
  const uint64_t elem = dtype_size(e.dtype);
  if (overflow || numel > std::numeric_limits<uint64_t>::max() / elem || e.end - e.begin != numel * elem) {
    throw data_error(path, fmt::format("tensor '{}': {} {} needs {} bytes but data_offsets [{}, {}] hold {}", name,
                                       dtype.get<std::string>(), e.shape.str(), overflow ? 0 : numel * elem, e.begin,
                                       e.end, e.end - e.begin));
  }
  return e;
}

}  // namespace

TensorFile read_safetensors(const std::string& path) {
  const std::vector<unsigned char> bytes = read_all(path);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

TensorFile parse_safetensors(const void* content, size_t size, const std::string& source) {
  const auto* bytes = static_cast<const unsigned char*>(content);
  if (size < 8) {
    throw data_error(source, fmt::format("file is {} bytes; it must start with an 8-byte header length", size));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | bytes[static_cast<size_t>(i)];
  const uint64_t available = size - 8;
  if (header_len > available || header_len > kMaxHeaderBytes) {
    throw data_error(source, fmt::format("header length {} must not exceed the {} bytes after it (nor {} bytes)",
                                       header_len, available, kMaxHeaderBytes));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    throw data_error(source, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) throw data_error(source, "header must be a JSON object");

  TensorFile file;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw data_error(source, "\"__metadata__\" must be an object of strings");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) {
          throw data_error(source, fmt::format("metadata '{}' must be a string, got {}", key, text.dump()));
        }
        file.metadata[key] = text.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(source, name, value));
  }

  const uint64_t data_bytes = available - header_len;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  const Entry* last = nullptr;  // the non-empty tensor that ends last so far
  for (const Entry& e : entries) {
    if (e.end > data_bytes) {
      throw data_error(source, fmt::format("tensor '{}': data_offsets [{}, {}] run past the {}-byte data section",
                                         e.name, e.begin, e.end, data_bytes));
    }
    if (e.begin == e.end) continue;
    if (last != nullptr && e.begin < last->end) {
      throw data_error(source, fmt::format("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", last->name, last->begin,
                                         last->end, e.name, e.begin, e.end));
    }
    last = &e;
  }
  const unsigned char* data = bytes + 8 + header_len;
  for (const Entry& e : entries) {
    Tensor t(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.data(), data + e.begin, static_cast<size_t>(e.end - e.begin));
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

void write_safetensors(const std::string& path, const TensorFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    auto& meta = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : file.metadata) meta[key] = value;
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    if (name.empty() || name == "__metadata__") {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("write_safetensors '{}': tensor name '{}' is reserved or empty", path, name));
    }
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * dtype_size(tensor.dtype());
    if (tensor.nbytes() != bytes) {
      throw Error(ErrorKind::internal, fmt::format("write_safetensors '{}': tensor '{}' {} holds {} bytes, expected {}",
                                                   path, name, tensor.shape().str(), tensor.nbytes(), bytes));
    }
    auto& entry = header[name];
    entry["dtype"] = safetensors_dtype(tensor.dtype());
    entry["shape"] = tensor.shape().dims();
    entry["data_offsets"] = {offset, offset + bytes};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(static_cast<uint64_t>(text.size()) >> (8 * i));

  std::vector<ByteRange> content{{length, sizeof length}, {text.data(), text.size()}};
  for (const auto& [name, tensor] : file.tensors) content.push_back({tensor.data(), tensor.nbytes()});
  write_file_atomically(path, content);
}

const Tensor& require_tensor(const TensorFile& file, const std::string& name, DType dtype, const Shape& shape,
                             const std::string& path_for_messages) {
  const auto it = file.tensors.find(name);
  if (it == file.tensors.end()) {
    std::string names;
    for (const auto& [key, value] : file.tensors) names += (names.empty() ? "" : ", ") + key;
    throw Error(ErrorKind::data, fmt::format("safetensors file '{}' has no tensor '{}' (it holds: {})",
                                             path_for_messages, name, names.empty() ? "nothing" : names));
  }
  const Tensor& t = it->second;
  if (t.dtype() != dtype) {
    throw Error(ErrorKind::data, fmt::format("safetensors file '{}': tensor '{}' has dtype {}, expected {}",
                                             path_for_messages, name, safetensors_dtype(t.dtype()),
                                             safetensors_dtype(dtype)));
  }
  if (t.shape() != shape) {
    throw Error(ErrorKind::data, fmt::format("safetensors file '{}': tensor '{}' has shape {}, expected {}",
                                             path_for_messages, name, t.shape().str(), shape.str()));
  }
  return t;
}

}  // namespace parity
