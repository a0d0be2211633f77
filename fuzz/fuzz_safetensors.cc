// libFuzzer target: SafetensorsFile::parse on arbitrary bytes. Any input must give either a valid file whose
// every tensor view lies inside the input (each byte is read, so ASan flags a view out of bounds) or a
// flux::Error; anything else (a crash, another exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // libFuzzer's buffer is a heap copy of exactly `size` bytes; the owner does not free it.
  std::shared_ptr<const void> owner(data, [](const void*) {});
  try {
    const flux::SafetensorsFile file = flux::SafetensorsFile::parse(owner, data, size, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    size_t total = 0;
    for (const flux::SafetensorsEntry& entry : file.entries()) {
      const flux::Tensor t = file.tensor(entry);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = static_cast<uint8_t>(sink ^ p[i]);
      total += t.nbytes();
      if (file.find(entry.name) != &entry) __builtin_trap();  // the index must agree with the entries
    }
    if (total != file.data_bytes() || total > size) __builtin_trap();
  } catch (const flux::Error&) {
  }
  return 0;
}
