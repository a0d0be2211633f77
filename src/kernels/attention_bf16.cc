// The bf16 flash attention's driver: K and V converted to bf16 and packed once per call (attention_bf16.h's
// layouts, in parallel over heads), then tasks of (head, block of kBf16Queries query rows) over the thread
// pool, each on its own scratch (0.36 MB at head_dim 128; with a key block of K and V, 0.6 MB: it stays in a
// 1 MB L2). The arithmetic is in attention_avx512.cc.
#include "kernels/attention_bf16.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/aligned_buffer.h"
#include "base/cpu.h"
#include "base/thread_pool.h"

namespace flux::kernels::detail {
namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

bool attention_bf16_applies(const AttentionParams& p) {
  if (!p.bf16 || p.causal || p.bias != nullptr || !(p.scale > 0.0f)) return false;
  if (p.head_dim % kBf16Tile != 0) return false;
  const CpuFeatures& cpu = cpu_features();
  if (!cpu.avx512() || !cpu.avx512_bf16) return false;
  const char* env = std::getenv("FLUX_ATTENTION_BF16");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

void attention_bf16(const AttentionParams& p, const float* q, const float* k, const float* v, float* out) {
  const int64_t H = p.n_heads, Lq = p.len_q, Lk = p.len_k, D = p.head_dim;
  const int64_t k_head = round_up(Lk, kBf16Tile) * D;  // bf16 elements of one head's packed K
  const int64_t v_head = round_up(Lk, kBf16Keys) * D;  // ... and V
  AlignedBuffer k_pack(static_cast<size_t>(H * k_head) * sizeof(uint16_t));
  AlignedBuffer v_pack(static_cast<size_t>(H * v_head) * sizeof(uint16_t));
  parallel_for(H, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      avx512::pack_k_bf16(k + h * Lk * D, Lk, D, k_pack.as<uint16_t>() + h * k_head);
      avx512::pack_v_bf16(v + h * Lk * D, Lk, D, v_pack.as<uint16_t>() + h * v_head);
    }
  });

  const int64_t n_qb = (Lq + kBf16Queries - 1) / kBf16Queries;
  parallel_for(H * n_qb, [&](int64_t t0, int64_t t1) {
    // Scratch, each part on its own cache lines.
    const int64_t part[] = {kBf16Queries * D * 2,
                            kBf16Queries * kBf16Keys * 4,
                            kBf16Queries * kBf16Keys * 2,
                            kBf16Queries * D * 4,
                            kBf16Queries * 4,
                            kBf16Queries * 4,
                            kBf16Queries * 4};
    int64_t offset[8] = {0};
    for (int i = 0; i < 7; ++i) offset[i + 1] = offset[i] + round_up(part[i], 64);
    AlignedBuffer buffer(static_cast<size_t>(offset[7]));
    char* base = buffer.as<char>();
    const Bf16Scratch scratch{reinterpret_cast<uint16_t*>(base + offset[0]), reinterpret_cast<float*>(base + offset[1]),
                              reinterpret_cast<uint16_t*>(base + offset[2]), reinterpret_cast<float*>(base + offset[3]),
                              reinterpret_cast<float*>(base + offset[4]),    reinterpret_cast<float*>(base + offset[5]),
                              reinterpret_cast<float*>(base + offset[6])};
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / n_qb, i0 = (t % n_qb) * kBf16Queries;
      Bf16QueryBlock block;
      block.q = q + (h * Lq + i0) * D;
      block.n_rows = std::min(kBf16Queries, Lq - i0);
      block.k = k_pack.as<uint16_t>() + h * k_head;
      block.v = v_pack.as<uint16_t>() + h * v_head;
      block.len_k = Lk;
      block.head_dim = D;
      block.scale = p.scale;
      block.out = out + i0 * H * D + h * D;  // [Lq, H * D]
      block.ld_out = H * D;
      avx512::attention_query_block_bf16(block, scratch);
    }
  });
}

}  // namespace flux::kernels::detail
