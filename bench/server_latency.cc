// GET /health latency of `fluxcpp serve` (p50 / p99 / max over >= 1,000 keep-alive requests) on an idle
// server, while a large model loads, and while a generation keeps both cores busy; then the server's RSS
// before and after 200 sequential small jobs. Goal: p99 < 2 ms in every state; RSS does not grow.
//
//   bench_server_latency [--medium DIR] [--tiny DIR] [--requests N]
// Without --medium/--tiny the test models are written (once) under /tmp/fluxcpp-bench-*.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/test_model.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

const std::string kCli = FLUX_BINARY_DIR "/src/cli/fluxcpp";

struct Server {
  pid_t pid = -1;
  int port = 0;
};

Server start_server(const std::vector<std::string>& args) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/tmp/fluxcpp-bench-server.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_s = {kCli, "--log", "warn", "serve", "--port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  Server s;
  if (posix_spawn(&s.pid, kCli.c_str(), &actions, nullptr, argv.data(), environ) != 0) s.pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  std::string text;
  char buf[256];
  while (text.find('\n') == std::string::npos) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos) s.port = std::atoi(text.c_str() + colon + 1);
  return s;
}

int stop_server(Server& s) {
  if (s.pid <= 0) return -1;
  kill(s.pid, SIGTERM);
  int status = 0;
  waitpid(s.pid, &status, 0);
  s.pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// One keep-alive connection; request() returns the body (empty on failure).
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fd_ = -1;
    int one = 1;
    if (fd_ >= 0) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  std::string request(const std::string& method, const std::string& path, const std::string& body = "") {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: bench\r\n";
    if (!body.empty())
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    if (fd_ < 0 || send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return {};
    std::string data;
    char buf[65536];
    size_t head_end = std::string::npos, length = 0;
    for (;;) {
      if (head_end == std::string::npos) {
        head_end = data.find("\r\n\r\n");
        if (head_end != std::string::npos) {
          const size_t cl = data.find("Content-Length: ");
          length = cl == std::string::npos ? 0 : std::stoul(data.substr(cl + 16));
        }
      }
      if (head_end != std::string::npos && data.size() >= head_end + 4 + length) break;
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return {};
      data.append(buf, static_cast<size_t>(n));
    }
    return data.substr(head_end + 4, length);
  }

 private:
  int fd_ = -1;
};

struct Figures {
  size_t n = 0;
  double p50 = 0, p99 = 0, max = 0;
};

Figures summarize(std::vector<double> ms) {
  Figures f;
  f.n = ms.size();
  if (ms.empty()) return f;
  std::sort(ms.begin(), ms.end());
  f.p50 = ms[ms.size() / 2];
  f.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  f.max = ms.back();
  return f;
}

void print(const char* state, const Figures& f) {
  std::printf("  %-34s %6zu requests  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  %s\n", state, f.n, f.p50, f.p99, f.max,
              f.n >= 1000 && f.p99 < 2.0 ? "(goal met)"
              : f.n < 1000               ? "(too few samples)"
                                         : "(p99 >= 2 ms)");
}

// Times GET /health until `enough` samples or `keep_going(body)` is false.
std::vector<double> measure(Client& c, size_t enough, const std::function<bool(const std::string&)>& keep_going) {
  std::vector<double> ms;
  for (;;) {
    const auto t0 = Clock::now();
    const std::string body = c.request("GET", "/health");
    const double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (body.empty() || !keep_going(body)) break;
    ms.push_back(dt);
    if (ms.size() >= enough) break;
  }
  return ms;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

std::string ensure_model(std::string dir, flux::TestModelSize size, const char* name) {
  if (dir.empty()) dir = std::string("/tmp/fluxcpp-bench-") + name;
  if (!fs::exists(fs::path(dir) / "model_index.json")) {
    std::printf("writing the %s test model to %s ...\n", name, dir.c_str());
    std::fflush(stdout);
    flux::TestModelOptions o;
    o.size = size;
    o.tokenizers = FLUX_SHARED_DIR "/tokenizers";
    flux::make_test_model(dir, o);
  }
  return dir;
}

bool has(const std::string& body, const std::string& what) { return body.find(what) != std::string::npos; }

}  // namespace

int main(int argc, char** argv) {
  std::string medium, tiny;
  size_t requests = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--medium") medium = argv[i + 1];
    if (a == "--tiny") tiny = argv[i + 1];
    if (a == "--requests") requests = std::stoul(argv[i + 1]);
  }
  medium = ensure_model(medium, flux::TestModelSize::medium, "medium");
  tiny = ensure_model(tiny, flux::TestModelSize::tiny, "tiny");
  uint64_t model_bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(medium))
    if (e.is_regular_file()) model_bytes += e.file_size();
  std::printf("GET /health latency (keep-alive, %zu requests per state), fluxcpp serve --threads 2\n", requests);

  // (a) While the medium model loads: restart until enough samples were taken during loading. As root, the
  // page cache is dropped before each start so the weights come from the disk (a cold load), not memory.
  std::vector<double> loading;
  int cold_loads = 0;
  for (int attempt = 0; attempt < 20 && loading.size() < requests; ++attempt) {
    if (std::FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w")) {
      ::sync();
      cold_loads += std::fputs("1", f) >= 0 && std::fclose(f) == 0;
    }
    Server s = start_server({"--model", medium, "--threads", "2"});
    Client c(s.port);
    auto part = measure(c, requests - loading.size(), [](const std::string& b) { return has(b, "\"loading\""); });
    loading.insert(loading.end(), part.begin(), part.end());
    stop_server(s);
  }

  Server s = start_server({"--model", medium, "--threads", "2", "--max-pixels", "1048576"});
  Client c(s.port);
  const auto t_load = Clock::now();
  while (!has(c.request("GET", "/health"), "\"ready\"")) {
    if (s.port == 0) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  const auto idle = measure(c, requests, [](const std::string&) { return true; });

  // (b) While a generation runs on both cores.
  Client submitter(s.port);
  submitter.request("POST", "/v1/jobs", R"({"prompt": "busy", "size": "256x256", "steps": 12})");
  while (!has(c.request("GET", "/health"), "\"running\":true"))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t_job = Clock::now();
  const auto busy = measure(c, requests * 5000, [](const std::string& b) { return has(b, "\"running\":true"); });
  const double job_s = std::chrono::duration<double>(Clock::now() - t_job).count();
  stop_server(s);

  std::printf(
      "medium model: %.2f GiB on disk; %d loading run(s) started with a dropped page cache (cold); "
      "the last load, from the page cache, took %.1f s\n",
      static_cast<double>(model_bytes) / (1 << 30), cold_loads, load_s);
  print("idle", summarize(idle));
  print("while loading the medium model", summarize(loading));
  print("while a 256x256 12-step job runs", summarize(busy));
  std::printf("  (the job ran %.1f s while measuring)\n", job_s);

  // RSS before / after 200 sequential small jobs (tiny model, results expire after 1 s).
  Server t = start_server({"--model", tiny, "--threads", "2", "--result-ttl", "1"});
  Client tc(t.port);
  while (!has(tc.request("GET", "/health"), "\"ready\"")) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const std::string job = R"({"prompt": "a small job", "size": "64x64", "steps": 1, "seed": 1})";
  // A generation answer closes its connection: one connection per job.
  auto generate = [&] { return Client(t.port).request("POST", "/v1/images/generations", job); };
  for (int i = 0; i < 10; ++i) generate();  // first-use allocations
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const long before = rss_kib(t.pid);
  int ok = 0;
  for (int i = 0; i < 200; ++i) ok += has(generate(), "b64_json");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // let the results expire
  const long after = rss_kib(t.pid);
  const int code = stop_server(t);
  std::printf("RSS: %.1f MiB before, %.1f MiB after 200 sequential 64x64 jobs (%d ok), growth %+.1f MiB; exit %d\n",
              before / 1024.0, after / 1024.0, ok, (after - before) / 1024.0, code);
  return 0;
}
