// `fluxcpp serve` while the models are still loading, against the real binary. The tiny model loads too fast to
// catch that state, so these tests gate the load on a FIFO: a copy of the tiny model whose
// text_encoder_2/config.json is a named pipe. Pipeline::load reads it with a plain ifstream (the first config it
// reads: after the tokenizers, before any weight is mapped), so the server's background loader blocks in open()
// until the test writes the file's content into the pipe; the server binds and answers meanwhile. No fixed
// sleeps: "loading" lasts exactly until the test releases the gate, and every wait has a deadline.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

// A copy of tiny_model_dir() with text_encoder_2/config.json replaced by a FIFO.
class GatedModel {
 public:
  GatedModel() : dir_(temp_dir("server-gated-model")) {
    std::error_code ec;
    fs::copy(tiny_model_dir(), dir_, fs::copy_options::recursive, ec);
    if (ec) ADD_FAILURE() << "copy " << tiny_model_dir() << " -> " << dir_ << ": " << ec.message();
    fifo_ = dir_ + "/text_encoder_2/config.json";
    content_ = read_file(fifo_);
    if (content_.empty()) ADD_FAILURE() << fifo_ << ": empty or missing";
    fs::remove(fifo_, ec);
    if (::mkfifo(fifo_.c_str(), 0600) != 0) ADD_FAILURE() << "mkfifo " << fifo_ << ": " << std::strerror(errno);
  }
  ~GatedModel() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  GatedModel(const GatedModel&) = delete;
  GatedModel& operator=(const GatedModel&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& content() const { return content_; }
  bool released() const { return released_; }

  // Lets the loader go on: waits (up to `timeout`) for a reader to open the FIFO, writes `text` and closes it, so
  // the reader gets `text` then end of file. Never blocks past the deadline (the writer end is opened
  // O_NONBLOCK, which fails with ENXIO while no reader has it open). False on timeout or error.
  bool release(const std::string& text, std::chrono::milliseconds timeout = 60s) {
    const auto deadline = Clock::now() + timeout;
    int fd = -1;
    while ((fd = ::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
      if (errno != ENXIO && errno != EINTR) return false;
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(left));
    }
    ::close(fd);
    released_ = true;
    return done == text.size();
  }
  bool release() { return release(content_); }

 private:
  std::string dir_, fifo_, content_;
  bool released_ = false;
};

class ServerLoading : public ::testing::Test {
 protected:
  void start(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--model", model_.dir(),  "--queue-size", "4",         "--max-pixels",
                                     "262144",  "--max-steps", "1000",         "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ServerProcess>(args);
    ASSERT_GT(server_->port(), 0) << server_->log();
  }
  // Never leaves the server or the loader behind: unblock the loader first (a graceful shutdown joins it), then
  // stop the server (terminate() SIGKILLs it if it has not exited in time).
  void TearDown() override {
    if (!server_) return;
    if (server_->running() && !model_.released()) model_.release(model_.content(), 10s);
    server_->terminate(30s);
  }
  HttpResponse get(const std::string& path) { return http_request(server_->port(), "GET", path, "", 60s); }
  HttpResponse post(const std::string& path, const std::string& body) {
    return http_request(server_->port(), "POST", path, body, 60s);
  }
  json health() { return parse(get("/health").body); }

  GatedModel model_;
  std::unique_ptr<ServerProcess> server_;
};

// An OpenAI-shaped 503 "not ready" refusal with Retry-After.
void expect_not_ready(const HttpResponse& r, const std::string& message_part, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.header("retry-after"), "5");
  EXPECT_EQ(r.header("content-type"), "application/json");
  const json j = parse(r.body);
  ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object()) << r.body;
  const json& e = j["error"];
  EXPECT_EQ(e.value("type", ""), "server_error");
  EXPECT_EQ(e.value("code", ""), "model_not_ready");
  EXPECT_TRUE(e.contains("param") && e["param"].is_null()) << r.body;
  EXPECT_NE(e.value("message", "").find(message_part), std::string::npos) << r.body;
}

TEST_F(ServerLoading, HealthSaysLoadingAndReadyIs503UntilTheLoadEnds) {
  start();
  const HttpResponse h = get("/health");
  ASSERT_EQ(h.status, 200) << server_->log();
  const json loading = parse(h.body);
  EXPECT_EQ(loading["status"], "loading") << h.body;
  EXPECT_EQ(loading["load_progress"], 0.0) << h.body;  // the gate is before the first weight byte
  EXPECT_FALSE(loading.contains("model")) << h.body;
  EXPECT_FALSE(loading.contains("error")) << h.body;
  EXPECT_EQ(loading["queue_depth"], 0);

  const HttpResponse ready = get("/ready");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.header("retry-after"), "5");
  EXPECT_EQ(parse(ready.body), json({{"ready", false}, {"status", "loading"}})) << ready.body;

  const json models = parse(get("/v1/models").body);
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "flux.1");  // the variant is not known yet
  EXPECT_EQ(models["data"][0]["status"], "loading");
  EXPECT_NE(get("/metrics").body.find("flux_model_load_state{state=\"loading\"} 1"), std::string::npos);
  EXPECT_EQ(get("/").status, 200);
  // The page builds its form from /v1/config while the model loads: the limits are there, the model's fields null.
  const json config = parse(get("/v1/config").body);
  for (const char* field : {"model", "variant", "default_steps", "default_guidance"})
    EXPECT_TRUE(config[field].is_null()) << field << ": " << config.dump();
  EXPECT_GT(config["max_pixels"].get<int64_t>(), 0) << config.dump();
  EXPECT_EQ(config["max_seed"], (uint64_t{1} << 53) - 1) << config.dump();

  // The gate is what held the load: released, the server turns ready.
  ASSERT_TRUE(model_.release());
  ASSERT_TRUE(server_->wait_status("ready", 120s)) << server_->log();
  EXPECT_EQ(get("/ready").status, 200);
  EXPECT_EQ(parse(get("/v1/models").body)["data"][0]["id"], "flux.1-schnell");
  const json loaded = parse(get("/v1/config").body);
  EXPECT_EQ(loaded["variant"], "schnell") << loaded.dump();
  EXPECT_EQ(loaded["default_steps"], 4) << loaded.dump();
  EXPECT_EQ(server_->terminate(), 0) << server_->log();
}

TEST_F(ServerLoading, WorkRefusedWith503AndRetryAfter) {
  start();
  ASSERT_TRUE(server_->wait_status("loading", 30s)) << server_->log();
  expect_not_ready(post("/v1/images/generations", R"({"prompt": "x", "size": "64x64"})"), "still loading",
                   "generations");
  expect_not_ready(post("/v1/images/generations", R"({"prompt": "x", "size": "64x64", "n": 2})"), "still loading",
                   "generations, n=2");
  expect_not_ready(post("/v1/images/generations", R"({"prompt": "x", "size": "64x64", "stream": true})"),
                   "still loading", "generations, streamed");
  expect_not_ready(post("/v1/jobs", R"({"prompt": "x", "size": "64x64"})"), "still loading", "jobs");
  // A malformed request is still a 400 naming the field: the body is checked before the load state.
  const HttpResponse bad = post("/v1/jobs", R"({"prompt": ""})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(parse(bad.body)["error"]["param"], "prompt") << bad.body;

  const json h = health();
  EXPECT_EQ(h["status"], "loading");
  EXPECT_EQ(h["queue_depth"], 0);
  EXPECT_EQ(h["running"], false);
  EXPECT_NE(server_->log().find("POST /v1/jobs 503"), std::string::npos) << server_->log();
}

TEST_F(ServerLoading, QueueWhileLoadingRunsTheQueuedJobOnceLoaded) {
  start({"--queue-while-loading"});
  const HttpResponse r = post("/v1/jobs", R"({"prompt": "a cat", "size": "64x64", "steps": 2, "seed": 7})");
  ASSERT_EQ(r.status, 202) << r.body << server_->log();
  const json created = parse(r.body);
  const std::string id = created.value("id", "");
  ASSERT_FALSE(id.empty()) << r.body;
  EXPECT_EQ(created["status"], "queued");
  EXPECT_EQ(created["position"], 1);  // 1 = next to run
  EXPECT_EQ(r.header("location"), "/v1/jobs/" + id);

  EXPECT_EQ(parse(get("/v1/jobs/" + id).body)["status"], "queued");
  const json h = health();
  EXPECT_EQ(h["status"], "loading");
  EXPECT_EQ(h["queue_depth"], 1);
  EXPECT_EQ(h["running"], false);
  EXPECT_EQ(get("/ready").status, 503);

  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  ASSERT_EQ(events.status(), 200);
  auto first = events.next(60s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->name, "queued");
  EXPECT_EQ(parse(first->data)["position"], 1);

  ASSERT_TRUE(model_.release());
  ASSERT_TRUE(server_->wait_status("ready", 120s)) << server_->log();
  EXPECT_EQ(get("/ready").status, 200);

  std::vector<std::string> names;
  while (auto e = events.next(120s)) {
    names.push_back(e->name);
    EXPECT_EQ(parse(e->data)["id"], id);
  }
  ASSERT_FALSE(names.empty()) << server_->log();
  EXPECT_EQ(names.front(), "started");
  EXPECT_EQ(names.back(), "completed") << server_->log();
  const json info = parse(get("/v1/jobs/" + id).body);
  EXPECT_EQ(info["status"], "completed");
  EXPECT_EQ(info["seed"], 7);
  const HttpResponse image = get("/v1/jobs/" + id + "/image");
  EXPECT_EQ(image.status, 200);
  EXPECT_EQ(image.header("content-type"), "image/png");
  EXPECT_EQ(image.body.compare(0, 8, "\x89PNG\r\n\x1a\n"), 0);
  EXPECT_EQ(server_->terminate(), 0) << server_->log();
}

TEST_F(ServerLoading, QueuedJobFailsWhenTheLoadFails) {
  start({"--queue-while-loading"});
  const HttpResponse r = post("/v1/jobs", R"({"prompt": "x", "size": "64x64", "steps": 2})");
  ASSERT_EQ(r.status, 202) << r.body << server_->log();
  const std::string id = parse(r.body).value("id", "");
  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  auto first = events.next(60s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->name, "queued");

  ASSERT_TRUE(model_.release("{ not json"));  // the T5 config: the load fails
  auto failed = events.next(120s);
  ASSERT_TRUE(failed) << server_->log();
  EXPECT_EQ(failed->name, "failed");
  EXPECT_NE(parse(failed->data).value("error", "").find("the models failed to load"), std::string::npos)
      << failed->data;
  EXPECT_FALSE(events.next(10s));  // the stream ends after the terminal event

  ASSERT_TRUE(server_->wait_status("error", 30s)) << server_->log();
  EXPECT_NE(health().value("error", "").find("invalid JSON"), std::string::npos) << get("/health").body;
  EXPECT_EQ(parse(get("/v1/jobs/" + id).body)["status"], "failed");
  EXPECT_EQ(get("/ready").status, 503);
  expect_not_ready(post("/v1/jobs", R"({"prompt": "x", "size": "64x64"})"), "failed to load", "after the failure");
  EXPECT_EQ(server_->terminate(), 0) << server_->log();
}

TEST_F(ServerLoading, ShutdownWhileLoadingCancelsQueuedJobsAndExitsZero) {
  start({"--queue-while-loading"});
  const HttpResponse r = post("/v1/jobs", R"({"prompt": "x", "size": "64x64", "steps": 2})");
  ASSERT_EQ(r.status, 202) << r.body << server_->log();
  const std::string id = parse(r.body).value("id", "");
  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  auto first = events.next(60s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->name, "queued");

  server_->send_signal(SIGTERM);
  // The queued job is cancelled at once, while the loader is still held by the gate.
  auto cancelled = events.next(60s);
  ASSERT_TRUE(cancelled) << server_->log();
  EXPECT_EQ(cancelled->name, "cancelled");
  EXPECT_FALSE(events.next(10s));
  // The loader stops at its next progress report once it can read on; then the server exits cleanly.
  ASSERT_TRUE(model_.release());
  EXPECT_EQ(server_->wait_exit(60s), 0) << server_->log();
  EXPECT_NE(server_->log().find("server: stopped"), std::string::npos) << server_->log();
  EXPECT_EQ(server_->log().find("engine: ready"), std::string::npos) << server_->log();
}

}  // namespace
}  // namespace flux::test
