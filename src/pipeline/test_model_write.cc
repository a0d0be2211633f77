#include "pipeline/test_model_write.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <numeric>

#include "base/error.h"
#include "base/thread_pool.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "pipeline/torch_random.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"

namespace flux::test_model {
namespace {

constexpr int64_t kChunkElements = int64_t{8} << 20;  // 32 MiB of f32

// All values in memory, drawn as the test models always drew them (one torch.randn stream in parameter order).
class TorchValues final : public ParamValues {
 public:
  TorchValues(const Params& params, uint64_t seed) : params_(params) {
    TorchGenerator gen(seed);
    for (const Param& p : params) {
      const int64_t n = p.shape.numel();
      if (p.std == 0) {
        values_.emplace_back(static_cast<size_t>(n), p.mean);
        continue;
      }
      std::vector<float> v = gen.randn(std::max<int64_t>(n, 16));
      v.resize(static_cast<size_t>(n));
      for (float& x : v) x = p.mean + p.std * x;
      values_.push_back(std::move(v));
    }
  }
  void rows(size_t param, int64_t begin, int64_t end, float* out) const override {
    const int64_t len = params_[param].row_length();
    std::copy(values_[param].begin() + begin * len, values_[param].begin() + end * len, out);
  }

 private:
  const Params& params_;
  std::vector<std::vector<float>> values_;
};

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class StreamedValues final : public ParamValues {
 public:
  StreamedValues(const Params& params, uint64_t seed) : params_(params), seed_(mix64(seed + 0x9e3779b97f4a7c15ull)) {}
  void rows(size_t param, int64_t begin, int64_t end, float* out) const override {
    const Param& p = params_[param];
    const int64_t len = p.row_length();
    if (p.std == 0) {
      std::fill(out, out + (end - begin) * len, p.mean);
      return;
    }
    // Irwin-Hall of four 16-bit uniforms: mean 4 * 32767.5, std 65536 / sqrt(3).
    const float scale = p.std * std::sqrt(3.0f) / 65536.0f, offset = p.mean - 131070.0f * scale;
    parallel_for(
        end - begin,
        [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const uint64_t base = mix64(seed_ ^ mix64((static_cast<uint64_t>(param) << 40) + begin + r));
            float* o = out + r * len;
            for (int64_t i = 0; i < len; ++i) {
              const uint64_t z = mix64(base + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull);
              const uint32_t sum = static_cast<uint32_t>(z & 0xffff) + static_cast<uint32_t>((z >> 16) & 0xffff) +
                                   static_cast<uint32_t>((z >> 32) & 0xffff) + static_cast<uint32_t>(z >> 48);
              o[i] = static_cast<float>(sum) * scale + offset;
            }
          }
        },
        std::max<int64_t>(1, 4096 / len));
  }

 private:
  const Params& params_;
  uint64_t seed_;
};

// Random valid Q4_K blocks (ggml block_q4_K: d, dmin f16, scales[12], qs[128]) for rows [r0, r1) of a weight of
// N(0, std^2)-like scale: uniform 4-bit q, every sub-block scale 20 and min 50 with dmin = 3 d, so
// y = d * 20 * q - 3 d * 50 = 20 d (q - 7.5): zero mean, std 20 d * 4.61 = `std`. ggml's search quantizer
// (sd-cli's, llama-quantize's) runs at ~10 MB/s on two cores, too slow for 7 GB; these bytes are as valid.
void random_q4_K_rows(uint64_t seed, size_t param, float std, int64_t r0, int64_t r1, int64_t k, uint8_t* out) {
  constexpr int kSc = 20, kMn = 50;
  const uint16_t d = f32_to_f16(std / (kSc * 4.6098f)), dmin = f32_to_f16(std * 3 / (kSc * 4.6098f));
  // get_scale_min_k4's packing of sc = 20, mn = 50 for all 8 sub-blocks.
  const uint8_t lo = kSc | ((kSc >> 4) << 6), mid = kMn | ((kMn >> 4) << 6), hi = (kSc & 0xF) | ((kMn & 0xF) << 4);
  const int64_t n_blocks = k / 256;
  const size_t row_bytes = static_cast<size_t>(n_blocks) * 144;
  parallel_for(r1 - r0, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      const uint64_t base = mix64(seed ^ mix64((static_cast<uint64_t>(param) << 40) + r0 + r + (uint64_t{1} << 39)));
      uint8_t* row = out + static_cast<size_t>(r) * row_bytes;
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        uint8_t* q = row + blk * 144;
        std::memcpy(q, &d, 2);
        std::memcpy(q + 2, &dmin, 2);
        for (int i = 0; i < 4; ++i) q[4 + i] = lo, q[8 + i] = mid, q[12 + i] = hi;
        for (int i = 0; i < 16; ++i) {
          const uint64_t z = mix64(base + static_cast<uint64_t>(blk * 16 + i) * 0x9e3779b97f4a7c15ull);
          std::memcpy(q + 16 + 8 * i, &z, 8);
        }
      }
    }
  });
}

// Fills `out` with the elements [at, at + n) of tensor t (its pieces concatenated); whole rows only.
void fill(const OutTensor& t, const Params& params, const ParamValues& values, int64_t at, int64_t n, float* out) {
  int64_t start = 0;
  for (const Piece& piece : t.pieces) {
    const int64_t len = params[piece.param].row_length(), size = (piece.end - piece.begin) * len;
    if (at < start + size && at + n > start) {
      const int64_t lo = std::max(at, start), hi = std::min(at + n, start + size);
      FLUX_CHECK((lo - start) % len == 0 && (hi - start) % len == 0, "make-test-model: chunk of ", t.name,
                 " not on row boundaries");
      values.rows(piece.param, piece.begin + (lo - start) / len, piece.begin + (hi - start) / len, out + (lo - at));
    }
    start += size;
  }
}

// Elements per chunk: whole rows of every piece (all pieces of a tensor share a row length) and whole
// quantization rows.
int64_t chunk_elements(const OutTensor& t, const Params& params) {
  int64_t len = 1;
  for (const Piece& p : t.pieces) len = std::lcm(len, params[p.param].row_length());
  if (t.shape.ndim() > 0) len = std::lcm(len, t.shape[t.shape.ndim() - 1]);
  return std::max<int64_t>(1, kChunkElements / len) * len;
}

// The tensor's bytes, chunk by chunk, to `sink` (which may run on another thread while the next chunk is made).
class ChunkedEncoder {
 public:
  using Sink = std::function<void(const uint8_t*, size_t)>;
  ChunkedEncoder(const Params& params, const ParamValues& values, const WriteOptions& options, Sink sink)
      : params_(params), values_(values), options_(options), sink_(std::move(sink)) {}
  // Q4_K blocks are drawn directly (random_q4_K_rows) instead of quantized; `seed` is the component's.
  void set_block_seed(uint64_t seed) { block_seed_ = seed; }
  ~ChunkedEncoder() {
    if (pending_.valid()) pending_.wait();
  }

  void encode(const OutTensor& t) {
    const int64_t numel = t.shape.numel(), chunk = chunk_elements(t, params_);
    const int64_t k = t.shape.ndim() == 0 ? 1 : t.shape[t.shape.ndim() - 1];
    std::vector<float> importance;
    if (is_quantized(t.dtype) && options_.search_quantizer && dtype_block_size(t.dtype) == 256)
      importance = unit_importance(k);
    for (int64_t at = 0; at < numel; at += chunk) {
      const int64_t n = std::min(chunk, numel - at);
      std::vector<uint8_t>& out = buffers_[next_];
      next_ ^= 1;
      if (t.dtype == DType::q4_K) {
        FLUX_CHECK(t.pieces.size() == 1 && params_[t.pieces[0].param].row_length() == k,
                   "make-test-model: Q4_K tensor ", t.name, " must be one whole 2-D parameter");
        const Piece& p = t.pieces[0];
        out.resize(dtype_nbytes(t.dtype, k) * static_cast<size_t>(n / k));
        random_q4_K_rows(block_seed_, p.param, params_[p.param].std, p.begin + at / k, p.begin + (at + n) / k, k,
                         out.data());
      } else if (is_quantized(t.dtype)) {
        f32_.resize(static_cast<size_t>(n));
        fill(t, params_, values_, at, n, f32_.data());
        out.resize(dtype_nbytes(t.dtype, k) * static_cast<size_t>(n / k));
        quantize_rows(t.dtype, f32_.data(), out.data(), n / k, k, importance.empty() ? nullptr : importance.data());
      } else {
        f32_.resize(static_cast<size_t>(n));
        fill(t, params_, values_, at, n, f32_.data());
        out.resize(static_cast<size_t>(n) * dtype_size(t.dtype));
        convert(t.dtype, n, out.data());
      }
      if (pending_.valid()) pending_.get();  // the other buffer is free again
      pending_ = std::async(std::launch::async, [this, &out] { sink_(out.data(), out.size()); });
    }
  }
  void wait() {
    if (pending_.valid()) pending_.get();
  }

 private:
  void convert(DType dtype, int64_t n, uint8_t* dst) const {
    const float* src = f32_.data();
    if (dtype == DType::f8_e4m3) {
      parallel_for(
          n, [&](int64_t a, int64_t b) { std::transform(src + a, src + b, dst + a, f32_to_f8e4m3); }, 1 << 16);
      return;
    }
    const size_t size = dtype_size(dtype);
    parallel_for(
        n,
        [&](int64_t a, int64_t b) {
          convert_from_f32(src + a, dtype, dst + static_cast<size_t>(a) * size, static_cast<size_t>(b - a));
        },
        1 << 16);
  }

  const Params& params_;
  const ParamValues& values_;
  const WriteOptions& options_;
  Sink sink_;
  std::vector<float> f32_;
  std::vector<uint8_t> buffers_[2];
  int next_ = 0;
  std::future<void> pending_;
  uint64_t block_seed_ = 0;
};

class Timer {
 public:
  explicit Timer(const WriteOptions& o) : verbose_(o.verbose), t0_(std::chrono::steady_clock::now()) {}
  void report(const std::string& path, uint64_t bytes) const {
    if (!verbose_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::fprintf(stderr, "  %s: %.1f MB in %.1f s (%.0f MB/s)\n", path.c_str(), bytes / 1e6, s,
                 s > 0 ? bytes / 1e6 / s : 0.0);
  }

 private:
  bool verbose_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

OutTensor whole(const Params& params, size_t i, const std::string& name, DType dtype, Shape shape) {
  const Param& p = params[i];
  return {name, shape.ndim() == 0 ? p.shape : shape, dtype, {{i, 0, p.n_rows()}}};
}

std::unique_ptr<ParamValues> torch_values(const Params& params, uint64_t seed) {
  return std::make_unique<TorchValues>(params, seed);
}
std::unique_ptr<ParamValues> streamed_values(const Params& params, uint64_t seed) {
  return std::make_unique<StreamedValues>(params, seed);
}

uint8_t f32_to_f8e4m3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7f;
  if (a >= 464.0f) return sign | 0x7e;  // saturate: 448 is the largest finite value
  if (a < 0.015625f) return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));  // subnormals, steps of 2^-9
  const uint32_t abits = bits & 0x7fffffff;
  int exp = static_cast<int>(abits >> 23) - 127;
  uint32_t m = (abits >> 20) & 7;
  const uint32_t rem = abits & 0xfffff;
  if (rem > 0x80000 || (rem == 0x80000 && (m & 1))) ++m;
  if (m == 8) m = 0, ++exp;
  if (exp > 8 || (exp == 8 && m == 7)) return sign | 0x7e;
  return sign | static_cast<uint8_t>(((exp + 7) << 3) | m);
}

uint64_t write_safetensors_streamed(const std::string& path, const std::vector<OutTensor>& tensors,
                                    const Params& params, const ParamValues& values,
                                    const std::map<std::string, std::string>& metadata, const WriteOptions& options) {
  const Timer timer(options);
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const OutTensor& t : tensors) header[t.name] = nullptr;  // keeps the given order in the header
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype); });
  uint64_t offset = 0;
  for (size_t i : order) {
    const OutTensor& t = tensors[i];
    const uint64_t n = static_cast<uint64_t>(t.shape.numel()) * dtype_size(t.dtype);
    header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                      {"shape", t.shape.to_vector()},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  FLUX_CHECK(f != nullptr, path, ": cannot create: ", std::strerror(errno));
  bool ok = true;
  auto put = [&](const void* data, size_t n) {
    if (ok && n > 0) ok = std::fwrite(data, 1, n, f) == n;
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  put(len, 8);
  put(text.data(), text.size());
  ChunkedEncoder encoder(params, values, options, put);
  for (size_t i : order) encoder.encode(tensors[i]);
  encoder.wait();
  const int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": cannot write: ", std::strerror(ok ? errno : err));
  }
  timer.report(path, 8 + text.size() + offset);
  return offset;
}

uint64_t write_gguf_streamed(const std::string& path, std::vector<GgufKV> kv, const std::vector<OutTensor>& tensors,
                             const Params& params, const ParamValues& values, const WriteOptions& options) {
  const Timer timer(options);
  std::vector<GgufTensorSpec> specs;
  for (const OutTensor& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  GgufWriter w(path, std::move(kv), specs);
  ChunkedEncoder encoder(params, values, options, [&w](const uint8_t* data, size_t n) { w.write(data, n); });
  encoder.set_block_seed(options.block_seed);
  uint64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    encoder.encode(tensors[i]);
    bytes += w.tensor_bytes(i);
  }
  encoder.wait();
  w.finish();
  timer.report(path, bytes);
  return bytes;
}

}  // namespace flux::test_model
