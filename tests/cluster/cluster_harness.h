// For the cluster end-to-end tests: a redis-server, `fluxcpp serve --role api|worker` processes with the tiny
// test model (server_harness.h), SSE watchers that collect each job's events on their own thread, and the checks
// the tests share (event order, one terminal event per job in Redis).
#pragma once

#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "redis_server.h"
#include "server_harness.h"

namespace flux::test {

std::vector<std::string> worker_args(const std::string& redis_url, const std::string& name, int visibility_ms,
                                     int max_tries = 3);
std::vector<std::string> api_args(const std::string& redis_url, int queue_size);
std::vector<std::string> single_args();  // --role all, same model and limits (the reference images)

nlohmann::json get_json(int port, const std::string& path);
// POST /v1/jobs; the id, or "" (with the status in *status).
std::string submit_job(int port, const std::string& body, int* status = nullptr);
std::string job_body(const std::string& prompt, int steps, uint64_t seed);

// Every event of one job's SSE stream (GET /v1/jobs/{id}/events), read on its own thread until the terminal one.
class JobWatcher {
 public:
  JobWatcher(int port, const std::string& id);
  // The events (waits up to `timeout` for the terminal one; the list ends early when it does not come).
  const std::vector<SseEvent>& events(std::chrono::milliseconds timeout);
  const std::string& id() const { return id_; }

 private:
  std::string id_;
  std::future<std::vector<SseEvent>> future_;
  std::vector<SseEvent> events_;
  bool done_ = false;
};

// "" when `events` are in order: a queued prefix, then one or more runs (started, stages and steps counting up;
// a run that a dead worker left is followed by another started), exactly one terminal event, last. Else why not.
std::string check_order(const std::vector<SseEvent>& events);
// The terminal event's name ("completed", ...) or "".
std::string terminal_of(const std::vector<SseEvent>& events);
// The number of terminal entries in flux:job:<id>:events.
int terminal_entries(const std::string& redis_url, const std::string& id);
// flux:jobs entries left (waiting or pending).
int64_t stream_length(const std::string& redis_url);

}  // namespace flux::test
