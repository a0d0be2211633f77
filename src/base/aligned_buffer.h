// A heap buffer aligned to 64 bytes (one cache line, one AVX-512 register), movable, not copyable. Buffers of
// kHugeFrom bytes or more are aligned to 2 MiB and advised to transparent huge pages (aligned_buffer.cc).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace flux {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kHugePage = size_t{2} << 20, kHugeFrom = size_t{4} << 20;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { resize(bytes); }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Discards the contents; grows only (a reused scratch buffer).
  void resize(size_t bytes) {
    if (bytes <= size_) return;
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    allocate(bytes);
  }
  void zero() {
    if (data_) std::memset(data_, 0, size_);
  }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  size_t size() const { return size_; }

 private:
  void allocate(size_t bytes);

  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace flux
