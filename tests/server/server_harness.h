// For the server's end-to-end tests: runs the real `fluxcpp serve` on port 0 (reading the port it prints),
// a tiny blocking HTTP/1.1 client over plain sockets, and an SSE reader. Every wait has a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flux::test {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& lower_case_name) const {
    auto it = headers.find(lower_case_name);
    return it == headers.end() ? "" : it->second;
  }
};

// One request on a fresh connection (Connection: close). status 0 when the connection failed.
HttpResponse http_request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                          std::chrono::milliseconds timeout = std::chrono::seconds(300));
// A connected socket (fd), or -1.
int connect_local(int port);
// Writes all of `data`; false on error.
bool send_all(int fd, const std::string& data);
// True when the peer closed the connection (read returns 0 or an error) within the timeout.
bool wait_closed(int fd, std::chrono::milliseconds timeout);

struct SseEvent {
  std::string name;
  std::string data;
};

// GET or POST a streaming endpoint and read its events one by one.
class SseStream {
 public:
  SseStream(int port, const std::string& method, const std::string& path, const std::string& body = "");
  ~SseStream();
  int status() const { return status_; }
  // The next event, or nullopt at the end of the stream or when the timeout passes.
  std::optional<SseEvent> next(std::chrono::milliseconds timeout = std::chrono::seconds(300));
  void close();  // disconnect (the server sees the client leave)

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  int status_ = 0;
  std::string buffer_;
};

class ServerProcess {
 public:
  // Starts `fluxcpp serve ARGS --port 0` and waits for "listening on http://127.0.0.1:PORT".
  explicit ServerProcess(const std::vector<std::string>& args);
  ~ServerProcess();  // SIGTERM, then SIGKILL if it has not exited after 30 s
  int port() const { return port_; }
  pid_t pid() const { return pid_; }         // -1 once reaped
  bool running() const { return pid_ > 0; }  // started and not reaped yet
  // Sends SIGTERM and returns the exit code (128 + signal if killed by a signal, -1 on timeout).
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Sends `sig` without waiting (no-op once the process has been reaped).
  void send_signal(int sig);
  // Waits for the exit and returns the code as terminate() does; on timeout SIGKILLs the process and returns -1.
  int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Polls until /health reports status `status` (true) or the deadline passes.
  bool wait_status(const std::string& status, std::chrono::milliseconds timeout = std::chrono::seconds(300));
  std::string log() const;  // the server's stderr so far

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

// Polls `pred` until it holds or the deadline passes.
bool poll_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(30));
// A tiny test model (made once per process in a temp dir).
const std::string& tiny_model_dir();
// `serve`'s model arguments for the golden tiny weights (../shared/golden/weights: the transformer `model`,
// "flux1-schnell" or "flux1-dev", the VAE, CLIP-L, T5) with the real tokenizers, then --max-pixels 65536 and
// --threads `threads`; callers append their own.
std::vector<std::string> golden_server_args(const std::string& model = "flux1-schnell", int threads = 2);
std::string base64_decode(const std::string& s);

}  // namespace flux::test
