#include "tensor/tensor.h"

#include <algorithm>
#include <cstring>

#include "base/aligned_buffer.h"
#include "tensor/convert.h"
#include "tensor/quant.h"

namespace flux {
namespace {

// A quantized tensor's rows (its last dim) are whole blocks, so every row starts on a block.
void check_blocks(DType dtype, const Shape& shape) {
  if (!is_quantized(dtype)) return;
  FLUX_CHECK(shape.ndim() >= 1 && shape[shape.ndim() - 1] % dtype_block_size(dtype) == 0, dtype_name(dtype), " tensor ",
             shape.str(), ": the last dim must be a multiple of ", dtype_block_size(dtype));
}

}  // namespace

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  FLUX_CHECK(dims.size() <= kMaxDims, "shape: at most ", kMaxDims, " dims supported, got ", dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    FLUX_CHECK(dims[i] >= 0 || dims[i] == -1, "shape: negative dim ", dims[i]);
    dims_[i] = dims[i];
  }
  ndim_ = static_cast<int>(dims.size());
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[static_cast<size_t>(i)];
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  return s + "]";
}

bool Shape::operator==(const Shape& other) const {
  if (ndim_ != other.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[static_cast<size_t>(i)] != other.dims_[static_cast<size_t>(i)]) return false;
  return true;
}

Tensor Tensor::empty(DType dtype, const Shape& shape) {
  for (int i = 0; i < shape.ndim(); ++i) FLUX_CHECK(shape[i] >= 0, "Tensor::empty: bad shape ", shape.str());
  check_blocks(dtype, shape);
  auto buffer = std::make_shared<AlignedBuffer>(std::max<size_t>(1, dtype_nbytes(dtype, shape.numel())));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.data_ = static_cast<const uint8_t*>(buffer->data());
  t.owner_ = std::shared_ptr<const void>(buffer, buffer->data());
  t.writable_ = true;
  return t;
}

Tensor Tensor::zeros(DType dtype, const Shape& shape) {
  Tensor t = empty(dtype, shape);
  std::memset(t.raw_mut(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_f32(const Shape& shape, std::span<const float> values) {
  FLUX_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_f32: shape ", shape.str(), " needs ",
             shape.numel(), " values, got ", values.size());
  Tensor t = empty(DType::f32, shape);
  std::memcpy(t.raw_mut(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::view(DType dtype, const Shape& shape, const void* data, std::shared_ptr<const void> owner) {
  check_blocks(dtype, shape);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.data_ = static_cast<const uint8_t*>(data);
  t.owner_ = std::move(owner);
  t.writable_ = false;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = shape_.ndim();
  const int j = i < 0 ? i + n : i;
  FLUX_CHECK(j >= 0 && j < n, "tensor ", describe(), ": no dim ", i);
  return shape_[j];
}

void* Tensor::raw_mut() {
  FLUX_CHECK(writable_, "tensor ", describe(), " is a read-only view");
  return const_cast<uint8_t*>(data_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.ndim(); ++i) {
    if (s[i] == -1) {
      FLUX_CHECK(infer < 0, "reshape ", describe(), " to ", shape.str(), ": more than one -1");
      infer = i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    FLUX_CHECK(known > 0 && numel() % known == 0, "reshape ", describe(), " to ", shape.str(), ": sizes do not divide");
    s[infer] = numel() / known;
  }
  FLUX_CHECK(s.numel() == numel(), "reshape ", describe(), " to ", s.str(), ": element count differs");
  check_blocks(dtype_, s);
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  FLUX_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], "slice_rows [", begin, ", ", end, ") of ",
             describe());
  Tensor t = *this;
  const int64_t row = shape_[0] == 0 ? 0 : numel() / shape_[0];
  t.shape_[0] = end - begin;
  t.data_ = data_ + dtype_nbytes(dtype_, begin * row);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(t.raw_mut(), data_, nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  FLUX_CHECK((is_float(dtype_) && dtype_ != DType::f64) || is_quantized(dtype_), "cannot convert ", describe(), " to ",
             dtype_name(dtype));
  FLUX_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16, "cannot convert ", describe(), " to ",
             dtype_name(dtype));
  const size_t n = static_cast<size_t>(numel());
  Tensor out = empty(dtype, shape_);
  if (dtype == DType::f32) {
    if (is_quantized(dtype_)) {
      dequantize_row(dtype_, data_, out.mut<float>(), numel());  // rows are whole blocks, back to back
    } else {
      convert_to_f32(dtype_, data_, out.mut<float>(), n);
    }
  } else if (dtype_ == DType::f32) {
    convert_from_f32(data<float>(), dtype, out.raw_mut(), n);
  } else {
    Tensor f = to(DType::f32);
    convert_from_f32(f.data<float>(), dtype, out.raw_mut(), n);
  }
  return out;
}

std::string Tensor::describe() const { return str_cat(dtype_name(dtype_), ' ', shape_.str()); }

const uint16_t* data_u16(const Tensor& t) {
  FLUX_CHECK(t.dtype() == DType::bf16 || t.dtype() == DType::f16, "expected a bf16 or f16 tensor, got ", t.describe());
  return static_cast<const uint16_t*>(t.raw());
}

}  // namespace flux
