// Tensor: a dtype, a shape of up to 4 dims and contiguous row-major storage (the last dim varies fastest).
// Storage is either owned (64-byte aligned) or a read-only view over memory kept alive by a shared_ptr,
// e.g. an mmap'd safetensors file. Copying a Tensor shares its storage; clone() copies the bytes.
//
// Layout convention for the whole project: shapes are written outermost first, as in PyTorch:
// [B, L, D] means D is contiguous. Comments in model code use this notation.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "tensor/dtype.h"

namespace flux {

class Shape {
 public:
  static constexpr int kMaxDims = 4;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  int64_t numel() const;
  std::vector<int64_t> to_vector() const { return {dims_.begin(), dims_.begin() + ndim_}; }
  std::string str() const;  // "[3, 77, 768]"
  bool operator==(const Shape& other) const;

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

class Tensor {
 public:
  Tensor() = default;

  // Owned, uninitialised storage.
  static Tensor empty(DType dtype, const Shape& shape);
  static Tensor zeros(DType dtype, const Shape& shape);
  // f32 tensor holding a copy of `values` (numel must match the shape).
  static Tensor from_f32(const Shape& shape, std::span<const float> values);
  // A read-only view of `data`; `owner` keeps the memory alive.
  static Tensor view(DType dtype, const Shape& shape, const void* data, std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  // dim(-1) is the last dimension.
  int64_t dim(int i) const;
  int64_t numel() const { return shape_.numel(); }
  // Quantized tensors: whole blocks along the last dim (checked when made).
  size_t nbytes() const { return dtype_nbytes(dtype_, numel()); }
  bool writable() const { return writable_; }

  const void* raw() const { return data_; }
  void* raw_mut();  // throws on a read-only view
  // Typed access; throws Error if T does not match dtype().
  template <typename T>
  const T* data() const;
  template <typename T>
  T* mut();

  // Same storage, new shape with the same numel (one dim may be -1).
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) of dim 0, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Deep copy into owned storage.
  Tensor clone() const;
  // Converts to `dtype` (a copy; shares storage when already that dtype): float types, and quantized types
  // dequantized (ggml's formulas, bit for bit) to f32, or to bf16/f16 through f32.
  Tensor to(DType dtype) const;

  std::string describe() const;  // "bf16 [3072, 64]"

 private:
  template <typename T>
  void check_type() const;

  DType dtype_ = DType::f32;
  Shape shape_;
  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  bool writable_ = false;
};

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::i8;
};
// bf16 and f16 are stored as uint16_t bit patterns; use data_u16() for them.

template <typename T>
void Tensor::check_type() const {
  FLUX_CHECK(DTypeOf<T>::value == dtype_, "tensor access: expected dtype ", dtype_name(DTypeOf<T>::value),
             ", tensor is ", describe());
}

template <typename T>
const T* Tensor::data() const {
  check_type<T>();
  return reinterpret_cast<const T*>(data_);
}

template <typename T>
T* Tensor::mut() {
  check_type<T>();
  return static_cast<T*>(raw_mut());
}

// Raw 16-bit patterns of a bf16 or f16 tensor.
const uint16_t* data_u16(const Tensor& t);

}  // namespace flux
