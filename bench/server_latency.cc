// GET /health latency of `fluxcpp serve` (p50 / p99 / max over >= 1,000 keep-alive requests) on an idle
// server, while a large model loads, and while a generation keeps both cores busy; then the server's RSS
// before and after 200 sequential small jobs. Goal: p99 < 2 ms in every state; RSS does not grow.
//
//   bench_server_latency [--medium DIR] [--tiny DIR] [--requests N]
// Without --medium/--tiny the test models are written (once) under /tmp/fluxcpp-bench-*.
//
//   bench_server_latency --model DIR [--requests N] [--size WxH] [--steps N] [--no-warmup] [--cold]
//                        [--log LEVEL] [--interval-us N] [--client-slice-us N] [--client-rt] [-- SERVE_ARGS...]
// Full-size mode (e.g. a make-test-model --size full set; SERVE_ARGS such as --memory-budget 15G): /health
// while the model loads (with serve --warmup, the warm-up generation that first touches the weights counts as
// loading), idle, during a first job (default 512x512, 4 steps) and during a second job (another prompt and
// seed), and the jobs' timings from their events: time to the first denoising step (text encoding plus any
// re-binding: what a job "loads") and the step times. Every /health sample also records the server's I/O
// thread counters (/proc/PID/task/PID: run-queue wait, CPU time, page faults, context switches) and this
// client's own run-queue wait, so a slow answer is attributed, not guessed; --cold drops the page cache
// first (root only).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
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

const char* const kServerLog = "/tmp/fluxcpp-bench-server.log";

Server start_server(const std::vector<std::string>& args, const std::string& log_level = "warn") {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, kServerLog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_s = {kCli, "--log", log_level, "serve", "--port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // A session of its own, as a server started by systemd or from its own terminal has: with autogroups
  // (CONFIG_SCHED_AUTOGROUP) the kernel then shares the CPUs fairly between the server and this client first,
  // instead of scheduling the client as one more thread of the server's group.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  Server s;
  if (posix_spawn(&s.pid, kCli.c_str(), &actions, &attr, argv.data(), environ) != 0) s.pid = -1;
  posix_spawnattr_destroy(&attr);
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

// ---- Full-size mode: per-request attribution of the latency ----

// One thread's counters from /proc/PID/task/TID: schedstat (ns on a CPU, ns waiting on a run queue), stat
// (minor and major page faults), status (voluntary and involuntary context switches). The files stay open and
// are re-read with pread at offset 0 (each read regenerates the text).
struct TaskCounters {
  uint64_t run_ns = 0, wait_ns = 0, minflt = 0, majflt = 0, nvcsw = 0, nivcsw = 0;
  TaskCounters operator-(const TaskCounters& o) const {
    return {run_ns - o.run_ns, wait_ns - o.wait_ns, minflt - o.minflt,
            majflt - o.majflt, nvcsw - o.nvcsw,     nivcsw - o.nivcsw};
  }
};

// Field `n` (1-based, as in proc(5)) of a /proc/.../stat line.
std::string stat_field(const std::string& line, int n) {
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream in(line.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= n && in >> field; ++i) {
  }
  return field;
}

uint64_t status_value(const std::string& text, const std::string& key) {
  const size_t at = text.find(key + ":");
  return at == std::string::npos ? 0 : std::strtoull(text.c_str() + at + key.size() + 1, nullptr, 10);
}

class TaskProbe {
 public:
  TaskProbe(pid_t pid, pid_t tid) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/";
    sched_ = open((dir + "schedstat").c_str(), O_RDONLY | O_CLOEXEC);
    stat_ = open((dir + "stat").c_str(), O_RDONLY | O_CLOEXEC);
    status_ = open((dir + "status").c_str(), O_RDONLY | O_CLOEXEC);
  }
  ~TaskProbe() {
    for (int fd : {sched_, stat_, status_})
      if (fd >= 0) close(fd);
  }
  TaskProbe(const TaskProbe&) = delete;
  TaskProbe& operator=(const TaskProbe&) = delete;
  bool ok() const { return sched_ >= 0 && stat_ >= 0 && status_ >= 0; }

  TaskCounters read() const {
    TaskCounters c;
    std::string text = slurp(sched_);
    std::sscanf(text.c_str(), "%lu %lu", &c.run_ns, &c.wait_ns);
    text = slurp(stat_);
    c.minflt = std::strtoull(stat_field(text, 10).c_str(), nullptr, 10);
    c.majflt = std::strtoull(stat_field(text, 12).c_str(), nullptr, 10);
    text = slurp(status_);
    c.nvcsw = status_value(text, "voluntary_ctxt_switches");
    c.nivcsw = status_value(text, "nonvoluntary_ctxt_switches");
    return c;
  }

 private:
  static std::string slurp(int fd) {
    char buf[4096];
    const ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  int sched_ = -1, stat_ = -1, status_ = -1;
};

// The server's other threads (loader, compute worker, OpenMP team), re-listed when asked.
class OtherThreads {
 public:
  OtherThreads(pid_t pid, pid_t io_tid) : pid_(pid), io_tid_(io_tid) { refresh(); }
  void refresh() {
    probes_.clear();
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
      const pid_t tid = std::atoi(e.path().filename().c_str());
      if (tid != io_tid_) probes_.push_back(std::make_unique<TaskProbe>(pid_, tid));
    }
  }
  TaskCounters read() const {  // summed
    TaskCounters sum;
    for (const auto& p : probes_) {
      const TaskCounters c = p->read();
      sum.run_ns += c.run_ns, sum.wait_ns += c.wait_ns, sum.minflt += c.minflt, sum.majflt += c.majflt;
      sum.nvcsw += c.nvcsw, sum.nivcsw += c.nivcsw;
    }
    return sum;
  }

 private:
  pid_t pid_, io_tid_;
  std::vector<std::unique_ptr<TaskProbe>> probes_;
};

// The machine's CPU time by kind (/proc/stat "cpu" line, in USER_HZ ticks of 10 ms: coarse, but a stall of
// 10+ ms shows who had the CPUs: user (nice 0 processes), nice (our compute threads), system, steal (the
// hypervisor ran another guest on our vCPU)).
struct CpuTicks {
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  CpuTicks operator-(const CpuTicks& o) const {
    return {user - o.user,     nice - o.nice, system - o.system,   idle - o.idle,
            iowait - o.iowait, irq - o.irq,   softirq - o.softirq, steal - o.steal};
  }
};

class CpuProbe {
 public:
  CpuProbe() : fd_(open("/proc/stat", O_RDONLY | O_CLOEXEC)) {}
  ~CpuProbe() {
    if (fd_ >= 0) close(fd_);
  }
  CpuProbe(const CpuProbe&) = delete;
  CpuProbe& operator=(const CpuProbe&) = delete;
  CpuTicks read() const {
    char buf[512];
    const ssize_t n = fd_ < 0 ? -1 : pread(fd_, buf, sizeof buf - 1, 0);
    CpuTicks t;
    if (n <= 0) return t;
    buf[n] = 0;
    std::sscanf(buf, "cpu %lu %lu %lu %lu %lu %lu %lu %lu", &t.user, &t.nice, &t.system, &t.idle, &t.iowait, &t.irq,
                &t.softirq, &t.steal);
    return t;
  }

 private:
  int fd_ = -1;
};

// One timed GET /health with what the server's I/O thread, its other threads and this client did meanwhile.
struct Sample {
  CpuTicks machine;  // the whole machine over the same span
  double ms = 0;
  TaskCounters server;          // the server's I/O thread, from just before the request to just after the answer
  TaskCounters others;          // the server's other threads, summed, over the same span
  uint64_t client_wait_ns = 0;  // this thread's run-queue wait over the same span
};

std::vector<double> latencies(const std::vector<Sample>& samples) {
  std::vector<double> ms;
  ms.reserve(samples.size());
  for (const auto& s : samples) ms.push_back(s.ms);
  return ms;
}

// Times GET /health (keep-alive) until `enough` samples, or until `keep_going(body)` is false.
// `interval` apart (a paced client: the server's I/O thread sleeps between requests and must be woken, as by a
// monitor or a browser polling; back to back, the client and the I/O thread would each keep a core busy).
std::vector<Sample> measure_attributed(Client& c, const TaskProbe& server, OtherThreads& others, const TaskProbe& self,
                                       const CpuProbe& cpu, size_t enough, std::chrono::microseconds interval,
                                       const std::function<bool(const std::string&)>& keep_going) {
  std::vector<Sample> out;
  auto listed = Clock::now();
  for (;;) {
    if (interval.count() > 0) std::this_thread::sleep_for(interval);
    if (Clock::now() - listed > std::chrono::seconds(1)) {  // threads come and go (the OpenMP team of a job)
      others.refresh();
      listed = Clock::now();
    }
    Sample s;
    const CpuTicks m0 = cpu.read();
    const TaskCounters o0 = others.read(), s0 = server.read(), c0 = self.read();
    const auto t0 = Clock::now();
    const std::string body = c.request("GET", "/health");
    const auto t1 = Clock::now();
    s.server = server.read() - s0;
    s.others = others.read() - o0;
    s.machine = cpu.read() - m0;
    s.client_wait_ns = (self.read() - c0).wait_ns;
    s.ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    if (body.empty() || !keep_going(body)) break;
    out.push_back(s);
    if (out.size() >= enough) break;
  }
  return out;
}

// Where the time of the slow answers went: for the requests over `slow_ms`, the mean of each counter, and how
// many of them had a run-queue wait of the server's I/O thread over half their latency, a page fault, a block
// (voluntary switch: a lock or I/O), a preemption, or a client-side wait over half their latency.
void explain(const char* state, const std::vector<Sample>& samples, double slow_ms = 1.0) {
  size_t n = 0, waited = 0, faulted = 0, major = 0, blocked = 0, preempted = 0, client_waited = 0;
  double ms = 0, wait = 0, run = 0, cwait = 0, minflt = 0;
  double all_run = 0, all_minflt = 0;
  for (const auto& s : samples) {
    all_run += s.server.run_ns / 1e6;
    all_minflt += static_cast<double>(s.server.minflt);
    if (s.ms <= slow_ms) continue;
    ++n;
    ms += s.ms;
    wait += s.server.wait_ns / 1e6;
    run += s.server.run_ns / 1e6;
    cwait += s.client_wait_ns / 1e6;
    minflt += static_cast<double>(s.server.minflt);
    waited += s.server.wait_ns / 1e6 > s.ms / 2;
    faulted += s.server.minflt + s.server.majflt > 0;
    major += s.server.majflt > 0;
    blocked += s.server.nvcsw > 1;  // 1: the wait for the request itself (epoll)
    preempted += s.server.nivcsw > 0;
    client_waited += s.client_wait_ns / 1e6 > s.ms / 2;
  }
  const double k = samples.empty() ? 1 : static_cast<double>(samples.size());
  std::printf("    %-32s all: server CPU %.3f ms, %.2f minor faults per request\n", state, all_run / k, all_minflt / k);
  if (n == 0) {
    std::printf("    %-32s no request over %.1f ms\n", "", slow_ms);
    return;
  }
  const double m = static_cast<double>(n);
  std::printf(
      "    %-32s %zu over %.1f ms (mean %.2f ms): server I/O thread run-queue wait %.2f ms, on CPU %.3f ms, "
      "%.1f minor faults; client run-queue wait %.2f ms\n",
      "", n, slow_ms, ms / m, wait / m, run / m, minflt / m, cwait / m);
  std::printf(
      "    %-32s of those: %zu server wait > half, %zu faulted (%zu major), %zu blocked, %zu preempted, "
      "%zu client wait > half\n",
      "", waited, faulted, major, blocked, preempted, client_waited);
  // The five slowest once this client's own wait for a core is taken out (what the server can be blamed for).
  std::vector<const Sample*> worst;
  for (const auto& s : samples) worst.push_back(&s);
  const size_t k_worst = std::min<size_t>(5, worst.size());
  auto server_side = [](const Sample* s) { return s->ms - s->client_wait_ns / 1e6; };
  std::partial_sort(worst.begin(), worst.begin() + static_cast<std::ptrdiff_t>(k_worst), worst.end(),
                    [&](const Sample* a, const Sample* b) { return server_side(a) > server_side(b); });
  std::printf("    %-32s slowest without the client's wait:\n", "");
  for (size_t i = 0; i < k_worst; ++i) {
    const Sample& w = *worst[i];
    std::printf(
        "      %7.3f ms: I/O thread wait %.3f run %.3f ms, faults %lu+%lu, switches %lu vol %lu invol | other threads "
        "run %.3f wait %.3f ms, faults %lu+%lu | client wait %.3f ms | machine ticks user %lu nice %lu sys %lu "
        "idle %lu iowait %lu irq+softirq %lu steal %lu\n",
        w.ms, w.server.wait_ns / 1e6, w.server.run_ns / 1e6, w.server.minflt, w.server.majflt, w.server.nvcsw,
        w.server.nivcsw, w.others.run_ns / 1e6, w.others.wait_ns / 1e6, w.others.minflt, w.others.majflt,
        w.client_wait_ns / 1e6, w.machine.user, w.machine.nice, w.machine.system, w.machine.idle, w.machine.iowait,
        w.machine.irq + w.machine.softirq, w.machine.steal);
  }
}

// Every thread of `pid`: name, nice, policy (0 other, 3 batch, 5 idle), CPU seconds.
void print_threads(pid_t pid, const char* when) {
  std::printf("  server threads %s:\n", when);
  const long hz = sysconf(_SC_CLK_TCK);
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    const size_t open_paren = line.find('('), close_paren = line.rfind(')');
    if (open_paren == std::string::npos || close_paren == std::string::npos) continue;
    const std::string name = line.substr(open_paren + 1, close_paren - open_paren - 1);
    const double cpu_s =
        static_cast<double>(std::stoull(stat_field(line, 14)) + std::stoull(stat_field(line, 15))) / hz;
    std::printf("    tid %-8s %-16s nice %3s policy %s  cpu %8.1f s\n", e.path().filename().c_str(), name.c_str(),
                stat_field(line, 19).c_str(), stat_field(line, 41).c_str(), cpu_s);
  }
}

// The events of one job, read on a thread of their own: (stage, step, server-side elapsed s).
struct JobEvents {
  struct Step {
    std::string stage;
    int step = 0;
    double elapsed = 0;
  };
  std::vector<Step> steps;
  nlohmann::json completed;
  std::string terminal;
};

JobEvents follow_job(int port, const std::string& id) {
  JobEvents out;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return out;
  }
  const std::string req = "GET /v1/jobs/" + id + "/events HTTP/1.1\r\nHost: bench\r\n\r\n";
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string data;
  char buf[65536];
  size_t pos = 0;
  for (;;) {
    const size_t end = data.find("\n\n", pos);
    if (end == std::string::npos) {
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      data.append(buf, static_cast<size_t>(n));
      continue;
    }
    const std::string block = data.substr(pos, end - pos);
    pos = end + 2;
    const size_t d = block.find("data: ");
    if (d == std::string::npos) continue;
    const auto j = nlohmann::json::parse(block.substr(d + 6), nullptr, false);
    if (j.is_discarded()) continue;
    const std::string type = j.value("type", "");
    if (type == "step") out.steps.push_back({j.value("stage", ""), j.value("step", 0), j.value("elapsed", 0.0)});
    if (type == "completed" || type == "failed" || type == "cancelled") {
      out.terminal = type;
      out.completed = j;
      break;
    }
  }
  close(fd);
  return out;
}

void print_job(const char* name, const JobEvents& e) {
  double denoise_start = -1, first_step = -1, last_step = -1;
  int n_steps = 0;
  for (const auto& s : e.steps) {
    if (s.stage != "denoise") continue;
    if (s.step == 0) denoise_start = s.elapsed;
    if (s.step == 1) first_step = s.elapsed;
    if (s.step > 0) {
      last_step = s.elapsed;
      n_steps = s.step;
    }
  }
  std::printf("  %s: %s", name, e.terminal.empty() ? "no terminal event" : e.terminal.c_str());
  if (e.completed.contains("timings")) {
    const auto& t = e.completed["timings"];
    std::printf("; encode_text %.2f s, denoise %.2f s, decode %.2f s, total %.2f s", t.value("encode_text", 0.0),
                t.value("denoise", 0.0), t.value("decode", 0.0), t.value("total", 0.0));
  }
  std::printf("\n    to the first denoising step (text encoding + re-binding: its load) %.2f s; first step %.2f s",
              denoise_start, first_step - denoise_start);
  if (n_steps > 1) std::printf(", later steps %.2f s each", (last_step - first_step) / (n_steps - 1));
  std::printf("\n");
}

std::string memory_of(const std::string& health) {
  const auto j = nlohmann::json::parse(health, nullptr, false);
  if (j.is_discarded() || !j.contains("memory")) return "(no memory plan)";
  const auto& m = j["memory"];
  std::string resident;
  for (const auto& r : m.value("resident", nlohmann::json::array()))
    resident += (resident.empty() ? "" : ", ") + r.get<std::string>();
  return "plan " + m.value("plan", std::string()) + ", weights " + m.value("weights", std::string()) + ", resident [" +
         resident + "]";
}

void print_attributed(const char* state, const std::vector<Sample>& samples) {
  print(state, summarize(latencies(samples)));
  explain("", samples);
}

// Lines of the server's log that say what a job re-bound, and the slowest handled requests.
void print_log_summary() {
  std::ifstream in(kServerLog);
  std::string line;
  std::vector<std::pair<double, std::string>> slow;
  while (std::getline(in, line)) {
    if (line.find("re-bound") != std::string::npos || line.find("dropped") != std::string::npos ||
        line.find("plan ") != std::string::npos || line.find("completed") != std::string::npos)
      std::printf("    log: %s\n", line.c_str());
    const size_t at = line.find(" GET /health 200 ");
    if (at != std::string::npos) slow.emplace_back(std::atof(line.c_str() + at + 17), line);
  }
  std::sort(slow.begin(), slow.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  if (!slow.empty())
    std::printf("    server-side handling of /health (log): %zu logged, slowest %.3f ms\n", slow.size(),
                slow.front().first);
}

// Asks the kernel (Linux >= 6.12, EEVDF) for a short time slice for the calling thread, as serve does for its
// I/O thread: a woken thread with a shorter slice than the running one preempts it at once. A remote client does
// not share the server's cores; this one does, and would otherwise wait for a core like the server did.
bool shorten_own_slice(std::chrono::microseconds slice) {
  struct {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
  } attr{};
  attr.size = sizeof attr;
  if (syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0) return false;
  attr.size = sizeof attr;
  attr.flags = 0;
  attr.runtime = static_cast<uint64_t>(slice.count()) * 1000;
  return syscall(SYS_sched_setattr, 0, &attr, 0) == 0;
}

struct FullOptions {
  std::string model;
  std::vector<std::string> serve_args;
  size_t requests = 1000;
  std::string size = "512x512";
  int steps = 4;
  bool warmup = true;
  bool cold = false;
  std::string log_level = "info";
  std::chrono::microseconds interval{1000};   // between /health requests
  std::chrono::microseconds client_slice{0};  // 0: the kernel's default
  bool client_rt = false;                     // the client thread at SCHED_FIFO 1 (root or CAP_SYS_NICE)
};

int run_full(const FullOptions& o) {
  uint64_t model_bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(o.model))
    if (e.is_regular_file()) model_bytes += e.file_size();
  std::printf("GET /health latency against %s (%.2f GiB), keep-alive, one request every %.2f ms\n", o.model.c_str(),
              static_cast<double>(model_bytes) / (1 << 30), static_cast<double>(o.interval.count()) / 1000);
  if (o.cold) {
    ::sync();
    std::FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
    const bool dropped = f && std::fputs("1", f) >= 0 && std::fclose(f) == 0;
    std::printf("page cache %s\n", dropped ? "dropped (cold load)" : "NOT dropped (not root?)");
  }
  std::vector<std::string> args = {"--model", o.model, "--max-pixels", "1048576"};
  if (o.warmup) args.push_back("--warmup");
  args.insert(args.end(), o.serve_args.begin(), o.serve_args.end());
  std::string command = "fluxcpp --log " + o.log_level + " serve --port 0";
  for (const auto& a : args) command += " " + a;
  std::printf("server: %s\n", command.c_str());

  if (o.client_slice.count() > 0)
    std::printf("client thread: time slice %ld us %s\n", static_cast<long>(o.client_slice.count()),
                shorten_own_slice(o.client_slice) ? "set" : "NOT set (kernel < 6.12?)");
  if (o.client_rt) {
    sched_param p{};
    p.sched_priority = 1;
    std::printf("client thread: SCHED_FIFO %s\n", sched_setscheduler(0, SCHED_FIFO, &p) == 0 ? "set" : "NOT set");
  }
  Server s = start_server(args, o.log_level);
  if (s.port == 0) {
    std::printf("the server did not start (see %s)\n", kServerLog);
    return 1;
  }
  const TaskProbe io(s.pid, s.pid);  // serve runs the io_context on its main thread
  const TaskProbe self(getpid(), static_cast<pid_t>(gettid()));
  OtherThreads others(s.pid, s.pid);
  const CpuProbe cpu;
  if (!io.ok() || !self.ok()) std::printf("warning: cannot read /proc counters; attribution will be zero\n");
  Client c(s.port);
  const auto t_load = Clock::now();
  const auto loading = measure_attributed(c, io, others, self, cpu, SIZE_MAX, o.interval,
                                          [](const std::string& b) { return has(b, "\"loading\""); });
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  std::string health;
  while (!has(health = c.request("GET", "/health"), "\"ready\"")) {
    if (health.empty()) {
      std::printf("the server stopped while loading (see %s)\n", kServerLog);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("ready after %.1f s (%s); memory: %s\n", load_s, o.warmup ? "load + warm-up generation" : "load",
              memory_of(health).c_str());
  print_threads(s.pid, "when ready");
  const auto idle =
      measure_attributed(c, io, others, self, cpu, o.requests, o.interval, [](const std::string&) { return true; });

  // Two jobs, one after the other, /health polled throughout each; the second with another prompt and seed.
  auto run_job = [&](const char* prompt, int seed, JobEvents& events, std::vector<Sample>& during) {
    const std::string body = std::string(R"({"prompt": ")") + prompt + R"(", "size": ")" + o.size + R"(", "steps": )" +
                             std::to_string(o.steps) + R"(, "seed": )" + std::to_string(seed) + "}";
    const std::string answer = Client(s.port).request("POST", "/v1/jobs", body);
    const auto j = nlohmann::json::parse(answer, nullptr, false);
    if (j.is_discarded() || !j.contains("id")) {
      std::printf("job refused: %s\n", answer.c_str());
      return false;
    }
    const std::string id = j["id"];
    std::thread follower([&, id] { events = follow_job(s.port, id); });
    bool threads_shown = false;
    const auto t0 = Clock::now();
    // Until the job has ended: "running" false and nothing queued.
    during = measure_attributed(c, io, others, self, cpu, SIZE_MAX, o.interval, [&](const std::string& b) {
      if (!threads_shown && Clock::now() - t0 > std::chrono::seconds(20)) {
        threads_shown = true;
        print_threads(s.pid, "20 s into the job");
      }
      return has(b, "\"running\":true") || !has(b, "\"queue_depth\":0");
    });
    follower.join();
    return true;
  };
  JobEvents first, second;
  std::vector<Sample> during_first, during_second;
  const bool ok1 = run_job("a photo of a red fox in the snow", 1, first, during_first);
  const std::string between = c.request("GET", "/health");
  const bool ok2 = ok1 && run_job("a lighthouse on a cliff at dusk, oil painting", 2, second, during_second);
  const std::string after = c.request("GET", "/health");
  const int code = stop_server(s);

  std::printf("\n/health latency (%s):\n", o.model.c_str());
  print_attributed("idle", idle);
  print_attributed(o.warmup ? "while loading (+ warm-up)" : "while loading", loading);
  const std::string job = o.size + ", " + std::to_string(o.steps) + " steps";
  print_attributed(("during job 1 (" + job + ")").c_str(), during_first);
  if (ok2) print_attributed(("during job 2 (" + job + ")").c_str(), during_second);
  std::printf("\njobs:\n");
  if (ok1) print_job("job 1", first);
  std::printf("  memory between the jobs: %s\n", memory_of(between).c_str());
  if (ok2) print_job("job 2", second);
  std::printf("  memory after: %s\n", memory_of(after).c_str());
  print_log_summary();
  std::printf("server exit code %d\n", code);
  return ok1 && ok2 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string medium, tiny;
  size_t requests = 1000;
  FullOptions full;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--") {
      full.serve_args.assign(argv + i + 1, argv + argc);
      break;
    }
    if (a == "--no-warmup") full.warmup = false;
    if (a == "--cold") full.cold = true;
    if (a == "--client-rt") full.client_rt = true;
    if (!has_value) continue;
    if (a == "--medium") medium = argv[++i];
    if (a == "--tiny") tiny = argv[++i];
    if (a == "--requests") requests = std::stoul(argv[++i]);
    if (a == "--model") full.model = argv[++i];
    if (a == "--size") full.size = argv[++i];
    if (a == "--steps") full.steps = std::stoi(argv[++i]);
    if (a == "--log") full.log_level = argv[++i];
    if (a == "--interval-us") full.interval = std::chrono::microseconds(std::stol(argv[++i]));
    if (a == "--client-slice-us") full.client_slice = std::chrono::microseconds(std::stol(argv[++i]));
  }
  if (!full.model.empty()) {
    full.requests = requests;
    return run_full(full);
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
