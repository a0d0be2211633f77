// GGUF writer: the header serialised in memory (KV pairs and tensor infos are small), tensor data streamed
// through a buffered FILE. Offsets follow gguf-py: each tensor starts at the previous end rounded up to the
// alignment, and padding follows every tensor (the last one: as the options say).
#include "io/gguf_writer.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "base/error.h"

namespace flux {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

constexpr size_t kBufferBytes = size_t{4} << 20;

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

template <typename T>
void put_pod(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put_pod<uint64_t>(out, s.size());
  out += s;
}

}  // namespace

void append_gguf_value(std::string& out, const GgufValue& v, const std::string& key) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          put_string(out, x);
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          put_pod<uint32_t>(out, static_cast<uint32_t>(x.type));
          put_pod<uint64_t>(out, x.items.size());
          for (const GgufValue& item : x.items) {
            FLUX_CHECK(item.type() == x.type, "GGUF KV '", key, "': array of ", gguf_type_name(x.type), " holds a ",
                       gguf_type_name(item.type()));
            append_gguf_value(out, item, key);
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          put_pod<uint8_t>(out, x ? 1 : 0);
        } else {
          put_pod<T>(out, x);
        }
      },
      v.value);
}

GgufWriter::GgufWriter(const std::string& path, std::vector<GgufKV> kv, std::vector<GgufTensorSpec> tensors,
                       GgufWriteOptions options)
    : path_(path),
      part_path_(path + ".part"),
      alignment_(options.alignment),
      pad_last_(options.pad_last_tensor),
      tensors_(std::move(tensors)) {
  bool has_alignment_kv = false;
  for (const GgufKV& p : kv) {
    if (p.key != "general.alignment") continue;
    const auto* a = std::get_if<uint32_t>(&p.value.value);
    FLUX_CHECK(a != nullptr, path_, ": KV general.alignment: expected type u32, got ", gguf_type_name(p.value.type()));
    alignment_ = *a;
    has_alignment_kv = true;
  }
  FLUX_CHECK(alignment_ != 0 && (alignment_ & (alignment_ - 1)) == 0, path_,
             ": alignment: expected a nonzero power of two, got ", alignment_);
  if (!has_alignment_kv && alignment_ != GgufFile::kDefaultAlignment)
    kv.push_back({"general.alignment", GgufValue{alignment_}});

  std::string header = "GGUF";
  put_pod<uint32_t>(header, 3);
  put_pod<uint64_t>(header, tensors_.size());
  put_pod<uint64_t>(header, kv.size());
  for (const GgufKV& p : kv) {
    put_string(header, p.key);
    put_pod<uint32_t>(header, static_cast<uint32_t>(p.value.type()));
    append_gguf_value(header, p.value, p.key);
  }
  uint64_t offset = 0;
  for (const GgufTensorSpec& t : tensors_) {
    const int64_t last = t.shape.ndim() == 0 ? 1 : t.shape[t.shape.ndim() - 1];
    FLUX_CHECK(last % dtype_block_size(t.dtype) == 0, path_, ": tensor '", t.name, "' ", t.shape.str(), ": ",
               dtype_name(t.dtype), " needs rows of whole ", dtype_block_size(t.dtype), "-element blocks");
    put_string(header, t.name);
    put_pod<uint32_t>(header, static_cast<uint32_t>(t.shape.ndim()));
    for (int i = t.shape.ndim() - 1; i >= 0; --i) put_pod<uint64_t>(header, static_cast<uint64_t>(t.shape[i]));
    put_pod<uint32_t>(header, ggml_type_of(t.dtype));
    put_pod<uint64_t>(header, offset);
    sizes_.push_back(dtype_nbytes(t.dtype, t.shape.numel()));
    offset = align_up(offset + sizes_.back(), alignment_);
  }

  file_ = std::fopen(part_path_.c_str(), "wb");
  FLUX_CHECK(file_ != nullptr, path_, ": cannot create the file (", part_path_, "): ", std::strerror(errno));
  std::setvbuf(file_, nullptr, _IOFBF, kBufferBytes);
  put(header.data(), header.size());
  pad(header.size());
  while (current_ < sizes_.size() && sizes_[current_] == 0) ++current_;
}

GgufWriter::~GgufWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!finished_) std::remove(part_path_.c_str());
}

void GgufWriter::put(const void* data, size_t n) {
  if (n == 0) return;
  FLUX_CHECK(std::fwrite(data, 1, n, file_) == n, path_, ": write failed: ", std::strerror(errno));
}

void GgufWriter::pad(uint64_t written) {
  static const char zeros[64] = {};
  for (uint64_t n = align_up(written, alignment_) - written; n > 0;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof zeros));
    put(zeros, k);
    n -= k;
  }
}

void GgufWriter::write(const void* data, size_t n) {
  if (n == 0) return;
  FLUX_CHECK(file_ != nullptr && !finished_, path_, ": write after finish()");
  FLUX_CHECK(current_ < tensors_.size(), path_, ": ", n, " bytes written after the last tensor");
  const size_t left = sizes_[current_] - current_written_;
  FLUX_CHECK(n <= left, path_, ": tensor '", tensors_[current_].name, "': ", n, " bytes written where ", left,
             " were left of its ", sizes_[current_]);
  put(data, n);
  current_written_ += n;
  if (current_written_ == sizes_[current_]) {
    const size_t written = current_written_;
    current_written_ = 0;
    for (++current_; current_ < sizes_.size() && sizes_[current_] == 0;) ++current_;
    if (current_ < sizes_.size() || pad_last_) pad(written);
  }
}

void GgufWriter::finish() {
  FLUX_CHECK(file_ != nullptr && !finished_, path_, ": finish() called twice");
  FLUX_CHECK(current_ == tensors_.size(), path_, ": tensor '",
             current_ < tensors_.size() ? tensors_[current_].name : std::string(), "' not written in full (",
             current_written_, " of ", current_ < sizes_.size() ? sizes_[current_] : 0, " bytes)");
  const bool flushed = std::fflush(file_) == 0 && std::ferror(file_) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  FLUX_CHECK(flushed && closed, path_, ": write failed: ", std::strerror(flushed ? errno : flush_errno));
  FLUX_CHECK(std::rename(part_path_.c_str(), path_.c_str()) == 0, path_, ": cannot move ", part_path_,
             " into place: ", std::strerror(errno));
  finished_ = true;
}

void write_gguf(const std::string& path, std::vector<GgufKV> kv,
                const std::vector<std::pair<std::string, Tensor>>& tensors, GgufWriteOptions options) {
  std::vector<GgufTensorSpec> specs;
  for (const auto& [name, t] : tensors) specs.push_back({name, t.dtype(), t.shape()});
  GgufWriter w(path, std::move(kv), std::move(specs), options);
  for (const auto& [name, t] : tensors) w.write(t.raw(), t.nbytes());
  w.finish();
}

}  // namespace flux
