// Row kernels of group_norm_blocked (kernels/conv_layer.h), one set per instruction set (scalar in
// group_norm_blocked.cc, AVX2 in group_norm_avx2.cc). A row is n_pix pixels of `block` lanes, lane l of pixel p
// at x[p * block + l]: one channel block of one image row in nChw{block}c (block 1: n_pix values of one channel).
// Internal to src/kernels.
#pragma once

#include <cstdint>

namespace flux::kernels::detail {

struct GroupNormRows {
  const char* name;
  // out[l] = sum over p of x[p block + l]
  void (*sum_lanes)(const float* x, int64_t n_pix, int64_t block, float* out);
  // out[l] = sum over p of (x[p block + l] - mean[l])^2
  void (*sum_sq_dev_lanes)(const float* x, int64_t n_pix, int64_t block, const float* mean, float* out);
  // y[p block + l] = x[p block + l] a[l] + b[l] (y may be x)
  void (*affine_lanes)(const float* x, float* y, int64_t n_pix, int64_t block, const float* a, const float* b);
};

namespace scalar {
extern const GroupNormRows group_norm_rows;
}
namespace avx2 {
extern const GroupNormRows group_norm_rows;  // any block; vector lanes when block is 1 or a multiple of 8
}

// AVX2 at an ISA level of avx2 or higher, else scalar (read per call: the tests change the cap).
const GroupNormRows& group_norm_rows();

}  // namespace flux::kernels::detail
