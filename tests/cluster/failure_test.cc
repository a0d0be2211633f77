// Failures across nodes: a job that kills every worker that runs it is failed after --max-tries deliveries (not
// retried forever); a cancel sent to the API node stops the job on the worker that runs it, within one poll.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "cluster/job_codec.h"
#include "cluster/redis.h"
#include "cluster_harness.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST(ClusterFailureTest, CancelOnTheApiStopsTheJobOnItsWorker) {
  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  ServerProcess worker(worker_args(redis.url(), "w1", 3000));
  ServerProcess api(api_args(redis.url(), 4));
  ASSERT_TRUE(worker.wait_status("ready")) << worker.log();
  ASSERT_TRUE(api.wait_status("ready", 60s)) << api.log();
  const std::string id = submit_job(api.port(), job_body("long", 1000, 7));  // seconds
  ASSERT_FALSE(id.empty()) << api.log();
  SseStream events(api.port(), "GET", "/v1/jobs/" + id + "/events");
  ASSERT_EQ(events.status(), 200);
  int step = 0;
  while (step < 3) {
    auto e = events.next(60s);
    ASSERT_TRUE(e) << api.log() << worker.log();
    if (e->name == "step") step = json::parse(e->data).value("step", 0);
  }
  ASSERT_EQ(get_json(worker.port(), "/health")["node"]["jobs"], json::array({id}));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(http_request(api.port(), "DELETE", "/v1/jobs/" + id, "", 10s).status, 200);
  std::optional<SseEvent> last;
  while (auto e = events.next(30s)) {
    last = e;
    if (e->name == "cancelled" || e->name == "completed" || e->name == "failed") break;
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(last);
  EXPECT_EQ(last->name, "cancelled") << last->data;
  EXPECT_EQ(json::parse(last->data).value("reason", ""), "user");
  EXPECT_LT(waited, 3s);  // a 100 ms cancel poll plus one block of the tiny model
  // The worker's own engine stopped the job, and it holds nothing now.
  EXPECT_TRUE(poll_until([&] { return get_json(worker.port(), "/health")["node"]["jobs"].empty(); }, 5s));
  const json local = get_json(worker.port(), "/v1/jobs");
  ASSERT_EQ(local["data"].size(), 1u);
  EXPECT_EQ(local["data"][0]["status"], "cancelled");
  EXPECT_LT(local["data"][0].value("step", 0), 1000);
  EXPECT_EQ(terminal_entries(redis.url(), id), 1);
  EXPECT_TRUE(poll_until([&] { return stream_length(redis.url()) == 0; }, 5s));
  EXPECT_EQ(get_json(api.port(), "/v1/jobs/" + id)["status"], "cancelled");
}

TEST(ClusterFailureTest, AJobThatKillsItsWorkersFailsAfterMaxTries) {
  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  constexpr int kMaxTries = 2;
  ::setenv("FLUX_TEST_CRASH_ON_PROMPT", "crash me", 1);  // the workers spawned below abort on that prompt
  std::unique_ptr<ServerProcess> workers[2];
  auto spawn = [&](int i) {
    const std::string name = i == 0 ? "w0" : "w1";
    workers[i] = std::make_unique<ServerProcess>(worker_args(redis.url(), name, 1000, kMaxTries));
  };
  spawn(0);
  spawn(1);
  ServerProcess api(api_args(redis.url(), 8));
  ASSERT_TRUE(api.wait_status("ready", 60s)) << api.log();
  const std::string bad = submit_job(api.port(), job_body("crash me", 4, 1));
  const std::string good = submit_job(api.port(), job_body("fine", 4, 2));
  ASSERT_FALSE(bad.empty());
  ASSERT_FALSE(good.empty());
  int crashes = 0;
  // A supervisor's job: restart each worker that died, until the bad job ends.
  const bool ended = poll_until(
      [&] {
        for (int i = 0; i < 2; ++i) {
          if (http_request(workers[i]->port(), "GET", "/health", "", 2s).status != 0) continue;
          const int code = workers[i]->wait_exit(5s);
          EXPECT_EQ(code, 128 + SIGABRT) << workers[i]->log();
          ++crashes;
          spawn(i);
        }
        const std::string status = get_json(api.port(), "/v1/jobs/" + bad).value("status", "");
        return status == "failed" || status == "completed" || status == "cancelled";
      },
      180s);
  ::unsetenv("FLUX_TEST_CRASH_ON_PROMPT");
  ASSERT_TRUE(ended) << api.log();
  const json info = get_json(api.port(), "/v1/jobs/" + bad);
  EXPECT_EQ(info["status"], "failed");
  EXPECT_NE(info.value("error", "").find("after 2 tries"), std::string::npos) << info.dump();
  EXPECT_EQ(crashes, kMaxTries);
  EXPECT_EQ(terminal_entries(redis.url(), bad), 1);
  EXPECT_TRUE(
      poll_until([&] { return get_json(api.port(), "/v1/jobs/" + good).value("status", "") == "completed"; }, 60s));
}

// Output and exit status of `fluxcpp ARGS` (stderr included).
std::pair<std::string, int> run_cli(const std::string& args) {
  std::string out;
  FILE* p = ::popen((std::string(FLUX_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return {"", -1};
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, p)) out.append(buffer, n);
  const int status = ::pclose(p);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

TEST(ClusterFailureTest, ClusterRolesNeedAQueue) {
  for (const char* role : {"api", "worker"}) {
    const auto [out, code] = run_cli(std::string("serve --role ") + role + " --model /nonexistent --port 0");
    EXPECT_NE(code, 0) << out;
    EXPECT_NE(out.find("--queue redis://HOST:PORT[/DB]"), std::string::npos) << out;
  }
  const auto [out, code] = run_cli("serve --role api --queue http://x:1 --port 0");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("--queue: expected redis://"), std::string::npos) << out;
  const auto [out2, code2] = run_cli("serve --role boss --model /nonexistent --port 0");
  EXPECT_NE(code2, 0);
  EXPECT_NE(out2.find("--role: expected all, api or worker"), std::string::npos) << out2;
}

TEST(ClusterFailureTest, AFullQueueAnswers429) {
  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  {  // as a worker would once loaded: the API turns ready (no worker runs, so jobs stay waiting)
    cluster::RedisConnection r(cluster::RedisUrl::parse(redis.url()), 2s, 2s);
    r.command({"SET", cluster::kModelKey, R"({"model": "test", "variant": "schnell"})"});
  }
  ServerProcess api(api_args(redis.url(), 2));
  ASSERT_TRUE(api.wait_status("ready", 30s)) << api.log();
  EXPECT_FALSE(submit_job(api.port(), job_body("a", 2, 1)).empty());
  EXPECT_FALSE(submit_job(api.port(), job_body("b", 2, 2)).empty());
  const HttpResponse full = http_request(api.port(), "POST", "/v1/jobs", job_body("c", 2, 3), 5s);
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_FALSE(full.header("retry-after").empty());
  EXPECT_TRUE(poll_until([&] { return stream_length(redis.url()) == 2; }, 5s));
  EXPECT_TRUE(poll_until([&] { return get_json(api.port(), "/health")["node"]["waiting"] == 2; }, 5s));
}

// A stalled Redis (SIGSTOP: connections open, no answers) never holds the API's I/O thread: /health and a submit
// answer at once while the command link waits for its read timeout.
TEST(ClusterFailureTest, AStalledRedisNeverBlocksTheIoThread) {
  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  {
    cluster::RedisConnection r(cluster::RedisUrl::parse(redis.url()), 2s, 2s);
    r.command({"SET", cluster::kModelKey, R"({"model": "test", "variant": "schnell"})"});
  }
  ServerProcess api(api_args(redis.url(), 8));
  ASSERT_TRUE(api.wait_status("ready", 30s)) << api.log();
  ::kill(redis.pid(), SIGSTOP);
  std::vector<double> ms;
  const auto t_submit = std::chrono::steady_clock::now();
  const HttpResponse accepted = http_request(api.port(), "POST", "/v1/jobs", job_body("stalled", 2, 1), 5s);
  const double submit_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_submit).count();
  for (int i = 0; i < 100; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResponse h = http_request(api.port(), "GET", "/health", "", 5s);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    EXPECT_EQ(h.status, 200);
    std::this_thread::sleep_for(10ms);
  }
  ::kill(redis.pid(), SIGCONT);
  std::sort(ms.begin(), ms.end());
  EXPECT_EQ(accepted.status, 202) << accepted.body;  // the link had not failed yet: accepted, sent when it answers
  EXPECT_LT(submit_ms, 100);
  EXPECT_LT(ms[98], 20) << "p99 of /health while Redis is stalled";  // loose: the test machine is busy
  const std::string id = nlohmann::json::parse(accepted.body, nullptr, false).value("id", "");
  EXPECT_TRUE(poll_until([&] { return stream_length(redis.url()) == 1; }, 15s)) << api.log();
  EXPECT_NE(get_json(api.port(), "/v1/jobs/" + id).value("status", ""), "");
}

}  // namespace
}  // namespace flux::test
