// Prometheus text exposition of the server: requests by route and status (with a latency histogram), the
// queue, job counts and durations, denoising step time, load state. Used on the I/O thread only.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "engine/engine.h"

namespace flux::server {

class Metrics {
 public:
  // `route` is the path template ("/v1/jobs/{id}"), so job ids do not create new series.
  void count_request(const std::string& method, const std::string& route, int status, double seconds);
  std::string render(const EngineStats& stats, const LoadStatus& load) const;

  static constexpr std::array<double, 8> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 10.0};

 private:
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;  // (method, route, status)
  std::array<uint64_t, kBuckets.size()> bucket_counts_{};
  uint64_t duration_count_ = 0;
  double duration_sum_ = 0;
};

// The path template of a request path, for metrics and logs: "/v1/jobs/job_1_ab/events" -> "/v1/jobs/{id}/events".
std::string route_template(const std::string& path);

}  // namespace flux::server
