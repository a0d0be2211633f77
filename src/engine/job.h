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

// stage: the pipeline entered a stage (encode_text, encode_image, denoise, decode); step: one denoising step done.
enum class JobEventKind { queued, started, stage, step, completed, failed, cancelled };
const char* job_event_name(JobEventKind k);

// The finished product of a job: the pipeline's result plus, when the engine was given an encoder, the image
// already encoded (on the compute thread, so the I/O thread only copies bytes).
struct JobResult {
  GenerateResult result;
  std::vector<uint8_t> encoded;    // e.g. PNG; empty without an encoder
  std::vector<uint8_t> thumbnail;  // EngineOptions::thumbnail_encoder's output; empty without one
};

// Why a job was cancelled (the `reason` of its cancelled event).
inline constexpr const char* kCancelByUser = "user";
inline constexpr const char* kCancelServerStopping = "server_stopping";

// One event of a job. Shared (immutable) between every subscriber of the job.
struct JobEvent {
  JobEventKind kind = JobEventKind::queued;
  std::string job_id;
  int position = 0;                                             // queued: 1 = next to run
  Stage stage = Stage::encode_text;                             // stage, step
  int step = 0;                                                 // step: denoising steps done, 1..total
  int total = 0;                                                // stage (denoise), step: steps in all
  double elapsed_s = 0;                                         // stage, step: since the job started
  std::shared_ptr<const Image> preview;                         // step, when requested
  std::shared_ptr<const std::vector<uint8_t>> preview_encoded;  // step, with an encoder
  std::shared_ptr<const JobResult> result;                      // completed
  std::string error;                                            // failed
  std::string reason;                                           // cancelled: kCancelByUser or kCancelServerStopping
};

// What GET /v1/jobs/{id} shows.
struct JobInfo {
  std::string id;
  JobStatus status = JobStatus::queued;
  int position = 0;  // queued: 1 = next to run; 0 when running or finished
  int step = 0;
  int total = 0;
  int width = 0, height = 0;
  int steps = 0;  // the effective count: the model's default applied once it is known (0 only before that)
  std::string prompt;
  int64_t created_unix = 0;  // submitted at, Unix seconds
  bool has_thumbnail = false;
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
  uint64_t sequence = 0;  // submission order
  Clock::time_point created, started, finished;
  int64_t created_unix = 0;
  int step = 0, total = 0;                     // denoising progress (total known from the denoise stage on)
  int published_position = 0;                  // the last queued position sent to subscribers
  std::string cancel_reason = kCancelByUser;   // set before the stop is requested
  std::shared_ptr<const JobEvent> last_stage;  // the latest stage event (replayed to late subscribers)
  std::shared_ptr<const JobEvent> last_step;   // the latest step event (replayed to late subscribers)
  std::shared_ptr<const JobEvent> terminal;    // completed / failed / cancelled (replayed likewise)
  std::shared_ptr<const JobResult> result;
  std::string error;
};

// Snapshot of a job: position = the queue's (1-based, or <= 0 when not waiting); default_steps = the loaded
// model's default step count (0 while unknown), shown for a job that asked for the default.
JobInfo job_info(const Job& job, int position, Job::Clock::time_point now, int default_steps = 0);

// A new job id: "job_<counter>_<16 random hex digits>" (unique across nodes and restarts, not guessable).
std::string new_job_id(uint64_t counter);

}  // namespace flux
