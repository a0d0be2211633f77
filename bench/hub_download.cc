// GET /health latency of `fluxcpp serve --allow-download` while it downloads a model by name from the mock hub
// on loopback (tests/hub/mock): one generated LFS file of --gib GiB (default 1), so the server's loader thread
// receives, hashes (sha256) and writes it at full speed on the same 2 cores. Prints p50 / p99 / max of /health over
// the download (goal: p99 < 2 ms) and the download's bytes/s as /health reports it and as measured end to end.
//
//   bench_hub_download [--gib N] [--interval-us N]
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
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "mock_hub.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

const std::string kCli = FLUX_BINARY_DIR "/src/cli/fluxcpp";

// `fluxcpp serve ARGS --port 0`; returns the pid and the port it prints on stdout.
std::pair<pid_t, int> spawn_server(const std::vector<std::string>& args) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {-1, 0};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/tmp/fluxcpp-bench-hub-server.log", O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> all = {kCli, "serve", "--port", "0"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, kCli.c_str(), &actions, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  std::string text;
  char buf[256];
  ssize_t n;
  while (text.find('\n') == std::string::npos && (n = read(out[0], buf, sizeof buf)) > 0)
    text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  const size_t colon = text.rfind(':');
  return {pid, colon == std::string::npos ? 0 : std::atoi(text.c_str() + colon + 1)};
}

// GET /health on one keep-alive connection; the body, or "" on failure.
class HealthClient {
 public:
  explicit HealthClient(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fd_ = -1;
    int one = 1;
    if (fd_ >= 0) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~HealthClient() {
    if (fd_ >= 0) close(fd_);
  }
  std::string get() {
    static const std::string req = "GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
    if (fd_ < 0 || send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return "";
    std::string data;
    char buf[16384];
    for (;;) {
      const size_t head = data.find("\r\n\r\n");
      if (head != std::string::npos) {
        const size_t cl = data.find("Content-Length: ");
        const size_t length = cl == std::string::npos ? 0 : std::stoul(data.substr(cl + 16));
        if (data.size() >= head + 4 + length) return data.substr(head + 4, length);
      }
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return "";
      data.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  double gib = 1;
  int interval_us = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--gib")
      gib = std::atof(argv[i + 1]);
    else if (a == "--interval-us")
      interval_us = std::atoi(argv[i + 1]);
  }
  const uint64_t size = static_cast<uint64_t>(gib * (1ull << 30));
  const std::string cache = "/tmp/fluxcpp-bench-hub-cache";
  fs::remove_all(cache);
  const std::string repo_dir = "/tmp/fluxcpp-bench-hub-repo";
  fs::create_directories(repo_dir);
  std::ofstream(repo_dir + "/README.md") << "bench\n";

  flux::test::MockHub hub;
  hub.add_repo("bench-org/FLUX.1-big", "fedcba9876543210fedcba9876543210fedcba98", repo_dir);
  std::printf("mock hub %s: hashing the %.2f GiB file ...\n", hub.endpoint().c_str(), size / double(1ull << 30));
  hub.add_generated_file("bench-org/FLUX.1-big", "flux1-big.safetensors", size);
  setenv("HF_ENDPOINT", hub.endpoint().c_str(), 1);
  setenv("HF_HUB_CACHE", cache.c_str(), 1);
  unsetenv("HF_HUB_OFFLINE");

  const auto t0 = Clock::now();
  auto [pid, port] = spawn_server({"--model", "bench-org/FLUX.1-big:flux1-big.safetensors", "--allow-download"});
  if (pid <= 0 || port == 0) {
    std::fprintf(stderr, "bench_hub_download: the server did not start (see /tmp/fluxcpp-bench-hub-server.log)\n");
    return 1;
  }
  HealthClient client(port);
  std::vector<double> ms;
  double reported_rate = 0;
  uint64_t last_done = 0;
  for (;;) {
    const auto a = Clock::now();
    const std::string body = client.get();
    const auto b = Clock::now();
    if (body.empty()) break;
    const auto j = nlohmann::json::parse(body, nullptr, false);
    const std::string status = j.is_object() ? j.value("status", "") : "";
    if (status != "downloading" && !ms.empty()) break;
    if (status == "downloading") {
      ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
      if (j.contains("download")) {
        reported_rate = std::max(reported_rate, j["download"].value("bytes_per_s", 0.0));
        last_done = j["download"].value("bytes_done", uint64_t{0});
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(interval_us));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  std::sort(ms.begin(), ms.end());
  if (ms.empty()) {
    std::fprintf(stderr, "bench_hub_download: no /health sample while downloading\n");
    return 1;
  }
  const auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  std::printf(
      "download of %.2f GiB: %.1f s end to end (%.0f MB/s), /health's highest bytes_per_s %.0f MB/s, "
      "last bytes_done %llu\n",
      size / double(1ull << 30), seconds, size / seconds / 1e6, reported_rate / 1e6,
      static_cast<unsigned long long>(last_done));
  std::printf("/health while downloading: n=%zu p50 %.3f ms  p99 %.3f ms  max %.3f ms  (goal p99 < 2 ms: %s)\n",
              ms.size(), pct(0.5), pct(0.99), ms.back(), pct(0.99) < 2.0 ? "met" : "MISSED");
  fs::remove_all(cache);
  return 0;
}
