#include "cluster_harness.h"

#include "cluster/job_codec.h"
#include "cluster/redis.h"

namespace flux::test {

using nlohmann::json;

namespace {
std::vector<std::string> common_args() {
  return {"--model", tiny_model_dir(), "--max-pixels", "262144", "--max-steps", "2000", "--threads", "1", "--timeout",
          "30"};
}
}  // namespace

std::vector<std::string> worker_args(const std::string& redis_url, const std::string& name, int visibility_ms,
                                     int max_tries) {
  auto a = common_args();
  a.insert(a.end(), {"--role", "worker", "--queue", redis_url, "--node-name", name, "--visibility-ms",
                     std::to_string(visibility_ms), "--max-tries", std::to_string(max_tries)});
  return a;
}

std::vector<std::string> api_args(const std::string& redis_url, int queue_size) {
  return {"--role",       "api",    "--queue",     redis_url, "--queue-size", std::to_string(queue_size),
          "--max-pixels", "262144", "--max-steps", "2000",    "--timeout",    "30"};
}

std::vector<std::string> single_args() {
  auto a = common_args();
  a.insert(a.end(), {"--queue-size", "32"});
  return a;
}

json get_json(int port, const std::string& path) {
  return json::parse(http_request(port, "GET", path, "", std::chrono::seconds(10)).body, nullptr, false);
}

std::string submit_job(int port, const std::string& body, int* status) {
  const HttpResponse r = http_request(port, "POST", "/v1/jobs", body, std::chrono::seconds(10));
  if (status) *status = r.status;
  if (r.status != 202) return "";
  return json::parse(r.body, nullptr, false).value("id", "");
}

std::string job_body(const std::string& prompt, int steps, uint64_t seed) {
  return json{{"prompt", prompt}, {"size", "64x64"}, {"steps", steps}, {"seed", seed}}.dump();
}

JobWatcher::JobWatcher(int port, const std::string& id) : id_(id) {
  future_ = std::async(std::launch::async, [port, id] {
    std::vector<SseEvent> out;
    SseStream stream(port, "GET", "/v1/jobs/" + id + "/events");
    if (stream.status() != 200) return out;
    for (;;) {
      auto e = stream.next(std::chrono::seconds(300));
      if (!e) break;
      out.push_back(*e);
      if (e->name == "completed" || e->name == "failed" || e->name == "cancelled") break;
    }
    return out;
  });
}

const std::vector<SseEvent>& JobWatcher::events(std::chrono::milliseconds timeout) {
  if (!done_ && future_.wait_for(timeout) == std::future_status::ready) {
    events_ = future_.get();
    done_ = true;
  }
  return events_;
}

std::string terminal_of(const std::vector<SseEvent>& events) {
  for (const auto& e : events)
    if (e.name == "completed" || e.name == "failed" || e.name == "cancelled") return e.name;
  return "";
}

std::string check_order(const std::vector<SseEvent>& events) {
  size_t i = 0;
  while (i < events.size() && events[i].name == "queued") ++i;
  int last_step = 0;
  int terminals = 0;
  for (; i < events.size(); ++i) {
    const auto& e = events[i];
    const json d = json::parse(e.data, nullptr, false);
    if (terminals) return "event " + e.name + " after the terminal one";
    if (e.name == "started") {
      last_step = 0;  // a new run (another worker took over)
    } else if (e.name == "step") {
      const int step = d.value("step", -1);
      if (step <= last_step) return "step " + std::to_string(step) + " after step " + std::to_string(last_step);
      last_step = step;
    } else if (e.name == "completed" || e.name == "failed" || e.name == "cancelled") {
      ++terminals;
    } else if (e.name != "stage") {
      return "unexpected event " + e.name;
    }
  }
  return terminals == 1 ? "" : "terminal events: " + std::to_string(terminals);
}

int terminal_entries(const std::string& redis_url, const std::string& id) {
  cluster::RedisConnection r(cluster::RedisUrl::parse(redis_url), std::chrono::seconds(2), std::chrono::seconds(5));
  const cluster::Reply range = r.command({"XRANGE", cluster::events_key(id), "-", "+"});
  int n = 0;
  for (const auto& entry : range.elements) n += cluster::is_terminal_fields(entry[1]);
  return n;
}

int64_t stream_length(const std::string& redis_url) {
  cluster::RedisConnection r(cluster::RedisUrl::parse(redis_url), std::chrono::seconds(2), std::chrono::seconds(5));
  return r.command({"XLEN", cluster::kJobsStream}).integer;
}

}  // namespace flux::test
