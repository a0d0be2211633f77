// Weight packing for kernels::Linear (see linear_pack.h): oneDNN's preferred layout, recognised once per
// Linear; the direct packer (tiles widened in L1, transposed by the per-ISA pack_tile); the two-pass
// fallback (widen whole rows, then oneDNN's reorder). Both produce the same bytes: the direct packer widens
// with the same dequantize_row / convert_* calls at the same ISA level, and writes zero padding as the
// reorder does (tests/kernels/test_linear_pack.cc compares them byte for byte).
#include "kernels/linear_pack.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "base/cpu.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/internal.h"
#include "tensor/convert.h"
#include "tensor/quant.h"

namespace flux::kernels::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// M used to pick the packed weight layout (see linear_weight_layout).
constexpr int64_t kLayoutM = 1024;
// A tile of weight rows widened before its transpose: sized to stay in L1 (48 KB on Zen 4/5) next to the
// output lines being written.
constexpr int64_t kTileBytes = 32 << 10;

DType compute_of(const dnnl::memory::desc& md) { return md.data.data_type == dnnl_bf16 ? DType::bf16 : DType::f32; }

// `len` elements of `from` at src -> dst in `to` (f32 or bf16): the conversions widen_rows makes (the same
// functions, so the same rounding at the same ISA level). f32_scratch holds `len` floats (f16, f8 and f32 sources going
// to bf16).
void widen_span(DType from, DType to, const void* src, void* dst, int64_t len, float* f32_scratch) {
  const size_t n = static_cast<size_t>(len);
  if (from == to) {
    std::memcpy(dst, src, n * dtype_size(to));
  } else if (is_quantized(from)) {
    if (to == DType::f32) {
      dequantize_row(from, src, static_cast<float*>(dst), len);
    } else {
      dequantize_row_bf16(from, src, static_cast<uint16_t*>(dst), len);
    }
  } else if (to == DType::f32) {
    convert_to_f32(from, src, static_cast<float*>(dst), n);
  } else {
    convert_to_f32(from, src, f32_scratch, n);
    convert_from_f32(f32_scratch, to, dst, n);
  }
}

// Rows [0, n) of `rows` (storage form [n, k] of `from`) -> dst as `to` [n, k], threaded over rows: the
// two-pass path's widening, kept as it was written before pack_direct (not sharing widen_span), so the
// byte-for-byte test compares two independent codings of the same conversions.
void widen_rows(DType from, const void* rows, int64_t n, int64_t k, DType to, void* dst) {
  const size_t src_row = dtype_nbytes(from, k);
  const size_t dst_row = static_cast<size_t>(k) * dtype_size(to);
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* out = static_cast<uint8_t*>(dst);
  parallel_for(
      n,
      [&](int64_t a, int64_t b) {
        std::vector<float> row(to == DType::f32 || is_quantized(from) ? 0 : static_cast<size_t>(k));
        for (int64_t r = a; r < b; ++r) {
          const void* s = src + r * src_row;
          void* d = out + r * dst_row;
          if (is_quantized(from)) {
            if (to == DType::f32) {
              dequantize_row(from, s, static_cast<float*>(d), k);
            } else {
              dequantize_row_bf16(from, s, static_cast<uint16_t*>(d), k);
            }
          } else if (to == DType::f32) {
            convert_to_f32(from, s, static_cast<float*>(d), static_cast<size_t>(k));
          } else {
            convert_to_f32(from, s, row.data(), static_cast<size_t>(k));
            convert_from_f32(row.data(), to, d, static_cast<size_t>(k));
          }
        }
      },
      16);
}

}  // namespace

dnnl::engine& dnnl_cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::memory::desc linear_weight_layout(int64_t k, int64_t width, DType compute, bool with_bias) {
  const dt type = compute == DType::bf16 ? dt::bf16 : dt::f32;
  const dnnl::memory::desc src({kLayoutM, k}, type, tag::ab);
  const dnnl::memory::desc wany({k, width}, type, tag::any);
  const dnnl::memory::desc dst({kLayoutM, width}, dt::f32, tag::ab);
  const dnnl::memory::desc b = with_bias ? dnnl::memory::desc({1, width}, dt::f32, tag::ab) : dnnl::memory::desc();
  const dnnl::memory::desc md =
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wany, b, dst), dnnl_cpu_engine()).weights_desc();
  // Where oneDNN keeps the weight plain, [K, N] row-major (its sgemm: AVX2 machines), it reads the transposed
  // operand as well: hand it the storage orientation, [N, K] rows (format ba), so packing is a plain widening
  // of rows, no transpose (oneDNN's reorder to ab, and its reference kernel for bf16 -> f32, cost 2-7x the
  // product per call).
  if (md == dnnl::memory::desc({k, width}, type, tag::ab)) return dnnl::memory::desc({k, width}, type, tag::ba);
  return md;
}

std::optional<PackLayout> recognise_pack_layout(const dnnl::memory::desc& md, std::string* why) {
  const dnnl_memory_desc_t& d = md.data;
  auto reject = [&](const char* reason) -> std::optional<PackLayout> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (d.ndims != 2 || d.format_kind != dnnl_blocked) return reject("not a 2-D blocked layout");
  if (d.data_type != dnnl_bf16 && d.data_type != dnnl_f32) return reject("data type neither bf16 nor f32");
  if (d.offset0 != 0 || d.extra.flags != 0 || d.padded_offsets[0] != 0 || d.padded_offsets[1] != 0) {
    return reject("offset or extra flags");
  }
  const auto& b = d.format_desc.blocking;
  PackLayout l;
  l.dtype = compute_of(md);
  l.k = d.dims[0];
  l.n = d.dims[1];
  l.padded_k = d.padded_dims[0];
  l.padded_n = d.padded_dims[1];
  // [ku@0, nb@1] (vnni 1) or [ku@0, nb@1, vnni@0]: K outermost inside the block, then N, then the K pair.
  if (b.inner_nblks == 2 && b.inner_idxs[0] == 0 && b.inner_idxs[1] == 1) {
    l.ku = b.inner_blks[0], l.nb = b.inner_blks[1], l.vnni = 1;
  } else if (b.inner_nblks == 3 && b.inner_idxs[0] == 0 && b.inner_idxs[1] == 1 && b.inner_idxs[2] == 0) {
    l.ku = b.inner_blks[0], l.nb = b.inner_blks[1], l.vnni = b.inner_blks[2];
  } else {
    return reject("inner blocks other than [K][N] or [K][N][K pair]");
  }
  if (l.vnni * static_cast<int64_t>(dtype_size(l.dtype)) != 4) return reject("a block unit other than 32 bits");
  if (l.padded_k < l.k || l.padded_n < l.n || l.padded_k % l.kb() != 0 || l.padded_n % l.nb != 0) {
    return reject("padding not a whole number of blocks");
  }
  l.k_stride = b.strides[0];
  l.n_stride = b.strides[1];
  const int64_t block = l.kb() * l.nb;
  const bool k_outer = l.n_stride == block && l.k_stride == l.padded_n / l.nb * block;
  const bool n_outer = l.k_stride == block && l.n_stride == l.padded_k / l.kb() * block;
  if (!k_outer && !n_outer) return reject("blocks not densely stored");
  if (md.get_size() != static_cast<size_t>(l.padded_k * l.padded_n) * dtype_size(l.dtype)) {
    return reject("size is not the padded dims' product");
  }
  return l;
}

namespace {

// pack_tile over rows of any element type (ld in elements of that type), so pack_direct holds one pointer.
using FeedFn = void (*)(const void* rows, int64_t ld, int64_t n_rows, int64_t n_blocks, int64_t ku, int64_t nb,
                        int64_t k_stride, uint32_t* out);
template <class T, void (*fn)(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t*)>
void feed(const void* rows, int64_t ld, int64_t n_rows, int64_t n_blocks, int64_t ku, int64_t nb, int64_t k_stride,
          uint32_t* out) {
  fn(static_cast<const T*>(rows), ld, n_rows, n_blocks, ku, nb, k_stride, out);
}

// How one pack_direct call turns weight rows into blocks, decided once per call (the ISA cap may change
// between calls, never during one).
struct Plan {
  // Rows are widened and transposed `group` at a time (the transposes' height), tile_k elements of K per
  // tile: few enough rows that the tile stays in L1.
  int64_t group = 0, tile_k = 0;
  DType tile_dtype = DType::f32;  // the compute dtype, or f32 on its way to bf16 (rounded in the transpose)
  int64_t row_bytes = 0;          // tile row stride
  FeedFn from_tile = nullptr;     // reads the tile, rows row_bytes / 4 units (or floats) apart
  // Whole groups of whole tiles are read where they lie, when the storage dtype allows it (direct != null).
  FeedFn direct = nullptr;
  int64_t direct_ld = 0;
  // Block types going to f32 call this ISA's dequantizer directly, as dequantize_row would: its per-call
  // checks and dispatch cost about as much as dequantizing the few blocks of a tile row.
  void (*dequantize_f32)(DType, const void*, float*, int64_t) = nullptr;
};

Plan make_plan(const PackLayout& l, DType from) {
  Plan p;
  const IsaLevel isa = isa_level();
  // With AVX512_BF16 the transpose rounds to bf16 itself (as convert_f32_to_bf16 does at this level) and
  // reads f16 and f8 rows where they lie.
  const bool bf16_transpose = l.dtype == DType::bf16 && isa == IsaLevel::avx512 && cpu_features().avx512_bf16 &&
                              l.ku % 16 == 0 && l.nb % 16 == 0;
  p.tile_dtype = bf16_transpose && from != DType::bf16 ? DType::f32 : l.dtype;
  const auto esize = static_cast<int64_t>(dtype_size(p.tile_dtype));
  p.group = l.nb % 16 == 0 ? 16 : l.nb % 8 == 0 ? 8 : l.nb;
  // Tiles span whole storage blocks (they start on block boundaries) and whole layout blocks.
  const int64_t step = std::lcm(l.kb(), dtype_block_size(from));
  p.tile_k = std::max(step, kTileBytes / (p.group * esize) / step * step);
  // Tile rows one cache line more than tile_k apart: a 16-row transpose then reads 16 different cache sets.
  p.row_bytes = p.tile_k * esize + 64;
  const FeedFn pack_units =
      isa == IsaLevel::avx512 && l.ku % 16 == 0 && l.nb % 16 == 0 ? feed<uint32_t, avx512::pack_tile>
      : isa >= IsaLevel::avx2 && l.ku % 8 == 0 && l.nb % 8 == 0   ? feed<uint32_t, avx2::pack_tile>
                                                                  : feed<uint32_t, scalar::pack_tile>;
  p.from_tile = p.tile_dtype == l.dtype ? pack_units : feed<float, avx512::pack_tile_bf16>;
  if (from == l.dtype && (l.k * esize) % 4 == 0) {
    p.direct = pack_units;
    p.direct_ld = l.k * esize / 4;
  } else if (bf16_transpose && from == DType::f16) {
    p.direct = feed<uint16_t, avx512::pack_tile_f16>;
    p.direct_ld = l.k;
  } else if (bf16_transpose && from == DType::f8_e4m3) {
    p.direct = feed<uint8_t, avx512::pack_tile_f8>;
    p.direct_ld = l.k;
  }
  if (is_quantized(from) && p.tile_dtype == DType::f32) {
    p.dequantize_f32 = isa == IsaLevel::avx512 ? flux::avx512::dequantize_row
                       : isa == IsaLevel::avx2 ? flux::avx2::dequantize_row
                                               : flux::scalar::dequantize_row;
  }
  return p;
}

}  // namespace

void pack_direct(const PackLayout& l, DType from, const void* rows, void* out) {
  const Plan p = make_plan(l, from);
  const auto esize = static_cast<int64_t>(dtype_size(p.tile_dtype));
  const int64_t n_chunks = (l.padded_k + p.tile_k - 1) / p.tile_k;
  const size_t src_row = dtype_nbytes(from, l.k), src_chunk = dtype_nbytes(from, p.tile_k);
  const int64_t k_stride = l.k_stride / l.vnni, n_stride = l.n_stride / l.vnni;  // in 32-bit units
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* dst = static_cast<uint32_t*>(out);
  // Items: (block of nb output features, tile of K), in the layout's order so each thread writes on.
  parallel_for(
      l.padded_n / l.nb * n_chunks,
      [&](int64_t a, int64_t b) {
        thread_local AlignedBuffer tile;
        thread_local std::vector<float> scratch;
        tile.resize(static_cast<size_t>(p.group * p.row_bytes));
        scratch.resize(static_cast<size_t>(p.tile_k));
        for (int64_t item = a; item < b; ++item) {
          const int64_t nblk = item / n_chunks, k0 = item % n_chunks * p.tile_k;
          const int64_t k1 = std::min(k0 + p.tile_k, l.padded_k);
          const int64_t valid_k = std::max<int64_t>(0, std::min(k1, l.k) - k0);
          const size_t src_k0 = dtype_nbytes(from, k0);
          for (int64_t r0 = 0; r0 < l.nb; r0 += p.group) {
            const int64_t row0 = nblk * l.nb + r0;  // first weight row of the group
            const int64_t valid_rows = std::clamp<int64_t>(l.n - row0, 0, p.group);
            const uint8_t* first = src + static_cast<size_t>(row0) * src_row + src_k0;
            // The next tile reads on along these rows: ask for its bytes now. Hardware prefetchers do not
            // follow 64 short streams at once (measured: packing f16 or q8_0 ran 2-3x slower without).
            if (src_k0 + src_chunk < src_row) {
              const size_t ahead = std::min(src_chunk, src_row - src_k0 - src_chunk);
              for (int64_t r = 0; r < valid_rows; ++r) {
                const uint8_t* next = first + static_cast<size_t>(r) * src_row + src_chunk;
                for (size_t off = 0; off < ahead; off += 64) __builtin_prefetch(next + off);
              }
            }
            uint32_t* blocks = dst + k0 / l.kb() * k_stride + nblk * n_stride + r0;
            const int64_t n_blocks = (k1 - k0) / l.kb();
            if (p.direct && valid_rows == p.group && valid_k == k1 - k0) {
              p.direct(first, p.direct_ld, p.group, n_blocks, l.ku, l.nb, k_stride, blocks);
              continue;
            }
            for (int64_t r = 0; r < p.group; ++r) {
              auto* row = tile.as<uint8_t>() + r * p.row_bytes;
              const int64_t done = r < valid_rows ? valid_k : 0;
              if (done > 0 && p.dequantize_f32) {
                p.dequantize_f32(from, first + r * src_row, reinterpret_cast<float*>(row), done);
              } else if (done > 0) {
                widen_span(from, p.tile_dtype, first + r * src_row, row, done, scratch.data());
              }
              std::memset(row + done * esize, 0, static_cast<size_t>((k1 - k0 - done) * esize));
            }
            p.from_tile(tile.data(), p.row_bytes / 4, p.group, n_blocks, l.ku, l.nb, k_stride, blocks);
          }
        }
      },
      4);
}

void pack_two_pass(const dnnl::memory::desc& md, DType from, const void* rows, AlignedBuffer& plain, void* out) {
  const int64_t k = md.data.dims[0], n = md.data.dims[1];
  const DType compute = compute_of(md);
  if (md == dnnl::memory::desc({k, n}, compute == DType::bf16 ? dt::bf16 : dt::f32, tag::ba)) {
    widen_rows(from, rows, n, k, compute, out);  // the layout is the rows themselves (linear_weight_layout)
    return;
  }
  const void* src = rows;
  DType src_type = from;
  // oneDNN's reorder widens bf16 to f32 itself; f16, f8 and the ggml block types are widened here first.
  if (!(from == compute || (from == DType::bf16 && compute == DType::f32))) {
    plain.resize(static_cast<size_t>(n * k) * dtype_size(compute));
    widen_rows(from, rows, n, k, compute, plain.data());
    src = plain.data();
    src_type = compute;
  }
  dnnl::engine& eng = dnnl_cpu_engine();
  dnnl::memory src_mem({{k, n}, src_type == DType::bf16 ? dt::bf16 : dt::f32, tag::ba}, eng, const_cast<void*>(src));
  dnnl::memory dst_mem(md, eng, out);
  default_pool().adopt_caller();  // oneDNN runs on the pool's OpenMP threads
  dnnl::stream stream(eng);
  dnnl::reorder(src_mem, dst_mem).execute(stream, src_mem, dst_mem);
  stream.wait();
}

bool pack_linear_panel(const Tensor& w, DType compute, int64_t n0, int64_t width, bool direct,
                       std::vector<uint8_t>& out) {
  FLUX_CHECK(w.ndim() == 2 && n0 >= 0 && width > 0 && n0 + width <= w.dim(0), "pack_linear_panel: bad panel [", n0,
             ", ", n0 + width, ") of ", w.describe());
  const int64_t k = w.dim(1);
  const dnnl::memory::desc md = linear_weight_layout(k, width, compute, false);
  out.assign(md.get_size(), 0xA5);  // poison: padding must be written too
  const auto* rows = static_cast<const uint8_t*>(w.raw()) + dtype_nbytes(w.dtype(), n0 * k);
  if (direct) {
    const auto layout = recognise_pack_layout(md);
    if (!layout) return false;
    pack_direct(*layout, w.dtype(), rows, out.data());
  } else {
    AlignedBuffer plain;
    pack_two_pass(md, w.dtype(), rows, plain, out.data());
  }
  return true;
}

namespace scalar {
void pack_tile(const uint32_t* tile, int64_t ld, int64_t rows, int64_t n_blocks, int64_t ku, int64_t nb,
               int64_t k_stride, uint32_t* out) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint32_t* block = out + b * k_stride;
    for (int64_t j = 0; j < ku; ++j) {
      for (int64_t r = 0; r < rows; ++r) block[j * nb + r] = tile[r * ld + b * ku + j];
    }
  }
}
}  // namespace scalar

}  // namespace flux::kernels::detail
