// A job: one GenerateRequest going through the engine (queued -> running -> completed | failed | cancelled),
// the events it emits, and the snapshot a client can ask for. The engine owns every Job; clients see copies.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace flux {

enum class JobStatus { queued, running, completed, failed, cancelled };
const char* job_status_name(JobStatus s);
inline bool is_terminal(JobStatus s) {
  return s == JobStatus::completed || s == JobStatus::failed || s == JobStatus::cancelled;
}

enum class JobEventKind { queued, started, step, completed, failed, cancelled };
const char* job_event_name(JobEventKind k);

// The finished product of a job: the pipeline's result plus, when the engine was given an encoder, the image
// already encoded (on the compute thread, so the I/O thread only copies bytes).
struct JobResult {
  GenerateResult result;
  std::vector<uint8_t> encoded;  // e.g. PNG; empty without an encoder
};

// One event of a job. Shared (immutable) between every subscriber of the job.
struct JobEvent {
  JobEventKind kind = JobEventKind::queued;
  std::string job_id;
  int position = 0;                                             // queued: 0 = next to run
  Stage stage = Stage::encode_text;                             // step
  int step = 0;                                                 // step: steps done
  int total = 0;                                                // step: steps in all
  double elapsed_s = 0;                                         // step: since the job started
  std::shared_ptr<const Image> preview;                         // step, when requested
  std::shared_ptr<const std::vector<uint8_t>> preview_encoded;  // step, with an encoder
  std::shared_ptr<const JobResult> result;                      // completed
  std::string error;                                            // failed
};

// What GET /v1/jobs/{id} shows.
struct JobInfo {
  std::string id;
  JobStatus status = JobStatus::queued;
  int position = 0;  // queued only
  int step = 0;
  int total = 0;
  int width = 0, height = 0, steps = 0;
  uint64_t seed = 0;
  double queued_s = 0;   // time spent waiting in the queue (so far, while queued)
  double running_s = 0;  // time spent running (so far, while running)
  StageTimings timings;  // completed
  std::string error;     // failed
};

// The engine-internal record of a job (guarded by the engine's mutex).
struct Job {
  using Clock = std::chrono::steady_clock;
  std::string id;
  GenerateRequest request;
  JobStatus status = JobStatus::queued;
  std::stop_source stop;
  Clock::time_point created, started, finished;
  std::shared_ptr<const JobEvent> last_step;  // the latest step event (replayed to late subscribers)
  std::shared_ptr<const JobEvent> terminal;   // completed / failed / cancelled (replayed likewise)
  std::shared_ptr<const JobResult> result;
  std::string error;
};

// Snapshot of a job (position supplied by the queue).
JobInfo job_info(const Job& job, int position, Job::Clock::time_point now);

}  // namespace flux
