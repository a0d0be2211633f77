// libFuzzer target: what crosses Redis between the cluster roles (cluster/job_codec.h) and the --queue URL
// (cluster/redis.h). A job entry's request JSON, an event entry's field/value pairs (the input split at NUL bytes)
// and a Redis URL must be parsed or refused with flux::Error, never crash or hang; a request that parses must
// survive its own round trip (request_to_json then request_from_json gives the same JSON).
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
  try {
    const GenerateRequest r = request_from_json(text);
    const std::string once = request_to_json(r);
    if (request_to_json(request_from_json(once)) != once) __builtin_trap();  // not a fixed point
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
