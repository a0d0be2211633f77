// A read-only memory map of a whole file. Tensors viewed over it keep it alive through a shared_ptr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>

namespace flux {

class MappedFile {
 public:
  // Throws Error naming the file when it cannot be opened or mapped. An empty file maps to size() == 0.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Hints the kernel to read [offset, offset+bytes) ahead (loading with progress).
  void prefetch(size_t offset, size_t bytes) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;  // kept open for posix_fadvise (set_evict_released_pages)
};

// Tells the kernel this process no longer needs the pages of [data, data + bytes) when that range lies inside a
// live MappedFile (whole pages only): they leave this process's RSS but stay in the page cache, and a later read
// faults them back in from there (the mapping is read-only, so nothing is lost). A prepacked Linear calls it once
// it has copied its weight from a mapped file. Any other range (owned memory, a range not inside one mapping) is
// left alone: returns the bytes released (0 then). Thread-safe.
size_t release_file_pages(const void* data, size_t bytes);

// When on, release_file_pages() also drops the released range from the page cache (POSIX_FADV_DONTNEED; pages
// another process maps stay). For a process whose files and packed copies do not fit in memory together: the
// pages of a file already copied would otherwise push out the pages of the files still read at each call (T5
// read per call, from disk again at every job). Off by default: a machine with room keeps the copied files cached
// for the next start. Process-wide.
void set_evict_released_pages(bool on);

// Reads the whole file at `path` into the page cache, 2 MiB at a time (sendfile to /dev/null: no copy to user
// space), returning at the end of the file or at the next piece once `stop` is requested. For a file the next job
// reads per call (T5), so its first call does not wait for the disk: the load runs it on a thread of its own once
// its own read pass is over, and the disk then works while the CPU packs or computes. Does nothing for a file
// that cannot be opened (the binding reports that). Blocks for as long as the disk takes.
void read_ahead(const std::string& path, std::stop_token stop = {});

}  // namespace flux
