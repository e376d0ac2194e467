// parity/tensor.h — Shape, DType and the host Tensor that crosses the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace parity {

// f32, i32, i64, bf16 and f16 are numbered as the plugin ABI's parity_dtype (bf16 and f16 since
// ABI 9: 2-byte values held as their bit patterns, bfloat16 and IEEE binary16). u8 is a storage
// dtype only (the pruning masks of `parity prune` in safetensors files): no graph value and no
// plugin ABI dtype has it, so it is numbered apart, leaving the ABI's next numbers to dtypes
// values may have.
enum class DType : int32_t { f32 = 0, i32 = 1, i64 = 2, bf16 = 3, f16 = 4, u8 = 64 };

size_t dtype_size(DType dtype);
const char* to_string(DType dtype);

// Dimensions, outermost first (NCHW for images).
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t operator[](int axis) const { return dims_.at(static_cast<size_t>(axis)); }
  int64_t& operator[](int axis) { return dims_.at(static_cast<size_t>(axis)); }
  int64_t numel() const;
  const std::vector<int64_t>& dims() const { return dims_; }
  std::string str() const;  // "[64,1,28,28]"

  friend bool operator==(const Shape& a, const Shape& b) { return a.dims_ == b.dims_; }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  std::vector<int64_t> dims_;
};

// A dense, contiguous, host-resident tensor that owns its bytes.
class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, DType dtype);  // zero-filled

  static Tensor from_f32(Shape shape, std::vector<float> values);
  static Tensor from_i32(Shape shape, std::vector<int32_t> values);

  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return bytes_.size(); }

  void* data() { return bytes_.data(); }
  const void* data() const { return bytes_.data(); }
  // Typed views; throw Error(internal) when the dtype does not match.
  float* f32();
  const float* f32() const;
  int32_t* i32();
  const int32_t* i32() const;
  int64_t* i64();
  const int64_t* i64() const;
  uint8_t* u8();
  const uint8_t* u8() const;
  // The bit patterns of a bf16 or f16 tensor (cast_tensor converts them to f32 and back).
  uint16_t* bf16();
  const uint16_t* bf16() const;
  uint16_t* f16();
  const uint16_t* f16() const;

 private:
  Shape shape_;
  DType dtype_ = DType::f32;
  std::vector<unsigned char> bytes_;
};

// `t` converted to `to`: between f32, bf16 and f16 in any direction (the identity is a copy).
// To a half dtype each value is rounded to nearest even as the CAST op does (plugin.h,
// parity_cast_params: NaN stays NaN, overflow becomes inf); to f32 it is exact. Any other pair
// throws Error(invalid_argument) naming both dtypes. Defined in ops/tensor_cast.cpp.
Tensor cast_tensor(const Tensor& t, DType to);

}  // namespace parity
