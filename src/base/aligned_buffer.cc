// AlignedBuffer's allocation. Large buffers (the packed weights: 11.7 GB of int8 for the full FLUX transformer,
// the activations of a 1024x1024 image) get 2 MiB alignment and MADV_HUGEPAGE: Debian's kernels run transparent
// huge pages in "madvise" mode, so without the advice every 4 KiB page is faulted in (and zeroed) on its own,
// 2.9 million faults for those weights, and the products stream them through 4 KiB TLB entries. Advice only:
// where THP is off the buffer is simply 2 MiB-aligned.
#include "base/aligned_buffer.h"

#include <sys/mman.h>

#include <new>

namespace flux {

void AlignedBuffer::allocate(size_t bytes) {
  const size_t align = bytes >= kHugeFrom ? kHugePage : kAlignment;
  const size_t rounded = (bytes + align - 1) / align * align;
  data_ = std::aligned_alloc(align, rounded);
  if (data_ == nullptr) throw std::bad_alloc();
  size_ = rounded;
  if (align == kHugePage) ::madvise(data_, rounded, MADV_HUGEPAGE);
}

}  // namespace flux
