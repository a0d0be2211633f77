// Engine: the asynchronous façade over a Pipeline, used by the server and the CLI (DESIGN.md, "Threading").
// - A loader thread builds the pipeline through the factory (reporting byte progress), optionally runs one
//   small warm-up generation, then marks the engine ready.
// - One compute worker (lowered priority) runs one job at a time from a bounded FIFO queue; a running job
//   stops within one transformer block when cancelled (std::stop_token).
// - Events of a job are delivered to each subscriber through the subscriber's own `Post` (e.g. asio::post to
//   a connection's executor), in order. A late subscriber first receives the job's current state.
// - Finished jobs (and their results) are kept for `result_ttl_s`, and at most `max_finished_jobs` of them
//   (the oldest dropped first).
// Ownership: every piece of shared state lives in `State`, guarded by one mutex (priority-inheriting), held only
// for bookkeeping (never during loading or compute, never while calling a subscriber).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "engine/job.h"
#include "engine/job_queue.h"
#include "engine/job_service.h"
#include "pipeline/pipeline.h"

namespace flux {

using PipelineFactory = std::function<std::unique_ptr<Pipeline>(const LoadProgress&)>;
using ImageEncoder = std::function<std::vector<uint8_t>(const Image&)>;

// One file of a download in progress (EngineOptions::fetch).
struct DownloadStatus {
  std::string file;  // being downloaded
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  double bytes_per_s = 0;
  size_t file_index = 0;  // 0-based, of n_files to download
  size_t n_files = 0;
};
using DownloadStatusSink = std::function<void(const DownloadStatus&)>;

struct EngineOptions {
  static GenerateRequest small_request() {
    GenerateRequest r;
    r.prompt = "warm-up";
    r.width = r.height = 256;
    r.steps = 1;
    return r;
  }
  size_t queue_size = 8;             // waiting jobs (the running one not included)
  double result_ttl_s = 3600;        // finished jobs are dropped this long after they end
  size_t max_finished_jobs = 100;    // finished jobs kept at most (the oldest go first)
  bool queue_while_loading = false;  // accept jobs before the models are loaded
  int n_threads = -1;                // kernel pool: -1 = leave it alone, 0 = cores (low priority), N threads
  bool warmup = false;               // run one small generation after loading, before ready
  GenerateRequest warmup_request = small_request();  // what the warm-up generates
  ImageEncoder encoder;                              // when set: results and previews are encoded on the compute thread
  ImageEncoder thumbnail_encoder;                    // when set: JobResult::thumbnail, made on the compute thread
  // When set: runs on the loader thread before the factory (e.g. downloads the model files by name), reporting
  // through its sink (state `downloading`); the sink throws Cancelled once the engine is shutting down.
  std::function<void(const DownloadStatusSink&)> fetch;
};

// downloading: EngineOptions::fetch runs (model files come from the network), then loading.
enum class LoadState { loading, ready, error, downloading };
const char* load_state_name(LoadState s);

struct LoadStatus {
  LoadState state = LoadState::loading;
  std::string component;  // being loaded ("warmup" while warming up)
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  double progress() const;  // 0..1
  std::string error;        // state == error
  std::string model;        // Pipeline::describe() once loaded
  std::optional<Variant> variant;
  double load_s = 0;                       // time to load (and warm up)
  std::optional<DownloadStatus> download;  // the latest download report (kept after the download ends)
};

struct EngineStats {
  int queue_depth = 0;
  bool running = false;
  uint64_t jobs_submitted = 0, jobs_completed = 0, jobs_failed = 0, jobs_cancelled = 0;
  double job_seconds_sum = 0;   // completed jobs, from start to end
  uint64_t steps = 0;           // denoising steps run
  double step_seconds_sum = 0;  // wall time of those steps
};

// Why submit() refused a job.
struct QueueFull : Error {
  QueueFull() : Error("the job queue is full") {}
};
struct NotReady : Error {
  explicit NotReady(const std::string& why) : Error(why) {}
};

class Engine : public JobService {
 public:
  // Starts the loader thread and the compute worker at once.
  Engine(PipelineFactory factory, EngineOptions options);
  // Cancels every job, waits for the threads (see shutdown()).
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  LoadStatus load_status() const override;
  EngineStats stats() const override;
  // What the pipeline keeps resident and its plan (Pipeline::memory_status): a snapshot the compute thread
  // (or the loader) refreshes at each stage and after each job; empty budget until loaded.
  MemoryStatus memory_status() const override;

  // Queues a job and returns its id. Throws NotReady (models loading without queue_while_loading, or failed
  // to load), QueueFull, or Error from Pipeline::validate (once loaded).
  std::string submit(GenerateRequest request) override;
  // Cancels a queued or running job; its cancelled event carries `reason`. False when the id is unknown or the
  // job already finished.
  bool cancel(const std::string& id, const std::string& reason = kCancelByUser) override;
  std::optional<JobInfo> info(const std::string& id) const override;
  // Every known job (queued, running, and finished ones not yet dropped), newest first.
  std::vector<JobInfo> list() const override;
  std::shared_ptr<const JobResult> result(const std::string& id) const override;

  // Subscribes to a job's events: the current state is delivered first (queued with position; or started, the
  // current stage and the latest step; or the terminal event). Returns 0 when the id is unknown, else a subscription
  // id.
  uint64_t subscribe(const std::string& id, Post post, EventHandler handler) override;
  void unsubscribe(const std::string& id, uint64_t subscription) override;

  // Stops accepting work, cancels queued and running jobs (loading is abandoned at its next progress
  // report), joins the threads. Idempotent.
  void shutdown() override;

 private:
  struct Subscriber {
    uint64_t id;
    Post post;
    EventHandler handler;
  };
  struct State {
    LoadStatus load;
    std::unique_ptr<Pipeline> pipeline;  // set once by the loader, then used by the worker only
    JobQueue queue;
    std::map<std::string, std::shared_ptr<Job>> jobs;  // every known job (queued, running, finished)
    std::map<std::string, std::vector<Subscriber>> subscribers;
    std::shared_ptr<Job> running;
    EngineStats stats;
    MemoryStatus memory;
    uint64_t next_subscription = 1;
    uint64_t next_job = 1;
    bool stopping = false;
    explicit State(size_t queue_size) : queue(queue_size) {}
  };

  void load_thread();
  void work_thread();
  void run_job(const std::shared_ptr<Job>& job);
  // With mutex_ held: hands `event` to the job's subscribers (their Post queues the call).
  void publish_locked(const std::string& id, std::shared_ptr<const JobEvent> event, bool last);
  void publish_positions_locked();
  void finish_locked(const std::shared_ptr<Job>& job, JobStatus status, std::shared_ptr<JobEvent> event);
  Job::Clock::duration result_ttl() const;
  void drop_expired_locked(Job::Clock::time_point now);
  void drop_excess_finished_locked();
  int default_steps_locked() const;

  PipelineFactory factory_;
  EngineOptions options_;
  // Taken by the I/O thread (real-time in the server) and by the loader and compute threads: priority
  // inheritance keeps a preempted low-priority holder from delaying the I/O thread.
  mutable PriorityInheritanceMutex mutex_;
  std::condition_variable_any wake_;  // worker: a job was queued, the pipeline is ready, or stopping
  State state_;
  std::thread loader_;
  std::thread worker_;
  std::once_flag shutdown_once_;
};

}  // namespace flux
