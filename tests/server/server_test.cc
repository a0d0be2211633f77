// `fluxcpp serve` end to end: the real binary on port 0 with a tiny random-weight model, spoken to over HTTP.
// A "long job" has 1000 steps (many seconds); tests cancel it, so nothing waits for it to finish.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "base/thread_pool.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

// PNG signature and IHDR size.
bool is_png(const std::string& data, int width, int height) {
  if (data.size() < 24 || data.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return false;
  auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(data[at])) << 24) |
           (static_cast<uint32_t>(static_cast<uint8_t>(data[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(data[at + 2])) << 8) | static_cast<uint8_t>(data[at + 3]);
  };
  return be32(16) == static_cast<uint32_t>(width) && be32(20) == static_cast<uint32_t>(height);
}

std::vector<std::string> server_args() {
  return {"--model",      tiny_model_dir(),
          "--queue-size", "2",
          "--max-pixels", "262144",
          "--max-steps",  "1000",
          "--max-body",   "4096",
          "--timeout",    "2",
          "--threads",    "2"};
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(server_args());
    ASSERT_GT(server_->port(), 0) << server_->log();
    ASSERT_TRUE(server_->wait_status("ready")) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->terminate(), 0);
    delete server_;
    server_ = nullptr;
  }
  void TearDown() override {
    // Leave the server idle for the next test.
    EXPECT_TRUE(poll_until([] {
      const json h = parse(get("/health").body);
      return h.is_object() && h["queue_depth"] == 0 && h["running"] == false;
    })) << server_->log();
  }
  static HttpResponse get(const std::string& path) { return http_request(server_->port(), "GET", path); }
  static HttpResponse post(const std::string& path, const std::string& body) {
    return http_request(server_->port(), "POST", path, body);
  }
  static HttpResponse del(const std::string& path) { return http_request(server_->port(), "DELETE", path); }
  static std::string submit(const std::string& body) {
    const HttpResponse r = post("/v1/jobs", body);
    EXPECT_EQ(r.status, 202) << r.body;
    return parse(r.body).value("id", "");
  }
  static std::string long_job() { return submit(R"({"prompt": "long", "size": "64x64", "steps": 1000})"); }
  static bool running() { return parse(get("/health").body).value("running", false); }
  static double metric(const std::string& line_prefix) {
    const std::string text = get("/metrics").body;
    const size_t at = text.find(line_prefix + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + line_prefix.size() + 1));
  }
  static ServerProcess* server_;
};
ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, HealthReadyModelsMetricsAndPage) {
  const HttpResponse h = get("/health");
  ASSERT_EQ(h.status, 200);
  const json health = parse(h.body);
  EXPECT_EQ(health["status"], "ready");
  EXPECT_EQ(health["load_progress"], 1.0);
  EXPECT_GT(health["bytes_total"].get<double>(), 0);
  EXPECT_EQ(get("/ready").status, 200);
  const json models = parse(get("/v1/models").body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "flux.1-schnell");
  EXPECT_EQ(models["data"][0]["object"], "model");
  const HttpResponse m = get("/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("flux_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}"),
            std::string::npos);
  EXPECT_NE(m.body.find("flux_model_load_state{state=\"ready\"} 1"), std::string::npos);
  const HttpResponse page = get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.header("content-type").find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("id=\"prompt\""), std::string::npos);  // the page, its script compiled in
  EXPECT_NE(page.body.find("/v1/config"), std::string::npos);
}

// /proc/PID/task/TID/stat fields 19 (nice) and 41 (policy: 0 other, 1 fifo, 3 batch) of every thread.
struct ThreadScheduling {
  pid_t tid = 0;
  int nice = 0, policy = -1;
};
std::vector<ThreadScheduling> thread_scheduling(pid_t pid) {
  std::vector<ThreadScheduling> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(line.substr(paren + 2));  // from field 3
    std::vector<std::string> f(3);
    for (std::string v; fields >> v;) f.push_back(v);
    if (f.size() <= 41) continue;
    out.push_back({std::atoi(e.path().filename().c_str()), std::atoi(f[19].c_str()), std::atoi(f[41].c_str())});
  }
  return out;
}

// DESIGN.md "Threading": compute below the I/O thread. After a job has run, every thread but the I/O thread (the
// process's main thread) is SCHED_BATCH at nice 10: the loader, the compute worker and the OpenMP team that
// parallel_for and oneDNN run on. The I/O thread is real-time when the OS allows it (root, CAP_SYS_NICE or
// RLIMIT_RTPRIO), as /health says, and normal otherwise.
TEST_F(ServerTest, ComputeThreadsRunBelowTheIoThread) {
  const HttpResponse r =
      post("/v1/images/generations", R"({"prompt": "priorities", "size": "64x64", "steps": 2, "seed": 3})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json health = parse(get("/health").body);
  const std::string io = health.value("io_thread", "");
  ASSERT_TRUE(io == "fifo" || io.rfind("other", 0) == 0) << health.dump();
  const auto threads = thread_scheduling(server_->pid());
  ASSERT_GE(threads.size(), 2u);  // the I/O thread and the compute worker at least
  std::vector<pid_t> not_lowered;
  for (const auto& t : threads) {
    if (t.tid == server_->pid()) {
      EXPECT_EQ(t.policy, io == "fifo" ? 1 : 0) << "the I/O thread";
    } else if (t.policy != 3 || t.nice != 10) {
      not_lowered.push_back(t.tid);
    }
  }
#if defined(__SANITIZE_THREAD__)
  const size_t runtime_threads = 1;  // ThreadSanitizer's own background thread (not ours, normal priority)
#else
  const size_t runtime_threads = 0;
#endif
  EXPECT_LE(not_lowered.size(), runtime_threads)
      << "threads not at SCHED_BATCH nice 10: " << testing::PrintToString(not_lowered);
  // Real-time whenever this process can have it too (the same user and limits).
  std::thread probe([&] { EXPECT_EQ(io == "fifo", raise_current_thread_to_realtime()); });
  probe.join();
}

// --no-realtime-io leaves the I/O thread at the normal policy even where real-time is allowed (as root here:
// the suite's own server, started without the flag, is "fifo" then).
TEST(ServerScheduling, NoRealtimeIoKeepsTheIoThreadNormal) {
  std::vector<std::string> args = server_args();
  args.push_back("--no-realtime-io");
  ServerProcess server(args);
  ASSERT_GT(server.port(), 0) << server.log();
  ASSERT_TRUE(server.wait_status("ready")) << server.log();
  const json health = parse(http_request(server.port(), "GET", "/health", "", 60s).body);
  EXPECT_EQ(health.value("io_thread", "").rfind("other", 0), 0u) << health.dump();
  for (const auto& t : thread_scheduling(server.pid())) {
    if (t.tid == server.pid()) {
      EXPECT_EQ(t.policy, 0) << "the I/O thread";
    }
  }
  EXPECT_EQ(server.log().find("real-time priority"), std::string::npos) << server.log();
  EXPECT_EQ(server.terminate(), 0);
}

TEST_F(ServerTest, BadInputAnsweredWithStatusAndField) {
  struct Case {
    std::string method, path, body;
    int status;
    std::string param;  // expected error.param ("" = null)
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/images/generations", "{\"prompt\": ", 400, ""},
      {"POST", "/v1/images/generations", R"({"prompt": 1})", 400, "prompt"},
      {"POST", "/v1/images/generations", R"({"prompt": "x", "foo": 1})", 400, "foo"},
      {"POST", "/v1/images/generations", R"({"prompt": ""})", 400, "prompt"},
      {"POST", "/v1/images/generations", R"({"prompt": "x", "size": "100x100"})", 400, "size"},
      {"POST", "/v1/images/generations", R"({"prompt": "x", "size": "1024x1024"})", 400, "size"},
      {"POST", "/v1/images/generations", R"({"prompt": "x", "steps": 1001})", 400, "steps"},
      {"POST", "/v1/images/generations", R"({"prompt": "x", "n": 99})", 400, "n"},
      {"POST", "/v1/images/generations", R"({"prompt": "x", "response_format": "url"})", 400, "response_format"},
      {"POST", "/v1/jobs", R"({"prompt": "x", "width": 64})", 400, "height"},
      {"POST", "/v1/jobs", R"({"prompt": "x", "preview": 1})", 400, "preview"},
      {"POST", "/v1/jobs", std::string(5000, ' '), 413, "body"},
      {"GET", "/v1/jobs/job_404", "", 404, "id"},
      {"GET", "/v1/jobs/job_404/events", "", 404, "id"},
      {"GET", "/v1/jobs/job_404/image", "", 404, "id"},
      {"DELETE", "/v1/jobs/job_404", "", 404, "id"},
      {"GET", "/nowhere", "", 404, ""},
      {"GET", "/v1/images/generations", "", 405, ""},
      {"DELETE", "/health", "", 405, ""},
      {"POST", "/v1/jobs/job_404/events", "", 405, ""},
  };
  for (const Case& c : cases) {
    const HttpResponse r = http_request(server_->port(), c.method, c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body << " -> " << r.body;
    const json j = parse(r.body);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("code"));
    if (c.param.empty()) {
      EXPECT_TRUE(j["error"]["param"].is_null()) << r.body;
    } else {
      EXPECT_EQ(j["error"]["param"], c.param) << r.body;
      if (c.param != "id" && c.param != "body") {
        EXPECT_NE(j["error"]["message"].get<std::string>().find(c.param), std::string::npos) << r.body;
      }
    }
    if (c.status == 405) {
      EXPECT_FALSE(r.header("allow").empty());
    }
  }
}

TEST_F(ServerTest, JobEventsArriveInOrderThenImage) {
  const std::string blocker = long_job();
  ASSERT_TRUE(poll_until(running));
  const std::string id = submit(R"({"prompt": "a cat", "size": "64x64", "steps": 3, "preview": true, "seed": 5})");
  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  ASSERT_EQ(events.status(), 200);
  auto first = events.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->name, "queued");
  EXPECT_EQ(parse(first->data)["position"], 1);  // 1 = next to run
  const json queued = parse(get("/v1/jobs/" + id).body);
  EXPECT_EQ(queued["status"], "queued");
  EXPECT_EQ(del("/v1/jobs/" + blocker).status, 200);  // let ours run
  std::vector<std::string> names;
  int last_step = -1, previews = 0;
  while (auto e = events.next()) {
    names.push_back(e->name);
    const json d = parse(e->data);
    EXPECT_EQ(d["id"], id);
    if (e->name == "step") {
      EXPECT_GE(d["step"].get<int>(), last_step);
      last_step = d["step"];
      if (d.contains("preview")) {
        ++previews;
        EXPECT_EQ(base64_decode(d["preview"]).compare(1, 3, "PNG"), 0);
      }
    }
  }
  ASSERT_GE(names.size(), 3u);
  EXPECT_EQ(names.front(), "started");
  EXPECT_EQ(names.back(), "completed");
  EXPECT_EQ(std::count(names.begin(), names.end(), "started"), 1);
  EXPECT_GE(previews, 1);
  EXPECT_EQ(last_step, 3);
  const json info = parse(get("/v1/jobs/" + id).body);
  EXPECT_EQ(info["status"], "completed");
  EXPECT_EQ(info["seed"], 5);
  const HttpResponse image = get("/v1/jobs/" + id + "/image");
  EXPECT_EQ(image.status, 200);
  EXPECT_EQ(image.header("content-type"), "image/png");
  EXPECT_TRUE(is_png(image.body, 64, 64));
  // A late subscriber gets the final state at once.
  SseStream late(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  auto only = late.next();
  ASSERT_TRUE(only);
  EXPECT_EQ(only->name, "completed");
  EXPECT_FALSE(late.next(5s));
}

// A client that subscribes to a running job late first gets its current state: started, then the latest step
// (not the steps it missed), then the live steps.
TEST_F(ServerTest, LateSubscriberToRunningJobGetsCurrentStateFirst) {
  const std::string id = long_job();
  int seen = 0;
  {
    SseStream early(server_->port(), "GET", "/v1/jobs/" + id + "/events");
    std::optional<SseEvent> e;
    while ((e = early.next()) && !(e->name == "step" && parse(e->data)["step"].get<int>() >= 3)) {
    }
    ASSERT_TRUE(e);
    seen = parse(e->data)["step"];
  }
  SseStream late(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  auto first = late.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->name, "started");
  auto stage = late.next();  // the stage it is in, then its latest step
  ASSERT_TRUE(stage);
  EXPECT_EQ(stage->name, "stage");
  EXPECT_EQ(parse(stage->data)["stage"], "denoise");
  auto second = late.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->name, "step");
  const json current = parse(second->data);
  EXPECT_GE(current["step"].get<int>(), seen);  // the job's state now, never a replay from step 1
  EXPECT_EQ(current["total"], 1000);
  auto third = late.next();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->name, "step");
  EXPECT_GT(parse(third->data)["step"].get<int>(), current["step"].get<int>());
  EXPECT_EQ(del("/v1/jobs/" + id).status, 200);
}

TEST_F(ServerTest, CancelRunningJob) {
  const std::string id = long_job();
  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  std::optional<SseEvent> e;
  while ((e = events.next()) && e->name != "step") {
  }
  ASSERT_TRUE(e);
  const HttpResponse r = del("/v1/jobs/" + id);
  EXPECT_EQ(r.status, 200) << r.body;
  std::string last;
  while ((e = events.next())) last = e->name;
  EXPECT_EQ(last, "cancelled");
  EXPECT_EQ(parse(get("/v1/jobs/" + id).body)["status"], "cancelled");
  EXPECT_EQ(get("/v1/jobs/" + id + "/image").status, 409);
  EXPECT_EQ(del("/v1/jobs/" + id).status, 200);  // cancelling a cancelled job again is harmless
}

TEST_F(ServerTest, ClientDisconnectCancelsItsGeneration) {
  const double before = metric("flux_jobs_total{outcome=\"cancelled\"}");
  {
    const int fd = connect_local(server_->port());
    const std::string body = R"({"prompt": "long", "size": "64x64", "steps": 1000})";
    ASSERT_TRUE(send_all(fd, str_cat("POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: ", body.size(),
                                     "\r\n\r\n", body)));
    ASSERT_TRUE(poll_until(running));
    ::close(fd);  // the client gives up while its generation runs
  }
  EXPECT_TRUE(poll_until([&] { return metric("flux_jobs_total{outcome=\"cancelled\"}") == before + 1; }));
  EXPECT_TRUE(poll_until([] { return !running(); }));
  // The same through a streamed request.
  {
    SseStream streaming(server_->port(), "POST", "/v1/images/generations",
                        R"({"prompt": "long", "size": "64x64", "steps": 1000, "stream": true})");
    EXPECT_EQ(streaming.status(), 200);
    ASSERT_TRUE(poll_until(running));
  }
  EXPECT_TRUE(poll_until([&] { return metric("flux_jobs_total{outcome=\"cancelled\"}") == before + 2; }));
}

TEST_F(ServerTest, QueueFullAnswers429WithRetryAfter) {
  const std::string a = long_job();
  ASSERT_TRUE(poll_until(running));
  const std::string b = long_job();
  const std::string c = long_job();
  const HttpResponse full = post("/v1/jobs", R"({"prompt": "one too many", "size": "64x64"})");
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_FALSE(full.header("retry-after").empty());
  EXPECT_EQ(parse(full.body)["error"]["code"], "queue_full");
  const HttpResponse full_openai = post("/v1/images/generations", R"({"prompt": "x", "size": "64x64"})");
  EXPECT_EQ(full_openai.status, 429);
  EXPECT_EQ(parse(get("/v1/jobs/" + c).body)["position"], 2);  // 1 = next to run
  for (const auto& id : {c, b, a}) EXPECT_EQ(del("/v1/jobs/" + id).status, 200);
}

TEST_F(ServerTest, OpenAiSynchronousGeneration) {
  const HttpResponse r =
      post("/v1/images/generations", R"({"prompt": "a cat", "n": 2, "size": "64x64", "steps": 2, "seed": 1})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = parse(r.body);
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_GT(j["created"].get<int64_t>(), 0);
  for (const auto& item : j["data"]) EXPECT_TRUE(is_png(base64_decode(item["b64_json"]), 64, 64));
  EXPECT_NE(j["data"][0]["b64_json"], j["data"][1]["b64_json"]);  // seeds 1 and 2
}

TEST_F(ServerTest, OpenAiStreamingWithPartialImages) {
  SseStream s(server_->port(), "POST", "/v1/images/generations",
              R"({"prompt": "a cat", "size": "64x64", "steps": 4, "stream": true, "partial_images": 2})");
  ASSERT_EQ(s.status(), 200);
  std::vector<std::string> names;
  std::string final_image;
  while (auto e = s.next()) {
    names.push_back(e->name);
    const json d = parse(e->data);
    EXPECT_EQ(d["type"], e->name);
    if (e->name == "image_generation.partial_image") {
      EXPECT_EQ(d["partial_image_index"], static_cast<int>(names.size()) - 1);
      EXPECT_EQ(base64_decode(d["b64_json"]).compare(1, 3, "PNG"), 0);
    }
    if (e->name == "image_generation.completed") final_image = base64_decode(d["b64_json"]);
  }
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0], "image_generation.partial_image");
  EXPECT_EQ(names[1], "image_generation.partial_image");
  EXPECT_EQ(names[2], "image_generation.completed");
  EXPECT_TRUE(is_png(final_image, 64, 64));
}

TEST_F(ServerTest, CrowdOfSynchronousCallsNeverFreezesTheServer) {
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> crowd;
  for (int i = 0; i < 16; ++i) {
    crowd.emplace_back([&, i] {
      const HttpResponse r = post("/v1/images/generations",
                                  str_cat(R"({"prompt": "crowd", "size": "64x64", "steps": 1, "seed": )", i, "}"));
      (r.status == 200 ? ok : r.status == 429 ? refused : other)++;
    });
  }
  double worst_ms = 0;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(get("/health").status, 200);
    worst_ms =
        std::max(worst_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  for (auto& t : crowd) t.join();
  EXPECT_EQ(ok + refused, 16);
  EXPECT_EQ(other, 0);
  EXPECT_GE(ok, 1);
  EXPECT_LT(worst_ms, 500) << "GET /health while 16 generations wait";
}

TEST_F(ServerTest, StalledClientTimesOut) {
  const int fd = connect_local(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET /health HTTP/1.1\r\nHo"));
  EXPECT_TRUE(wait_closed(fd, 10s));  // --timeout 2
  ::close(fd);
  EXPECT_EQ(get("/health").status, 200);
}

TEST(ServerLifecycle, ShutdownWhileAJobRunsClosesStreamsAndExitsZero) {
  ServerProcess server(server_args());
  ASSERT_TRUE(server.wait_status("ready")) << server.log();
  const HttpResponse r =
      http_request(server.port(), "POST", "/v1/jobs", R"({"prompt": "x", "size": "64x64", "steps": 1000})");
  const std::string id = parse(r.body).value("id", "");
  SseStream events(server.port(), "GET", "/v1/jobs/" + id + "/events");
  std::optional<SseEvent> e;
  while ((e = events.next()) && e->name != "step") {
  }
  ASSERT_TRUE(e);
  EXPECT_EQ(server.terminate(), 0) << server.log();
  std::optional<SseEvent> last;
  while ((e = events.next())) last = e;
  ASSERT_TRUE(last);
  EXPECT_EQ(last->name, "cancelled");
  EXPECT_EQ(parse(last->data)["reason"], "server_stopping");  // not the user's own cancel
  EXPECT_NE(server.log().find("server: stopped"), std::string::npos);
}

TEST(ServerLifecycle, LoadFailureReportedAndWorkRefusedWith503) {
  const std::string empty = temp_dir("server-empty-model");
  ServerProcess server({"--model", empty});
  ASSERT_GT(server.port(), 0) << server.log();
  ASSERT_TRUE(server.wait_status("error")) << server.log();
  const json health = parse(http_request(server.port(), "GET", "/health").body);
  EXPECT_FALSE(health.value("error", "").empty());
  const HttpResponse ready = http_request(server.port(), "GET", "/ready");
  EXPECT_EQ(ready.status, 503);
  const HttpResponse r = http_request(server.port(), "POST", "/v1/jobs", R"({"prompt": "x", "size": "64x64"})");
  EXPECT_EQ(r.status, 503);
  EXPECT_FALSE(r.header("retry-after").empty());
  EXPECT_EQ(server.terminate(), 0);
}

TEST(ServerLifecycle, WarmupRunsBeforeReady) {
  std::vector<std::string> args = server_args();
  args.push_back("--warmup");
  ServerProcess server(args);
  ASSERT_TRUE(server.wait_status("ready")) << server.log();
  EXPECT_NE(server.log().find("warm-up generation took"), std::string::npos);
  EXPECT_EQ(server.terminate(), 0);
}

}  // namespace
}  // namespace flux::test
