#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>

#include "base/error.h"

namespace flux {
namespace {

// The live mappings, by start address: release_file_pages() acts only inside one of them.
struct Mapping {
  uintptr_t end;
  int fd;
};
struct Mappings {
  std::mutex mutex;
  std::map<uintptr_t, Mapping> ranges;
};
std::atomic<bool> g_evict{false};
Mappings& mappings() {
  static Mappings m;
  return m;
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail(path, ": cannot mmap ", file->size_, " bytes: ", std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
    Mappings& m = mappings();
    const std::lock_guard lock(m.mutex);
    file->fd_ = fd;
    m.ranges[reinterpret_cast<uintptr_t>(p)] = Mapping{reinterpret_cast<uintptr_t>(p) + file->size_, fd};
  } else {
    ::close(fd);
  }
  return file;
}

MappedFile::~MappedFile() {
  if (data_ == nullptr) return;
  {
    Mappings& m = mappings();
    const std::lock_guard lock(m.mutex);
    m.ranges.erase(reinterpret_cast<uintptr_t>(data_));
  }
  ::munmap(const_cast<uint8_t*>(data_), size_);
  ::close(fd_);
}

size_t release_file_pages(const void* data, size_t bytes) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + bytes;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (bytes == 0 || last <= first) return 0;
  Mappings& m = mappings();
  const std::lock_guard lock(m.mutex);  // the mapping cannot go away while advised
  auto it = m.ranges.upper_bound(begin);
  if (it == m.ranges.begin()) return 0;
  --it;
  if (begin < it->first || end > it->second.end) return 0;
  if (::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0) return 0;
  // Unmapped from this process first, so the page cache can let them go.
  if (g_evict.load(std::memory_order_relaxed))
    ::posix_fadvise(it->second.fd, static_cast<off_t>(first - it->first), static_cast<off_t>(last - first),
                    POSIX_FADV_DONTNEED);
  return last - first;
}

void set_evict_released_pages(bool on) { g_evict.store(on, std::memory_order_relaxed); }

void read_ahead(const std::string& path, std::stop_token stop) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  struct stat st {};
  if (null >= 0 && ::fstat(fd, &st) == 0) {
    // sendfile to /dev/null reads through the page cache without copying to user space; one piece at a time, so
    // a reader of the same file (faulting its pages in) never waits behind a deep queue of read-ahead.
    constexpr size_t kChunk = size_t{2} << 20;
    off_t off = 0;
    while (off < st.st_size && !stop.stop_requested()) {
      const ssize_t n = ::sendfile(null, fd, &off, kChunk);
      if (n <= 0 && !(n < 0 && errno == EINTR)) break;
    }
  }
  if (null >= 0) ::close(null);
  ::close(fd);
}

void MappedFile::prefetch(size_t offset, size_t bytes) const {
  if (data_ == nullptr || offset >= size_) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t start = offset / page * page;
  const size_t end = std::min(size_, offset + bytes);
  ::madvise(const_cast<uint8_t*>(data_) + start, end - start, MADV_WILLNEED);
}

}  // namespace flux
