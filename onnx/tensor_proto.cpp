// onnx/tensor_proto.cpp — TensorProto <-> Tensor, every claimed size checked before allocating.
#include "onnx/tensor_proto.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "onnx/onnx_model.h"
#include "parity/error.h"

namespace parity {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 31;

std::string dims_text(const onnx::TensorProto& proto) {
  std::string text = "[";
  for (int i = 0; i < proto.dims_size(); ++i) text += (i ? "," : "") + std::to_string(proto.dims(i));
  return text + "]";
}

// The external file's bytes [offset, offset + length) (length -1: to its end), the location
// resolved inside `folder` only.
std::string read_external(const onnx::TensorProto& proto, const std::string& folder, const std::string& what) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& entry : proto.external_data()) {
    if (entry.key() == "location") {
      location = entry.value();
    } else if (entry.key() == "offset" || entry.key() == "length") {
      int64_t parsed = 0;
      try {
        size_t used = 0;
        parsed = std::stoll(entry.value(), &used);
        if (used != entry.value().size() || parsed < 0) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw Error(ErrorKind::data, fmt::format("{}: external_data {} '{}' is not a byte count", what, entry.key(),
                                                 entry.value()));
      }
      (entry.key() == "offset" ? offset : length) = parsed;
    }
  }
  if (folder.empty())
    throw Error(ErrorKind::data, fmt::format("{}: external data ('{}') is not accepted here", what, location));
  namespace fs = std::filesystem;
  const fs::path relative(location);
  bool escapes = location.empty() || relative.is_absolute() || relative.has_root_name();
  for (const auto& part : relative)
    if (part == "..") escapes = true;
  if (escapes)
    throw Error(ErrorKind::data, fmt::format("{}: external_data location '{}' is outside the model's folder {}: "
                                             "refused (only relative paths below the folder, without '..')",
                                             what, location, folder));
  const fs::path path = fs::path(folder) / relative;
  std::error_code error;
  const auto size = fs::file_size(path, error);
  if (error) throw Error(ErrorKind::io, fmt::format("{}: cannot read external data {}: {}", what, path.string(), error.message()));
  if (length < 0) length = static_cast<int64_t>(size) - offset;
  if (offset > static_cast<int64_t>(size) || length < 0 || length > static_cast<int64_t>(size) - offset)
    throw Error(ErrorKind::data, fmt::format("{}: external data {} holds {} bytes, fewer than offset {} + length {}", what,
                                             path.string(), size, offset, length));
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<size_t>(length), '\0');
  in.seekg(offset);
  if (!in.read(bytes.data(), length))
    throw Error(ErrorKind::io, fmt::format("{}: reading {} failed", what, path.string()));
  return bytes;
}

template <typename Field>
void copy_typed(const Field& field, int64_t count, void* out, size_t element_size, const std::string& what,
                const onnx::TensorProto& proto) {
  if (static_cast<int64_t>(field.size()) != count)
    throw Error(ErrorKind::data, fmt::format("{}: {} values for dims {} ({} elements)", what, field.size(),
                                             dims_text(proto), count));
  (void)element_size;
  using Element = typename Field::value_type;
  for (int64_t i = 0; i < count; ++i) static_cast<Element*>(out)[i] = field.Get(static_cast<int>(i));
}

}  // namespace

bool onnx_dtype_supported(int onnx_dtype) {
  return onnx_dtype == onnx::TensorProto::FLOAT || onnx_dtype == onnx::TensorProto::INT32 ||
         onnx_dtype == onnx::TensorProto::INT64;
}

const char* onnx_dtype_name(int onnx_dtype) {
  if (!onnx::TensorProto_DataType_IsValid(onnx_dtype)) return "an unknown data type";
  return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(onnx_dtype)).c_str();
}

int onnx_dtype_of(DType dtype) {
  switch (dtype) {
    case DType::f32: return onnx::TensorProto::FLOAT;
    case DType::i32: return onnx::TensorProto::INT32;
    case DType::i64: return onnx::TensorProto::INT64;
    case DType::bf16: return onnx::TensorProto::BFLOAT16;
    case DType::f16: return onnx::TensorProto::FLOAT16;
    case DType::u8: return onnx::TensorProto::UINT8;
  }
  throw Error(ErrorKind::internal, "onnx_dtype_of: unknown dtype");
}

int64_t checked_onnx_numel(const onnx::TensorProto& proto, const std::string& what) {
  int64_t count = 1;
  for (int i = 0; i < proto.dims_size(); ++i) {
    const int64_t dim = proto.dims(i);
    if (dim < 0 || dim >= kMaxElements)
      throw Error(ErrorKind::data, fmt::format("{}: dim {} of {} is {}: dims must be in [0, 2^31)", what, i,
                                               dims_text(proto), dim));
    if (dim != 0 && count > kMaxElements / dim)
      throw Error(ErrorKind::data, fmt::format("{}: dims {} hold more than 2^31 elements", what, dims_text(proto)));
    count *= dim;
  }
  return count;
}

Tensor tensor_from_onnx(const onnx::TensorProto& proto, const std::string& folder, const std::string& what) {
  if (!onnx_dtype_supported(proto.data_type()))
    throw OnnxUnsupported(fmt::format("{}: data type {} is not supported (FLOAT, INT32 and INT64 are)", what,
                                      onnx_dtype_name(proto.data_type())),
                          fmt::format("data type {}", onnx_dtype_name(proto.data_type())));
  if (proto.has_segment())
    throw Error(ErrorKind::data, fmt::format("{}: segmented tensors are not supported", what));
  const int64_t count = checked_onnx_numel(proto, what);
  const DType dtype = proto.data_type() == onnx::TensorProto::FLOAT   ? DType::f32
                      : proto.data_type() == onnx::TensorProto::INT32 ? DType::i32
                                                                      : DType::i64;
  const size_t bytes = static_cast<size_t>(count) * dtype_size(dtype);
  const bool external = proto.data_location() == onnx::TensorProto::EXTERNAL;
  // Sizes first: a claimed 2 GB tensor in a tiny file is refused before allocating.
  std::string external_bytes;
  if (external) {
    external_bytes = read_external(proto, folder, what);
  } else if (proto.has_raw_data() && proto.raw_data().size() != bytes) {
    throw Error(ErrorKind::data, fmt::format("{}: raw_data holds {} bytes, dims {} of {} need {}", what,
                                             proto.raw_data().size(), dims_text(proto), to_string(dtype), bytes));
  } else if (!proto.has_raw_data()) {
    const int64_t held = dtype == DType::f32   ? proto.float_data_size()
                         : dtype == DType::i32 ? proto.int32_data_size()
                                               : proto.int64_data_size();
    if (held != count)
      throw Error(ErrorKind::data, fmt::format("{}: {} values for dims {} ({} elements)", what, held,
                                               dims_text(proto), count));
  }
  if (external && external_bytes.size() != bytes)
    throw Error(ErrorKind::data, fmt::format("{}: external data holds {} bytes, dims {} of {} need {}", what,
                                             external_bytes.size(), dims_text(proto), to_string(dtype), bytes));
  Tensor tensor(Shape(std::vector<int64_t>(proto.dims().begin(), proto.dims().end())), dtype);
  if (bytes == 0) return tensor;  // an empty tensor (a dim of 0) holds no bytes to copy
  if (external) {
    std::memcpy(tensor.data(), external_bytes.data(), bytes);
  } else if (proto.has_raw_data()) {
    std::memcpy(tensor.data(), proto.raw_data().data(), bytes);
  } else if (dtype == DType::f32) {
    copy_typed(proto.float_data(), count, tensor.data(), 4, what, proto);
  } else if (dtype == DType::i32) {
    copy_typed(proto.int32_data(), count, tensor.data(), 4, what, proto);
  } else {
    copy_typed(proto.int64_data(), count, tensor.data(), 8, what, proto);
  }
  return tensor;
}

Tensor read_onnx_tensor_file(const std::string& path, std::string* name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, fmt::format("cannot open {}", path));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes))
    throw Error(ErrorKind::data, fmt::format("{} is not a serialized ONNX TensorProto", path));
  if (name) *name = proto.name();
  const std::string folder = std::filesystem::path(path).parent_path().string();
  return tensor_from_onnx(proto, folder.empty() ? "." : folder, path);
}

void tensor_to_onnx(const Tensor& tensor, const std::string& name, onnx::TensorProto* proto) {
  proto->Clear();
  proto->set_name(name);
  proto->set_data_type(onnx_dtype_of(tensor.dtype()));
  for (int64_t dim : tensor.shape().dims()) proto->add_dims(dim);
  proto->set_raw_data(std::string(static_cast<const char*>(tensor.data()), tensor.nbytes()));
}

void write_onnx_tensor_file(const Tensor& tensor, const std::string& name, const std::string& path) {
  onnx::TensorProto proto;
  tensor_to_onnx(tensor, name, &proto);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out || !proto.SerializeToOstream(&out) || !out.flush())
    throw Error(ErrorKind::io, fmt::format("cannot write {}", path));
}

}  // namespace parity
