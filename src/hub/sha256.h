// SHA-256 (FIPS 180-4), streamed: the hub names each large (LFS) file by the sha256 of its content, and a
// download is checked against it before it is linked into the cache.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace flux::hub {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // The digest as 64 lower-case hex digits; the object is spent afterwards.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);  // one 64-byte block into state_
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes hashed so far
};

// The sha256 of a whole file; Error naming the file when it cannot be read.
std::string sha256_of_file(const std::string& path);

}  // namespace flux::hub
