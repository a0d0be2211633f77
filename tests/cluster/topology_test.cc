// The "Done when": 1 API node + 2 workers over a real redis-server on loopback, 20 jobs at once, one worker
// SIGKILLed mid-job: every job completes exactly once (ids, one terminal entry each in Redis, images equal to a
// single-process run of the same seeds), each job's events reach an SSE client in order, and the survivor finished
// the killed job. Then the same with Redis killed and restarted (same port, append-only file) in the middle.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>

#include "cluster/job_codec.h"
#include "cluster/redis.h"
#include "cluster_harness.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kSteps = 200;  // a job lasts long enough on the tiny model to be killed mid-way

// The worker named in the terminal entry of the job's event stream.
std::string finished_by(const std::string& redis_url, const std::string& id) {
  cluster::RedisConnection r(cluster::RedisUrl::parse(redis_url), 2s, 5s);
  const cluster::Reply last = r.command({"XREVRANGE", cluster::events_key(id), "+", "-", "COUNT", "1"});
  return last.size() == 1 ? last[0][1].field("worker") : "";
}

int count_events(const std::vector<SseEvent>& events, const std::string& name) {
  int n = 0;
  for (const auto& e : events) n += e.name == name;
  return n;
}

// The PNG of each job, from GET /v1/jobs/{id}/image.
std::map<std::string, std::string> images(int port, const std::vector<std::string>& ids) {
  std::map<std::string, std::string> out;
  for (const auto& id : ids) out[id] = http_request(port, "GET", "/v1/jobs/" + id + "/image", "", 30s).body;
  return out;
}

// Runs the same jobs on one `serve --role all` process and checks the cluster's images are identical.
void expect_same_images(const std::vector<std::string>& bodies, const std::vector<std::string>& cluster_png) {
  ServerProcess single(single_args());
  ASSERT_TRUE(single.wait_status("ready")) << single.log();
  std::vector<std::string> ids;
  for (const auto& body : bodies) ids.push_back(submit_job(single.port(), body));
  for (const auto& id : ids) {
    ASSERT_FALSE(id.empty());
    ASSERT_TRUE(
        poll_until([&] { return get_json(single.port(), "/v1/jobs/" + id).value("status", "") == "completed"; }, 120s));
  }
  const auto reference = images(single.port(), ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_GT(cluster_png[i].size(), 8u);
    EXPECT_EQ(cluster_png[i], reference.at(ids[i])) << "job " << i << ": " << bodies[i];
  }
}

struct Topology {
  explicit Topology(bool persistent_redis, int visibility_ms = 3000) : redis(persistent_redis) {
    if (!redis.ok()) return;
    w1 = std::make_unique<ServerProcess>(worker_args(redis.url(), "w1", visibility_ms));
    w2 = std::make_unique<ServerProcess>(worker_args(redis.url(), "w2", visibility_ms));
    api = std::make_unique<ServerProcess>(api_args(redis.url(), 32));
  }
  bool ready() const { return w1->wait_status("ready") && w2->wait_status("ready") && api->wait_status("ready", 60s); }
  std::string logs() const { return "api:\n" + api->log() + "\nw1:\n" + w1->log() + "\nw2:\n" + w2->log(); }
  RedisServer redis;
  std::unique_ptr<ServerProcess> w1, w2, api;
};

TEST(ClusterTopologyTest, TwentyJobsOneWorkerKilledEveryJobCompletesOnce) {
  Topology t(false);
  ASSERT_TRUE(t.redis.ok()) << t.redis.error();
  ASSERT_TRUE(t.ready()) << t.logs();
  const int api = t.api->port();
  std::vector<std::string> bodies, ids;
  for (int i = 0; i < 20; ++i) bodies.push_back(job_body("cluster job " + std::to_string(i), kSteps, 1000 + i));
  for (const auto& body : bodies) ids.push_back(submit_job(api, body));
  std::vector<std::unique_ptr<JobWatcher>> watchers;
  for (const auto& id : ids) {
    ASSERT_FALSE(id.empty()) << t.logs();
    watchers.push_back(std::make_unique<JobWatcher>(api, id));
  }
  // w1 is killed while it holds a job that has made progress.
  std::string victim;
  ASSERT_TRUE(poll_until(
      [&] {
        const json h = get_json(t.w1->port(), "/health");
        if (!h.is_object() || h["node"]["jobs"].empty()) return false;
        victim = h["node"]["jobs"][0];
        return get_json(api, "/v1/jobs/" + victim).value("step", 0) >= 1;
      },
      120s))
      << t.logs();
  t.w1->send_signal(SIGKILL);
  t.w1->wait_exit();

  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& events = watchers[i]->events(300s);
    EXPECT_EQ(terminal_of(events), "completed") << ids[i] << "\n" << t.logs();
    EXPECT_EQ(check_order(events), "") << ids[i];
    EXPECT_EQ(terminal_entries(t.redis.url(), ids[i]), 1) << ids[i];
    if (ids[i] == victim) {
      EXPECT_GE(count_events(events, "started"), 2) << "the killed job ran again";
    }
  }
  EXPECT_EQ(finished_by(t.redis.url(), victim), "w2");
  EXPECT_TRUE(poll_until([&] { return stream_length(t.redis.url()) == 0; }, 10s));
  // The API lists exactly these 20 jobs, all completed.
  const json list = get_json(api, "/v1/jobs");
  ASSERT_EQ(list["data"].size(), 20u);
  for (const auto& j : list["data"]) {
    EXPECT_NE(std::find(ids.begin(), ids.end(), j["id"].get<std::string>()), ids.end());
    EXPECT_EQ(j["status"], "completed");
  }
  const auto png = images(api, ids);
  std::vector<std::string> cluster_png;
  for (const auto& id : ids) cluster_png.push_back(png.at(id));
  expect_same_images(bodies, cluster_png);
}

TEST(ClusterTopologyTest, RedisRestartedInTheMiddleLosesNoAcceptedJob) {
  Topology t(true, 20000);  // visibility above the outage: the workers keep their jobs
  ASSERT_TRUE(t.redis.ok()) << t.redis.error();
  ASSERT_TRUE(t.ready()) << t.logs();
  const int api = t.api->port();
  std::vector<std::string> bodies, ids;
  for (int i = 0; i < 8; ++i) bodies.push_back(job_body("restart job " + std::to_string(i), kSteps, 2000 + i));
  for (const auto& body : bodies) ids.push_back(submit_job(api, body));
  for (const auto& id : ids) ASSERT_FALSE(id.empty());
  ASSERT_TRUE(poll_until([&] { return get_json(api, "/v1/jobs/" + ids[0]).value("step", 0) >= 1; }, 120s));
  t.redis.kill();
  // While Redis is down: new work answers 503 with Retry-After; /health still answers at once.
  int status = 0;
  ASSERT_TRUE(poll_until(
      [&] {
        const std::string id = submit_job(api, job_body("during outage", kSteps, 3000 + ids.size()), &status);
        if (!id.empty()) {  // accepted before the API noticed: it must complete too
          bodies.push_back(job_body("during outage", kSteps, 3000 + ids.size()));
          ids.push_back(id);
        }
        return status == 503;
      },
      10s));
  const HttpResponse refused = http_request(api, "POST", "/v1/jobs", job_body("x", 2, 1), 5s);
  EXPECT_EQ(refused.status, 503);
  EXPECT_FALSE(refused.header("retry-after").empty());
  const auto t0 = std::chrono::steady_clock::now();
  const HttpResponse health = http_request(api, "GET", "/health", "", 5s);
  EXPECT_EQ(health.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(json::parse(health.body, nullptr, false)["node"]["redis"], "down") << health.body;
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE(t.redis.start()) << t.redis.error();

  for (const auto& id : ids)
    EXPECT_TRUE(poll_until([&] { return get_json(api, "/v1/jobs/" + id).value("status", "") == "completed"; }, 300s))
        << id << ": " << get_json(api, "/v1/jobs/" + id).dump() << "\n"
        << t.logs();
  for (const auto& id : ids) EXPECT_EQ(terminal_entries(t.redis.url(), id), 1) << id;
  EXPECT_EQ(submit_job(api, job_body("after", 2, 5)).empty(), false);  // recovered
}

}  // namespace
}  // namespace flux::test
