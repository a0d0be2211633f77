#include "engine/job.h"

#include <cstdio>
#include <random>

#include "base/error.h"

namespace flux {

std::string new_job_id(uint64_t counter) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(rng()));
  return str_cat("job_", counter, "_", hex);
}

const char* job_status_name(JobStatus s) {
  switch (s) {
    case JobStatus::queued:
      return "queued";
    case JobStatus::running:
      return "running";
    case JobStatus::completed:
      return "completed";
    case JobStatus::failed:
      return "failed";
    case JobStatus::cancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* job_event_name(JobEventKind k) {
  switch (k) {
    case JobEventKind::queued:
      return "queued";
    case JobEventKind::started:
      return "started";
    case JobEventKind::stage:
      return "stage";
    case JobEventKind::step:
      return "step";
    case JobEventKind::completed:
      return "completed";
    case JobEventKind::failed:
      return "failed";
    case JobEventKind::cancelled:
      return "cancelled";
  }
  return "unknown";
}

JobInfo job_info(const Job& job, int position, Job::Clock::time_point now, int default_steps) {
  using seconds = std::chrono::duration<double>;
  JobInfo info;
  info.id = job.id;
  info.status = job.status;
  info.position = job.status == JobStatus::queued && position > 0 ? position : 0;
  info.step = job.step;
  info.total = job.total;
  info.width = job.request.width;
  info.height = job.request.height;
  info.steps = job.request.steps > 0 ? job.request.steps : default_steps;
  info.seed = job.request.seed;
  info.prompt = job.request.prompt;
  info.created_unix = job.created_unix;
  if (job.status == JobStatus::queued) {
    info.queued_s = seconds(now - job.created).count();
  } else if (job.started != Job::Clock::time_point{}) {
    info.queued_s = seconds(job.started - job.created).count();
    const auto end = is_terminal(job.status) ? job.finished : now;
    info.running_s = seconds(end - job.started).count();
  } else {
    info.queued_s = seconds(job.finished - job.created).count();  // cancelled while queued
  }
  if (job.result) {
    info.timings = job.result->result.timings;
    info.steps = job.result->result.steps;
    // The denoising steps that ran (img2img runs fewer than `steps`; a result that does not say ran them all).
    const GenerateResult& r = job.result->result;
    info.step = info.total = r.steps_run > 0 ? r.steps_run : r.steps;
    info.has_thumbnail = !job.result->thumbnail.empty();
  }
  info.error = job.error;
  return info;
}

}  // namespace flux
