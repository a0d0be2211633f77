// libFuzzer target: what crosses Redis between the cluster roles (cluster/job_codec.h) and the --queue URL
// (cluster/redis.h). A job entry (request JSON, init image PNG, noise bytes), an event entry's field/value pairs
// (the input split at NUL bytes) and a Redis URL must be parsed or refused with flux::Error, never crash or hang; a
// request that parses must survive its own round trip (encode_request then decode_request gives the same fields).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"
#include "cluster/job_codec.h"
#include "cluster/redis.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flux;
  using namespace flux::cluster;
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A job entry: the request JSON up to the first NUL, then a 4-byte little-endian length and that many bytes of
  // init image (PNG), then the noise bytes.
  JobPayload payload;
  {
    const size_t a = std::min(text.find('\0'), text.size());
    payload.request = text.substr(0, a);
    if (a + 5 <= text.size()) {
      uint32_t n = 0;
      for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<uint8_t>(text[a + 1 + i])) << (8 * i);
      const size_t start = a + 5, length = std::min<size_t>(n, text.size() - start);
      payload.image = text.substr(start, length);
      payload.noise = text.substr(start + length);
    }
  }
  try {
    const GenerateRequest r = decode_request(payload, 256 * 256);
    const JobPayload once = encode_request(r, "");
    const JobPayload twice = encode_request(decode_request(once, 256 * 256), "");
    if (twice.request != once.request || twice.image != once.image || twice.noise != once.noise)
      __builtin_trap();  // not a fixed point
  } catch (const Error&) {
  }
  try {
    RedisUrl::parse(text);
  } catch (const Error&) {
  }
  Reply fields;
  fields.type = Reply::Type::array;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('\0', start), text.size());
    Reply v;
    v.type = Reply::Type::string;
    v.str = text.substr(start, end - start);
    fields.elements.push_back(std::move(v));
    start = end + 1;
  }
  try {
    std::string worker;
    const JobEvent e = event_from_fields(fields, "job-1", &worker);
    is_terminal_fields(fields);
    event_fields(e, worker);
  } catch (const Error&) {
  }
  return 0;
}
