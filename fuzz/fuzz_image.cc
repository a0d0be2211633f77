// libFuzzer target: decode_image (PNG and JPEG, chosen by magic bytes) on arbitrary bytes, as an uploaded
// img2img picture would arrive. Any input must give either an image whose pixel buffer matches its size
// (each byte is read, so ASan flags a short buffer) or a flux::Error; a crash or another exception is a bug.
#include <cstddef>
#include <cstdint>

#include "base/error.h"
#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // An upload-sized cap (4 Mpx, as a server would set): a header claiming 64 Mpx would otherwise make each
    // run allocate 192 MB and the fuzzer would spend its time in the allocator.
    const flux::Image image = flux::decode_image(data, size, "fuzz.img", uint64_t{1} << 22);
    if (image.width <= 0 || image.height <= 0) __builtin_trap();
    if (image.pixels.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3)
      __builtin_trap();
    volatile uint8_t sink = 0;
    for (uint8_t v : image.pixels) sink = static_cast<uint8_t>(sink ^ v);
  } catch (const flux::Error&) {
  }
  return 0;
}
