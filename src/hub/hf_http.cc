#include "hub/hf_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <mutex>

#include "base/error.h"

namespace flux::hub {
namespace {

constexpr size_t kMaxCollected = size_t{64} << 20;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  const HttpCall* call;
  ResponseHead head;
  std::string body;
  std::exception_ptr error;  // thrown by a callback
  bool too_large = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  add_header_line(t->head, std::string_view(data, size * n));
  return size * n;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  try {
    if (t->call->on_body) {
      t->call->on_body(t->head, data, bytes);
    } else if (t->body.size() + bytes <= kMaxCollected) {
      t->body.append(data, bytes);
    } else {
      t->too_large = true;
      return 0;
    }
  } catch (...) {
    t->error = std::current_exception();
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  return bytes;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  try {
    if (t->call->on_tick) t->call->on_tick();
  } catch (...) {
    t->error = std::current_exception();
    return 1;  // aborts (CURLE_ABORTED_BY_CALLBACK)
  }
  return 0;
}

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~' || c == '/';
}

}  // namespace

std::string url_join(const std::string& endpoint, const std::string& path) {
  std::string url = endpoint;
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (path.empty() || path.front() != '/') url += '/';
  static const char* hex = "0123456789ABCDEF";
  for (char c : path) {
    if (unreserved(c)) {
      url += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      url += '%';
      url += hex[b >> 4];
      url += hex[b & 15];
    }
  }
  return url;
}

HttpResult http_perform(const HttpCall& call) {
  global_init();
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), &curl_easy_cleanup);
  FLUX_CHECK(curl != nullptr, call.url, ": libcurl could not start a transfer");
  Transfer t{&call, {}, {}, nullptr, false};
  curl_slist* list = nullptr;
  for (const std::string& h : call.headers) list = curl_slist_append(list, h.c_str());
  list = curl_slist_append(list, "Accept-Encoding: identity");  // sizes and hashes are of the stored bytes
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers(list, &curl_slist_free_all);
  char error[CURL_ERROR_SIZE] = "";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "fluxcpp");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_NOBODY, call.head_only ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, call.follow_redirects ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(call.connect_timeout_s * 1000));
  // Fails when fewer than 1 byte/s arrive for stall_timeout_s.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(call.stall_timeout_s)));
  if (call.total_timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(call.total_timeout_s * 1000));
  const std::string range = std::to_string(call.range_from) + "-";
  if (call.range_from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  const CURLcode code = curl_easy_perform(c);
  if (t.error) std::rethrow_exception(t.error);
  HttpResult r;
  r.head = std::move(t.head);
  r.body = std::move(t.body);
  r.ok = code == CURLE_OK;
  if (!r.ok) r.error = t.too_large ? "the answer is larger than 64 MiB" : (*error ? error : curl_easy_strerror(code));
  return r;
}

}  // namespace flux::hub
