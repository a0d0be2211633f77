// quantize_rows / quantize: the per-type choice between ggml's reference and importance quantizers (as
// ggml's quantize_<type>() makes it), threaded over rows.
#include "tensor/quantize.h"

#include <cstring>

#include "base/error.h"
#include "base/thread_pool.h"
#include "tensor/convert.h"
#include "tensor/quantize_internal.h"

namespace flux {
namespace {

using RowFn = void (*)(const float*, void*, int64_t);
using ImpFn = void (*)(const float*, void*, int64_t, const float*);

struct Quantizer {
  RowFn ref = nullptr;  // importance == nullptr
  ImpFn imp = nullptr;  // with importance
};

Quantizer quantizer_for(DType dtype) {
  using namespace quant_detail;
  switch (dtype) {
    case DType::q4_0:
      return {quantize_row_q4_0_ref, quantize_row_q4_0_impl};
    case DType::q4_1:
      return {quantize_row_q4_1_ref, quantize_row_q4_1_impl};
    case DType::q5_0:
      return {quantize_row_q5_0_ref, quantize_row_q5_0_impl};
    case DType::q5_1:
      return {quantize_row_q5_1_ref, quantize_row_q5_1_impl};
    case DType::q8_0:  // ggml's quantize_q8_0 ignores the importance
      return {quantize_row_q8_0_ref, nullptr};
    case DType::q2_K:
      return {nullptr, quantize_row_q2_K_impl};
    case DType::q3_K:
      return {nullptr, quantize_row_q3_K_impl};
    case DType::q4_K:
      return {nullptr, quantize_row_q4_K_impl};
    case DType::q5_K:
      return {nullptr, quantize_row_q5_K_impl};
    case DType::q6_K:
      return {nullptr, quantize_row_q6_K_impl};
    default:
      return {};
  }
}

}  // namespace

size_t quantize_rows(DType dtype, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                     const float* importance) {
  FLUX_CHECK(nrows >= 0 && n_per_row >= 0, "quantize_rows: bad size ", nrows, " x ", n_per_row);
  const size_t row_bytes = dtype_nbytes(dtype, n_per_row);  // throws unless whole blocks
  const size_t total = row_bytes * static_cast<size_t>(nrows);
  auto* out = static_cast<uint8_t*>(dst);
  if (dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16) {
    convert_from_f32(src, dtype, dst, static_cast<size_t>(nrows * n_per_row));
    return total;
  }
  const Quantizer q = quantizer_for(dtype);
  FLUX_CHECK(q.ref || q.imp, "quantize_rows: cannot quantize to ", dtype_name(dtype));
  FLUX_CHECK(importance || q.ref, "quantize_rows: ", dtype_name(dtype),
             " needs importance weights (its reference quantizer is not implemented; ones reproduce sd.cpp)");
  // The search quantizers cost ~1 us per block; a few rows per task keep the pool busy.
  parallel_for(
      nrows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* x = src + r * n_per_row;
          void* y = out + static_cast<size_t>(r) * row_bytes;
          if (importance && q.imp) {
            q.imp(x, y, n_per_row, importance);
          } else {
            q.ref(x, y, n_per_row);
          }
        }
      },
      4);
  return total;
}

Tensor quantize(const Tensor& t, DType dtype, const float* importance) {
  FLUX_CHECK(t.defined() && t.ndim() >= 1, "quantize: need a tensor with at least one dim");
  const Tensor f = t.to(DType::f32);
  const int64_t n = t.dim(-1);
  Tensor out = Tensor::empty(dtype, t.shape());
  quantize_rows(dtype, f.data<float>(), out.raw_mut(), n == 0 ? 0 : t.numel() / n, n, importance);
  return out;
}

std::vector<float> unit_importance(int64_t n) { return std::vector<float>(static_cast<size_t>(n), 1.0f); }

}  // namespace flux
