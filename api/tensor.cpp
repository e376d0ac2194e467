// api/tensor.cpp — Shape arithmetic and the host Tensor's storage and typed views.
#include "parity/tensor.h"

#include <cstring>

#include "parity/error.h"

namespace parity {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::u8: return 1;
  }
  throw Error(ErrorKind::internal, "dtype_size: unknown dtype");
}

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::u8: return "u8";
  }
  return "?";
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

Tensor::Tensor(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  for (int64_t d : shape_.dims())
    if (d < 0) throw Error(ErrorKind::shape, "tensor: negative dimension in shape " + shape_.str());
  bytes_.assign(static_cast<size_t>(shape_.numel()) * dtype_size(dtype_), 0);
}

namespace {

// A tensor of `dtype` holding `values`, which must be exactly its element count.
template <class T>
Tensor tensor_of(Shape shape, DType dtype, const std::vector<T>& values) {
  Tensor t(std::move(shape), dtype);
  if (static_cast<int64_t>(values.size()) != t.numel())
    throw Error(ErrorKind::shape, "tensor: " + std::to_string(values.size()) + " values for shape " + t.shape().str());
  std::memcpy(t.data(), values.data(), t.nbytes());
  return t;
}

}  // namespace

Tensor Tensor::from_f32(Shape shape, std::vector<float> values) { return tensor_of(std::move(shape), DType::f32, values); }

Tensor Tensor::from_i32(Shape shape, std::vector<int32_t> values) {
  return tensor_of(std::move(shape), DType::i32, values);
}

namespace {
void expect_dtype(DType have, DType want) {
  if (have != want)
    throw Error(ErrorKind::internal,
                std::string("tensor: accessed as ") + to_string(want) + " but holds " + to_string(have));
}
}  // namespace

float* Tensor::f32() { expect_dtype(dtype_, DType::f32); return reinterpret_cast<float*>(bytes_.data()); }
const float* Tensor::f32() const { expect_dtype(dtype_, DType::f32); return reinterpret_cast<const float*>(bytes_.data()); }
int32_t* Tensor::i32() { expect_dtype(dtype_, DType::i32); return reinterpret_cast<int32_t*>(bytes_.data()); }
const int32_t* Tensor::i32() const { expect_dtype(dtype_, DType::i32); return reinterpret_cast<const int32_t*>(bytes_.data()); }
int64_t* Tensor::i64() { expect_dtype(dtype_, DType::i64); return reinterpret_cast<int64_t*>(bytes_.data()); }
const int64_t* Tensor::i64() const { expect_dtype(dtype_, DType::i64); return reinterpret_cast<const int64_t*>(bytes_.data()); }
uint8_t* Tensor::u8() { expect_dtype(dtype_, DType::u8); return bytes_.data(); }
const uint8_t* Tensor::u8() const { expect_dtype(dtype_, DType::u8); return bytes_.data(); }
uint16_t* Tensor::bf16() { expect_dtype(dtype_, DType::bf16); return reinterpret_cast<uint16_t*>(bytes_.data()); }
const uint16_t* Tensor::bf16() const { expect_dtype(dtype_, DType::bf16); return reinterpret_cast<const uint16_t*>(bytes_.data()); }
uint16_t* Tensor::f16() { expect_dtype(dtype_, DType::f16); return reinterpret_cast<uint16_t*>(bytes_.data()); }
const uint16_t* Tensor::f16() const { expect_dtype(dtype_, DType::f16); return reinterpret_cast<const uint16_t*>(bytes_.data()); }

}  // namespace parity
