// libFuzzer target: GgufFile::parse on arbitrary bytes. Any input must give either a valid file whose every
// tensor view lies inside the input (each byte is read, so ASan flags a view out of bounds) and whose KV values
// print, or a flux::Error; anything else (a crash, another exception, a huge allocation) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // libFuzzer's buffer is a heap copy of exactly `size` bytes; the owner does not free it.
  std::shared_ptr<const void> owner(data, [](const void*) {});
  try {
    const flux::GgufFile file = flux::GgufFile::parse(owner, data, size, "fuzz.gguf");
    volatile uint8_t sink = 0;
    for (const flux::GgufKV& kv : file.kv()) {
      sink = static_cast<uint8_t>(sink ^ kv.value.str(4).size());
      if (file.find_kv(kv.key) != &kv.value) __builtin_trap();  // the index must agree with the pairs
    }
    size_t total = 0;
    for (const flux::GgufTensorInfo& info : file.tensors()) {
      const flux::Tensor t = file.tensor(info);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = static_cast<uint8_t>(sink ^ p[i]);
      if (t.nbytes() != info.nbytes || info.offset % file.alignment() != file.data_offset() % file.alignment())
        __builtin_trap();
      total += t.nbytes();
      if (file.find(info.name) != &info) __builtin_trap();
    }
    if (total != file.data_bytes() || total > size) __builtin_trap();
  } catch (const flux::Error&) {
  }
  return 0;
}
