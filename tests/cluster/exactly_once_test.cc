// Jobs per worker as /metrics series, and exactly once in the two edge cases of issue 16: one job added twice to
// flux:jobs (an XADD whose reply was lost is sent again) runs once; Redis restarted without persistence loses the
// stream and the API node sends every accepted, unfinished job again; a cancel made while Redis is down is sent
// when it returns.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>

#include "cluster/job_codec.h"
#include "cluster/redis.h"
#include "cluster_harness.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// The values of `series` in a Prometheus text by their `worker` label (checks its HELP and TYPE lines).
std::map<std::string, int64_t> by_worker(const std::string& text, const std::string& series) {
  std::map<std::string, int64_t> out;
  EXPECT_NE(text.find("# HELP " + series + " "), std::string::npos) << series;
  EXPECT_NE(text.find("# TYPE " + series + " "), std::string::npos) << series;
  const std::regex line("^" + series + R"re(\{worker="((?:[^"\\]|\\.)*)"\} (\d+)$)re");
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_match(l, m, line)) out[m[1]] += std::stoll(m[2]);
  }
  return out;
}

// An unlabelled series' value, or -1.
int64_t value_of(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.rfind(series + " ", 0) == 0) return std::stoll(l.substr(series.size() + 1));
  return -1;
}

std::string metrics(int port) { return http_request(port, "GET", "/metrics", "", 10s).body; }

int64_t sum(const std::map<std::string, int64_t>& m) {
  int64_t n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}

bool finished(int port, const std::string& id, const std::string& status = "completed") {
  return get_json(port, "/v1/jobs/" + id).value("status", "") == status;
}

// The entries of flux:job:<id>:events by type.
std::map<std::string, int> event_types(const std::string& redis_url, const std::string& id) {
  cluster::RedisConnection r(cluster::RedisUrl::parse(redis_url), 2s, 5s);
  std::map<std::string, int> out;
  for (const auto& entry : r.command({"XRANGE", cluster::events_key(id), "-", "+"}).elements)
    out[entry[1].field("type")] += 1;
  return out;
}

TEST(ClusterMetricsTest, JobsPerWorkerSumToTheJobCount) {
  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  ServerProcess w1(worker_args(redis.url(), "w1", 3000));
  ServerProcess w2(worker_args(redis.url(), "w\"2", 3000));  // a name that needs escaping in a label
  ServerProcess api(api_args(redis.url(), 16));
  ASSERT_TRUE(w1.wait_status("ready") && w2.wait_status("ready")) << w1.log() << w2.log();
  ASSERT_TRUE(api.wait_status("ready", 60s)) << api.log();
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(submit_job(api.port(), job_body("m" + std::to_string(i), 60, 10 + i)));
  // While they run: the queue gauges count them.
  ASSERT_TRUE(poll_until(
      [&] {
        const std::string m = metrics(api.port());
        return value_of(m, "flux_cluster_queue_pending") >= 1 && sum(by_worker(m, "flux_cluster_jobs_held")) >= 1;
      },
      60s))
      << metrics(api.port());
  for (const auto& id : ids) ASSERT_TRUE(poll_until([&] { return finished(api.port(), id); }, 120s)) << id;
  const std::string m = metrics(api.port());
  const auto done = by_worker(m, "flux_cluster_jobs_done_total");
  EXPECT_EQ(sum(done), 8) << m;
  ASSERT_EQ(done.size(), 2u) << m;
  EXPECT_GE(done.at("w1"), 1);
  EXPECT_GE(done.at("w\\\"2"), 1);
  EXPECT_TRUE(poll_until([&] { return value_of(metrics(api.port()), "flux_cluster_queue_pending") == 0; }, 10s));
  EXPECT_EQ(value_of(metrics(api.port()), "flux_cluster_queue_waiting"), 0);
  EXPECT_EQ(value_of(m, "flux_cluster_redis_up"), 1);
  // Each worker counts its own, and the API node's view agrees.
  const auto own1 = by_worker(metrics(w1.port()), "flux_cluster_worker_jobs_done_total");
  const auto own2 = by_worker(metrics(w2.port()), "flux_cluster_worker_jobs_done_total");
  EXPECT_EQ(own1.at("w1"), done.at("w1"));
  EXPECT_EQ(own2.at("w\\\"2"), done.at("w\\\"2"));
  EXPECT_EQ(by_worker(metrics(w1.port()), "flux_cluster_worker_jobs_held").at("w1"), 0);
}

TEST(ClusterExactlyOnceTest, AJobAddedTwiceRunsOnce) {
  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  ServerProcess w1(worker_args(redis.url(), "w1", 3000));
  ServerProcess w2(worker_args(redis.url(), "w2", 3000));
  ASSERT_TRUE(w1.wait_status("ready") && w2.wait_status("ready")) << w1.log() << w2.log();
  // As an API node whose XADD reply was lost would: the same job twice, back to back (each idle worker takes one).
  GenerateRequest request;
  request.prompt = "twice";
  request.width = request.height = 64;
  request.steps = 200;
  request.seed = 3;
  const cluster::JobPayload payload = cluster::encode_request(request, "");
  const std::string id = "job_dup_1";
  cluster::RedisConnection r(cluster::RedisUrl::parse(redis.url()), 2s, 5s);
  for (int i = 0; i < 2; ++i) {
    std::vector<std::string> argv = {"XADD", cluster::kJobsStream, "*", "job", id};
    for (auto& f : cluster::payload_fields(payload)) argv.push_back(f);
    r.command(argv);
  }
  ASSERT_TRUE(poll_until([&] { return terminal_entries(redis.url(), id) >= 1; }, 120s)) << w1.log() << w2.log();
  EXPECT_TRUE(poll_until([&] { return stream_length(redis.url()) == 0; }, 10s)) << "the duplicate is acknowledged";
  std::this_thread::sleep_for(500ms);  // a second run, if there were one, would show by now
  const auto types = event_types(redis.url(), id);
  EXPECT_EQ(types.count("completed") ? types.at("completed") : 0, 1);
  EXPECT_EQ(types.at("started"), 1) << "the job ran twice";
  EXPECT_EQ(terminal_entries(redis.url(), id), 1);
  EXPECT_FALSE(r.command({"GET", cluster::png_key(id)}).is_nil());
  const int64_t done = sum(by_worker(metrics(w1.port()), "flux_cluster_worker_jobs_done_total")) +
                       sum(by_worker(metrics(w2.port()), "flux_cluster_worker_jobs_done_total"));
  const int64_t duplicates = sum(by_worker(metrics(w1.port()), "flux_cluster_worker_duplicates_total")) +
                             sum(by_worker(metrics(w2.port()), "flux_cluster_worker_duplicates_total"));
  EXPECT_EQ(done, 1);
  EXPECT_EQ(duplicates, 1) << "the second entry went through the owner key";
}

TEST(ClusterExactlyOnceTest, RedisLosingItsDataLosesNoAcceptedJob) {
  RedisServer redis(false);  // --appendonly no --save "": a restart empties it
  ASSERT_TRUE(redis.ok()) << redis.error();
  ServerProcess w1(worker_args(redis.url(), "w1", 20000));
  ServerProcess w2(worker_args(redis.url(), "w2", 20000));
  ServerProcess api(api_args(redis.url(), 32));
  ASSERT_TRUE(w1.wait_status("ready") && w2.wait_status("ready")) << w1.log() << w2.log();
  ASSERT_TRUE(api.wait_status("ready", 60s)) << api.log();
  std::vector<std::string> ids;
  std::vector<std::unique_ptr<JobWatcher>> watchers;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(submit_job(api.port(), job_body("lost " + std::to_string(i), 200, 40 + i)));
    ASSERT_FALSE(ids.back().empty());
    watchers.push_back(std::make_unique<JobWatcher>(api.port(), ids.back()));
  }
  ASSERT_TRUE(poll_until([&] { return get_json(api.port(), "/v1/jobs/" + ids[0]).value("step", 0) >= 1; }, 120s));
  redis.kill();
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE(redis.start()) << redis.error();
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(poll_until([&] { return finished(api.port(), ids[i]); }, 300s))
        << ids[i] << ": " << get_json(api.port(), "/v1/jobs/" + ids[i]).dump() << "\napi:\n"
        << api.log() << "\nw1:\n"
        << w1.log() << "\nw2:\n"
        << w2.log();
    const auto& events = watchers[i]->events(60s);
    EXPECT_EQ(terminal_of(events), "completed") << ids[i];
    EXPECT_EQ(check_order(events), "") << ids[i];
    EXPECT_LE(terminal_entries(redis.url(), ids[i]), 1) << ids[i];
  }
  const std::string m = metrics(api.port());
  EXPECT_GE(value_of(m, "flux_cluster_jobs_resent_total"), 1) << m;
  EXPECT_EQ(sum(by_worker(m, "flux_cluster_jobs_done_total")), 6) << m;
  EXPECT_TRUE(poll_until([&] { return stream_length(redis.url()) == 0; }, 20s)) << "every resent entry acknowledged";
}

TEST(ClusterExactlyOnceTest, ACancelMadeWhileRedisIsDownIsSentWhenItReturns) {
  RedisServer redis(true);  // persistent: the queued entry survives the restart
  ASSERT_TRUE(redis.ok()) << redis.error();
  ServerProcess worker(worker_args(redis.url(), "w1", 20000));
  ServerProcess api(api_args(redis.url(), 8));
  ASSERT_TRUE(worker.wait_status("ready")) << worker.log();
  ASSERT_TRUE(api.wait_status("ready", 60s)) << api.log();
  // Runs past the restart (1000 steps at 128x128: tens of seconds), so the worker cannot claim the other job early.
  const std::string running =
      submit_job(api.port(), json{{"prompt", "long"}, {"size", "128x128"}, {"steps", 1000}, {"seed", 1}}.dump());
  const std::string queued = submit_job(api.port(), job_body("queued", 4, 2));
  ASSERT_FALSE(running.empty());
  ASSERT_FALSE(queued.empty());
  ASSERT_TRUE(poll_until([&] { return get_json(api.port(), "/v1/jobs/" + running).value("step", 0) >= 1; }, 60s));
  JobWatcher watcher(api.port(), queued);
  redis.kill();
  ASSERT_TRUE(poll_until([&] { return get_json(api.port(), "/health")["node"]["redis"] == "down"; }, 10s));
  EXPECT_EQ(http_request(api.port(), "DELETE", "/v1/jobs/" + queued, "", 10s).status, 200);
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(redis.start()) << redis.error();
  ASSERT_TRUE(poll_until([&] { return finished(api.port(), queued, "cancelled"); }, 60s))
      << get_json(api.port(), "/v1/jobs/" + queued).dump() << api.log() << worker.log();
  EXPECT_EQ(terminal_of(watcher.events(30s)), "cancelled");
  const auto types = event_types(redis.url(), queued);
  EXPECT_EQ(types.count("completed"), 0u);
  EXPECT_EQ(types.count("started"), 0u) << "the cancelled job never ran";
  EXPECT_EQ(types.at("cancelled"), 1);
  // The running job was not touched (it still runs, or completed); stopped now, it ends once.
  EXPECT_NE(get_json(api.port(), "/v1/jobs/" + running).value("status", ""), "cancelled");
  http_request(api.port(), "DELETE", "/v1/jobs/" + running, "", 10s);
  EXPECT_TRUE(
      poll_until([&] { return finished(api.port(), running, "cancelled") || finished(api.port(), running); }, 60s));
  EXPECT_TRUE(poll_until([&] { return terminal_entries(redis.url(), running) == 1; }, 10s));
  EXPECT_TRUE(poll_until([&] { return stream_length(redis.url()) == 0; }, 10s));
}

}  // namespace
}  // namespace flux::test
