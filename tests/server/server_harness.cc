#include "server_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "base/thread_pool.h"
#include "pipeline/test_model.h"
#include "test_util.h"

extern char** environ;

namespace flux::test {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(ms);
}

// Reads what is available (waiting up to the deadline); 0 at end of stream, -1 on timeout or error.
ssize_t read_some(int fd, std::string& out, Clock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return -1;
  char buf[65536];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) out.append(buf, static_cast<size_t>(n));
  return n;
}

// Parses "HTTP/1.1 200 OK\r\nName: value\r\n...\r\n\r\n" from the front of `raw`; returns the header size.
size_t parse_head(const std::string& raw, HttpResponse& r) {
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  std::istringstream in(raw.substr(0, end));
  std::string line;
  std::getline(in, line);
  if (line.size() > 12) r.status = std::stoi(line.substr(9, 3));
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r.headers[name] = line.substr(v);
  }
  return end + 4;
}

}  // namespace

int connect_local(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool wait_closed(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string sink;
  while (Clock::now() < deadline) {
    const ssize_t n = read_some(fd, sink, deadline);
    if (n == 0) return true;
    if (n < 0 && Clock::now() < deadline) return true;  // reset
  }
  return false;
}

static std::string request_text(const std::string& method, const std::string& path, const std::string& body) {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return req + "\r\n" + body;
}

HttpResponse http_request(int port, const std::string& method, const std::string& path, const std::string& body,
                          std::chrono::milliseconds timeout) {
  HttpResponse r;
  const int fd = connect_local(port);
  if (fd < 0) return r;
  const auto deadline = Clock::now() + timeout;
  std::string raw;
  if (send_all(fd, request_text(method, path, body))) {
    while (read_some(fd, raw, deadline) > 0) {
    }
  } else {
    // The server may answer (e.g. 413) and close before reading everything we send.
    while (read_some(fd, raw, deadline) > 0) {
    }
  }
  ::close(fd);
  const size_t head = parse_head(raw, r);
  if (head) r.body = raw.substr(head);
  return r;
}

SseStream::SseStream(int port, const std::string& method, const std::string& path, const std::string& body) {
  fd_ = connect_local(port);
  if (fd_ < 0 || !send_all(fd_, request_text(method, path, body))) return;
  const auto deadline = Clock::now() + std::chrono::seconds(300);
  HttpResponse head;
  size_t n = 0;
  while ((n = parse_head(buffer_, head)) == 0)
    if (read_some(fd_, buffer_, deadline) <= 0) return;
  status_ = head.status;
  buffer_.erase(0, n);
}

SseStream::~SseStream() { close(); }

void SseStream::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::optional<SseEvent> SseStream::next(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const size_t end = buffer_.find("\n\n");
    if (end != std::string::npos) {
      const std::string block = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      SseEvent e;
      std::istringstream in(block);
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
        if (line.rfind("data: ", 0) == 0) e.data += line.substr(6);
      }
      if (e.name.empty() && e.data.empty()) continue;  // a comment (keep-alive)
      return e;
    }
    if (fd_ < 0 || read_some(fd_, buffer_, deadline) <= 0) return std::nullopt;
  }
}

ServerProcess::ServerProcess(const std::vector<std::string>& args) {
  const std::string dir = temp_dir("server");
  log_path_ = dir + "/stderr.log";
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_s = {FLUX_CLI_PATH, "serve", "--port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  // FLUX_TEST_THREADS overrides every test server's compute threads (scripts/sanitize.sh sets 1 under
  // ThreadSanitizer: the kernel pool's OpenMP runtime is not instrumented, so its hand-offs would read as races).
  if (const char* threads = std::getenv("FLUX_TEST_THREADS")) {
    const auto at = std::find(argv_s.begin(), argv_s.end(), "--threads");
    if (at != argv_s.end() && at + 1 != argv_s.end()) {
      *(at + 1) = threads;
    } else {
      argv_s.insert(argv_s.end(), {"--threads", threads});
    }
  }
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, FLUX_CLI_PATH, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    pid_ = -1;
    ::close(out[0]);
    return;
  }
  std::string text;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (text.find('\n') == std::string::npos && read_some(out[0], text, deadline) > 0) {
  }
  ::close(out[0]);
  const std::string prefix = "listening on http://127.0.0.1:";
  const size_t at = text.find(prefix);
  if (at != std::string::npos) port_ = std::atoi(text.c_str() + at + prefix.size());
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) terminate();
}

int ServerProcess::terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  send_signal(SIGTERM);
  return wait_exit(timeout);
}

void ServerProcess::send_signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int ServerProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (Clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool ServerProcess::wait_status(const std::string& status, std::chrono::milliseconds timeout) {
  return poll_until(
      [&] {
        const HttpResponse r = http_request(port_, "GET", "/health");
        return r.status == 200 && r.body.find("\"status\":\"" + status + "\"") != std::string::npos;
      },
      timeout);
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool poll_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

const std::string& tiny_model_dir() {
  static const std::string dir = [] {
    const std::string d = temp_dir("server-model");
    // FLUX_TEST_THREADS (1 under ThreadSanitizer, scripts/sanitize.sh) also holds for the in-process writer: its
    // parallel_for runs on OpenMP threads, whose hand-offs TSan cannot see.
    if (const char* threads = std::getenv("FLUX_TEST_THREADS")) set_default_threads(std::atoi(threads));
    TestModelOptions o;
    o.tokenizers = tokenizer_dir();
    make_test_model(d, o);
    return d;
  }();
  return dir;
}

std::string base64_decode(const std::string& s) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    const size_t v = alphabet.find(c);
    if (v == std::string::npos) return {};
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::vector<std::string> golden_server_args(const std::string& model, int threads) {
  const std::string w = golden_dir() + "/weights/";
  return {"--diffusion-model",
          w + model + ".safetensors",
          "--vae",
          w + "ae.safetensors",
          "--clip-l",
          w + "clip_l.safetensors",
          "--t5xxl",
          w + "t5xxl.safetensors",
          "--tokenizers",
          tokenizer_dir(),
          "--max-pixels",
          "65536",
          "--threads",
          std::to_string(threads)};
}

}  // namespace flux::test
