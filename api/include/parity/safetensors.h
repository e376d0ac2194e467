// parity/safetensors.h — reading and writing the safetensors format (checkpoints, weights shared with PyTorch).
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "parity/tensor.h"

namespace parity {

// The content of one .safetensors file: named tensors and the string metadata of "__metadata__".
struct TensorFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Reads and validates a whole file: header length against the file size, the JSON, dtypes
// (F32, I32, I64, U8; anything else is an error naming the tensor and dtype), shapes, and data
// offsets (in range, non-overlapping, numel * dtype size bytes). Error(io) when the file
// cannot be read, Error(data) naming the file for bad content. Assumes a little-endian host.
TensorFile read_safetensors(const std::string& path);

// The same reading and validation of a whole file's `size` bytes already in memory (a download,
// a fuzzer's input); `source` stands for the file in the messages. Error(data) for bad content.
TensorFile parse_safetensors(const void* bytes, size_t size, const std::string& source);

// Writes tensors in name order, the header padded with spaces to a multiple of 8 bytes as
// the reference implementation does. The bytes go to a temporary file in the same folder,
// which is fsynced and renamed over `path`: a crash or error never leaves a half-written file
// and never damages an existing one. Error(io) naming the path on failure.
void write_safetensors(const std::string& path, const TensorFile& file);

// Looks up `name` and checks its dtype and shape; Error(data) naming the tensor, the file
// (path_for_messages) and both dtypes or shapes.
const Tensor& require_tensor(const TensorFile& file, const std::string& name, DType dtype, const Shape& shape,
                             const std::string& path_for_messages);

}  // namespace parity
