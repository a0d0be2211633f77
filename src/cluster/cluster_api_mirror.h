// ClusterApi's record of one job (cluster_api.cc, cluster_api_events.cc): guarded by ClusterApi::mutex_, except
// `payload`, which only the command link's thread touches.
#pragma once

#include <optional>

#include "cluster/cluster_api.h"
#include "cluster/job_codec.h"

namespace flux::cluster {

struct ClusterApi::Mirror {
  std::string id;
  GenerateRequest request;
  std::optional<JobPayload> payload;  // encoded on the link thread at the first XADD, kept for a resend
  JobStatus status = JobStatus::queued;
  uint64_t sequence = 0;
  Clock::time_point created, started, finished;
  int64_t created_unix = 0;
  int step = 0, total = 0;
  bool sent = false, sending = false;  // added to flux:jobs / an XADD under way
  bool cancel_requested = false, cancel_sent = false;
  int published_position = 0;
  std::string last_entry = "0-0";  // the latest event stream entry applied
  std::string worker;
  std::shared_ptr<const JobEvent> last_stage, last_step, terminal;
  std::shared_ptr<const JobResult> result;
};

inline double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace flux::cluster
