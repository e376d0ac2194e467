// onnx/tensor_proto.h — ONNX TensorProtos (initializers, Constant values, the backend tests'
// input_*.pb and output_*.pb files) to and from parity Tensors, every size checked first.
#pragma once

#include <string>

#include "parity/tensor.h"

namespace onnx {
class TensorProto;
}

namespace parity {

// The element count claimed by `dims`, each in [0, 2^31) and the product below 2^31 elements
// (2^33 bytes of f32): Error(data) naming `what` and the dims otherwise. Never allocates.
int64_t checked_onnx_numel(const onnx::TensorProto& proto, const std::string& what);

// An f32, i32 or i64 tensor (FLOAT, INT32, INT64; raw_data or the typed fields; a bool or
// double is refused). `folder` is where external_data files may be (the model's folder; a
// location outside it, absolute or through "..", is refused); "" refuses external data.
// OnnxUnsupported for another dtype (a valid tensor parity cannot hold); Error(data) naming
// `what` for: a byte size that does not match the dims, a segment, an external file shorter
// than claimed. A [] tensor (scalar) keeps rank 0.
Tensor tensor_from_onnx(const onnx::TensorProto& proto, const std::string& folder, const std::string& what);

// The same for a file holding one serialized TensorProto (the backend tests' *.pb), read whole
// with its size checked against the dims before anything is allocated. The proto's name, when
// it has one, goes to *name.
Tensor read_onnx_tensor_file(const std::string& path, std::string* name = nullptr);

// An f32/i32/i64 tensor as a TensorProto with raw_data (little-endian), under `name`.
void tensor_to_onnx(const Tensor& tensor, const std::string& name, onnx::TensorProto* proto);
// The same written to a file as one serialized TensorProto (a backend test's *.pb); Error(io)
// naming the path when it cannot be written.
void write_onnx_tensor_file(const Tensor& tensor, const std::string& name, const std::string& path);

// Whether the TensorProto data type has a parity DType (FLOAT, INT32, INT64), and its ONNX name
// ("FLOAT16", "DOUBLE", ...) for messages.
bool onnx_dtype_supported(int onnx_dtype);
const char* onnx_dtype_name(int onnx_dtype);
int onnx_dtype_of(DType dtype);

}  // namespace parity
