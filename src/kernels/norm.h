// Normalisations over the last dim (layer, RMS) or over channel groups (group norm). All F32; a kernel may
// run in place (y == x). gamma/beta may be null (no affine).
#pragma once

#include <cstdint>

namespace flux::kernels {

// y = (x - mean) / sqrt(var + eps) * gamma + beta over rows of length dim. x, y: [rows, dim].
void layer_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, const float* beta, float eps);
// y = x / sqrt(mean(x^2) + eps) * gamma. x, y: [rows, dim].
void rms_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, float eps);
// x, y: [channels, spatial]; channels split into `groups` equal groups, each normalised over
// (channels/groups * spatial) values, then per-channel gamma/beta.
void group_norm(const float* x, float* y, int64_t channels, int64_t spatial, int64_t groups, const float* gamma,
                const float* beta, float eps);

namespace reference {
void layer_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, const float* beta, float eps);
void rms_norm(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, float eps);
void group_norm(const float* x, float* y, int64_t channels, int64_t spatial, int64_t groups, const float* gamma,
                const float* beta, float eps);
}  // namespace reference

}  // namespace flux::kernels
