// One HTTP request through libcurl (hub-internal): head and body handed to callbacks, every phase bounded by a
// timeout, and a tick at least once a second so a caller can stop a stalled transfer. Exceptions thrown by the
// callbacks abort the transfer and are rethrown by http_perform on the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hub/hub_protocol.h"

namespace flux::hub {

struct HttpCall {
  std::string url;
  bool head_only = false;  // HEAD
  bool follow_redirects = false;
  std::vector<std::string> headers;  // "Name: value"
  uint64_t range_from = 0;           // > 0: "Range: bytes=N-"
  double connect_timeout_s = 10;
  double stall_timeout_s = 30;  // fails when no byte arrives for this long
  double total_timeout_s = 0;   // 0: no limit (downloads), else the whole request
  // Body bytes, with the response head as received so far (status known). Without it the body is collected
  // into HttpResult::body (at most 64 MiB).
  std::function<void(const ResponseHead&, const char*, size_t)> on_body;
  std::function<void()> on_tick;  // at least once a second while the transfer runs
};

struct HttpResult {
  ResponseHead head;  // the last response's head
  std::string body;   // without on_body
  bool ok = false;    // the transfer completed (whatever the status)
  std::string error;  // libcurl's message when !ok
};

HttpResult http_perform(const HttpCall& call);

// "ENDPOINT" + "/path" with the path's segments percent-encoded where needed ('/' kept).
std::string url_join(const std::string& endpoint, const std::string& path);

}  // namespace flux::hub
