#include "server/metrics.h"

#include <sstream>
#include <tuple>

#include "server/routes.h"

namespace flux::server {

std::string route_template(const std::string& path) {
  for (const RouteSpec& route : route_table())
    if (path_matches(route.path, path)) return route.path;
  return "other";
}

void Metrics::count_request(const std::string& method, const std::string& route, int status, double seconds) {
  requests_[{method, route, status}] += 1;
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (seconds <= kBuckets[i]) bucket_counts_[i] += 1;
  duration_count_ += 1;
  duration_sum_ += seconds;
}

std::string Metrics::render(const EngineStats& stats, const LoadStatus& load) const {
  std::ostringstream out;
  out << "# HELP flux_http_requests_total HTTP requests by method, route and status.\n"
      << "# TYPE flux_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [method, route, status] = key;
    out << "flux_http_requests_total{method=\"" << method << "\",route=\"" << route << "\",status=\"" << status
        << "\"} " << n << "\n";
  }
  out << "# HELP flux_http_request_duration_seconds Time to answer a request (streams: until the end).\n"
      << "# TYPE flux_http_request_duration_seconds histogram\n";
  for (size_t i = 0; i < kBuckets.size(); ++i)
    out << "flux_http_request_duration_seconds_bucket{le=\"" << kBuckets[i] << "\"} " << bucket_counts_[i] << "\n";
  out << "flux_http_request_duration_seconds_bucket{le=\"+Inf\"} " << duration_count_ << "\n"
      << "flux_http_request_duration_seconds_sum " << duration_sum_ << "\n"
      << "flux_http_request_duration_seconds_count " << duration_count_ << "\n";
  out << "# HELP flux_queue_depth Jobs waiting in the queue.\n# TYPE flux_queue_depth gauge\n"
      << "flux_queue_depth " << stats.queue_depth << "\n"
      << "# HELP flux_job_running 1 while a job runs.\n# TYPE flux_job_running gauge\n"
      << "flux_job_running " << (stats.running ? 1 : 0) << "\n"
      << "# HELP flux_jobs_total Jobs by outcome.\n# TYPE flux_jobs_total counter\n"
      << "flux_jobs_total{outcome=\"submitted\"} " << stats.jobs_submitted << "\n"
      << "flux_jobs_total{outcome=\"completed\"} " << stats.jobs_completed << "\n"
      << "flux_jobs_total{outcome=\"failed\"} " << stats.jobs_failed << "\n"
      << "flux_jobs_total{outcome=\"cancelled\"} " << stats.jobs_cancelled << "\n"
      << "# HELP flux_job_duration_seconds Run time of completed jobs.\n# TYPE flux_job_duration_seconds summary\n"
      << "flux_job_duration_seconds_sum " << stats.job_seconds_sum << "\n"
      << "flux_job_duration_seconds_count " << stats.jobs_completed << "\n"
      << "# HELP flux_step_duration_seconds Wall time of a denoising step.\n"
      << "# TYPE flux_step_duration_seconds summary\n"
      << "flux_step_duration_seconds_sum " << stats.step_seconds_sum << "\n"
      << "flux_step_duration_seconds_count " << stats.steps << "\n"
      << "# HELP flux_model_load_state 1 for the current load state.\n# TYPE flux_model_load_state gauge\n";
  for (LoadState s : {LoadState::downloading, LoadState::loading, LoadState::ready, LoadState::error})
    out << "flux_model_load_state{state=\"" << load_state_name(s) << "\"} " << (load.state == s ? 1 : 0) << "\n";
  out << "# HELP flux_model_load_progress Fraction of the model bytes loaded.\n# TYPE flux_model_load_progress gauge\n"
      << "flux_model_load_progress " << load.progress() << "\n";
  return out.str();
}

}  // namespace flux::server
