#include "engine/engine.h"

#include <algorithm>
#include <optional>

#include "base/log.h"
#include "base/thread_pool.h"

namespace flux {
namespace {

using Clock = Job::Clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::shared_ptr<JobEvent> make_event(JobEventKind kind, const std::string& id) {
  auto event = std::make_shared<JobEvent>();
  event->kind = kind;
  event->job_id = id;
  return event;
}

}  // namespace

Job::Clock::duration Engine::result_ttl() const {
  const double ttl_s = std::clamp(options_.result_ttl_s, 0.0, 365.0 * 86400);  // no overflow of time_point
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(ttl_s));
}

const char* load_state_name(LoadState s) {
  switch (s) {
    case LoadState::loading:
      return "loading";
    case LoadState::ready:
      return "ready";
    case LoadState::error:
      return "error";
    case LoadState::downloading:
      return "downloading";
  }
  return "unknown";
}

double LoadStatus::progress() const {
  if (state == LoadState::ready) return 1.0;
  if (bytes_total == 0) return 0.0;
  return std::min(1.0, static_cast<double>(bytes_done) / static_cast<double>(bytes_total));
}

Engine::Engine(PipelineFactory factory, EngineOptions options)
    : factory_(std::move(factory)), options_(std::move(options)), state_(options_.queue_size) {
  if (options_.n_threads >= 0) set_default_threads(options_.n_threads, /*low_priority=*/true);
  if (options_.fetch) state_.load.state = LoadState::downloading;  // reported before the loader starts
  loader_ = std::thread([this] { load_thread(); });
  worker_ = std::thread([this] { work_thread(); });
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  std::call_once(shutdown_once_, [this] {
    {
      std::lock_guard lock(mutex_);
      state_.stopping = true;
      while (auto job = state_.queue.pop()) {
        job->cancel_reason = kCancelServerStopping;
        finish_locked(job, JobStatus::cancelled, make_event(JobEventKind::cancelled, job->id));
      }
      if (state_.running) {
        state_.running->cancel_reason = kCancelServerStopping;
        state_.running->stop.request_stop();
      }
    }
    wake_.notify_all();
    if (loader_.joinable()) loader_.join();
    if (worker_.joinable()) worker_.join();
  });
}

LoadStatus Engine::load_status() const {
  std::lock_guard lock(mutex_);
  return state_.load;
}

MemoryStatus Engine::memory_status() const {
  std::lock_guard lock(mutex_);
  return state_.memory;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  EngineStats s = state_.stats;
  s.queue_depth = static_cast<int>(state_.queue.size());
  s.running = state_.running != nullptr;
  return s;
}

void Engine::load_thread() {
  lower_current_thread_priority();
  const auto t0 = Clock::now();
  LoadProgress progress = [this](const std::string& component, uint64_t done, uint64_t total) {
    std::lock_guard lock(mutex_);
    if (state_.stopping) throw Cancelled();
    state_.load.component = component;
    state_.load.bytes_done = done;
    state_.load.bytes_total = total;
  };
  try {
    if (options_.fetch) {
      options_.fetch([this](const DownloadStatus& d) {
        std::lock_guard lock(mutex_);
        if (state_.stopping) throw Cancelled();
        state_.load.download = d;
      });
      std::lock_guard lock(mutex_);
      state_.load.state = LoadState::loading;
    }
    std::unique_ptr<Pipeline> pipeline = factory_(progress);
    FLUX_CHECK(pipeline != nullptr, "engine: the pipeline factory returned no pipeline");
    if (options_.warmup) {
      std::stop_source warmup_stop;
      {
        std::lock_guard lock(mutex_);
        state_.load.component = "warmup";
      }
      const auto w0 = Clock::now();
      // Checked between steps: a shutdown during warm-up stops it through the progress sink.
      pipeline->run(
          options_.warmup_request,
          [&](const ProgressEvent&) {
            std::lock_guard lock(mutex_);
            if (state_.stopping) warmup_stop.request_stop();
          },
          warmup_stop.get_token());
      log_info("engine: warm-up generation took ", seconds_between(w0, Clock::now()), " s");
    }
    const std::string description = pipeline->describe();
    const Variant variant = pipeline->variant();
    MemoryStatus memory = pipeline->memory_status();
    {
      std::lock_guard lock(mutex_);
      if (state_.stopping) return;
      state_.memory = std::move(memory);
      state_.pipeline = std::move(pipeline);
      state_.load.state = LoadState::ready;
      state_.load.component.clear();
      state_.load.model = description;
      state_.load.variant = variant;
      state_.load.load_s = seconds_between(t0, Clock::now());
    }
    wake_.notify_all();
    log_info("engine: ready in ", seconds_between(t0, Clock::now()), " s: ", description);
  } catch (const std::exception& e) {
    std::lock_guard lock(mutex_);
    if (state_.stopping) return;
    state_.load.state = LoadState::error;
    state_.load.error = e.what();
    log_error("engine: loading failed: ", e.what());
    while (auto job = state_.queue.pop()) {
      job->error = str_cat("the models failed to load: ", e.what());
      auto event = make_event(JobEventKind::failed, job->id);
      event->error = job->error;
      finish_locked(job, JobStatus::failed, event);
    }
  }
}

void Engine::work_thread() {
  lower_current_thread_priority();
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        if (state_.stopping) return;
        const auto now = Clock::now();
        drop_expired_locked(now);
        if (state_.load.state == LoadState::ready && !state_.queue.empty()) break;
        // Sleep until work arrives or the next finished job expires.
        auto next = Clock::time_point::max();
        const auto ttl = result_ttl();
        for (const auto& [id, j] : state_.jobs)
          if (is_terminal(j->status)) next = std::min(next, j->finished + ttl);
        if (next == Clock::time_point::max()) {
          wake_.wait(lock);
        } else {
          wake_.wait_until(lock, next);
        }
      }
      job = state_.queue.pop();
      state_.running = job;
      job->status = JobStatus::running;
      job->started = Clock::now();
      publish_locked(job->id, make_event(JobEventKind::started, job->id), false);
      publish_positions_locked();
    }
    run_job(job);
  }
}

void Engine::run_job(const std::shared_ptr<Job>& job) {
  Pipeline* pipeline = nullptr;
  {
    std::lock_guard lock(mutex_);
    pipeline = state_.pipeline.get();
  }
  double last_denoise_elapsed = -1;
  std::optional<Stage> last_stage;
  // The pipeline's memory state, read on this thread (the one running it) and published as a snapshot.
  auto publish_memory = [&] {
    MemoryStatus memory = pipeline->memory_status();
    std::lock_guard lock(mutex_);
    state_.memory = std::move(memory);
  };
  // The pipeline reports each stage as it enters it (denoise with step 0) and then each denoising step: a new
  // stage is published as a `stage` event, a denoising step (1..total) as a `step` event, nothing else.
  const ProgressSink sink = [&](const ProgressEvent& p) {
    if (p.step == 0 || p.stage != Stage::denoise) publish_memory();
    const bool new_stage = !last_stage || *last_stage != p.stage;
    const bool denoise_step = p.stage == Stage::denoise && p.step > 0;
    last_stage = p.stage;
    if (!new_stage && !denoise_step) return;
    auto make = [&](JobEventKind kind) {
      auto event = make_event(kind, job->id);
      event->stage = p.stage;
      event->step = p.step;
      event->total = p.total;
      event->elapsed_s = p.elapsed_s;
      return event;
    };
    std::shared_ptr<JobEvent> stage_event = new_stage ? make(JobEventKind::stage) : nullptr;
    std::shared_ptr<JobEvent> step_event = denoise_step ? make(JobEventKind::step) : nullptr;
    if (step_event && p.preview) {
      step_event->preview = std::make_shared<const Image>(*p.preview);
      if (options_.encoder) {
        step_event->preview_encoded = std::make_shared<const std::vector<uint8_t>>(options_.encoder(*p.preview));
      }
    }
    std::lock_guard lock(mutex_);
    if (denoise_step) {
      if (last_denoise_elapsed >= 0) {
        state_.stats.steps += 1;
        state_.stats.step_seconds_sum += p.elapsed_s - last_denoise_elapsed;
      }
      last_denoise_elapsed = p.elapsed_s;
    } else if (p.stage == Stage::denoise) {
      last_denoise_elapsed = p.elapsed_s;
    }
    if (p.stage == Stage::denoise) {
      job->step = p.step;
      job->total = p.total;
    }
    if (stage_event) {
      job->last_stage = stage_event;
      publish_locked(job->id, stage_event, false);
    }
    if (step_event) {
      job->last_step = step_event;
      publish_locked(job->id, step_event, false);
    }
  };
  const GenerateRequest& request = job->request;
  try {
    pipeline->validate(request);
    auto result = std::make_shared<JobResult>();
    try {
      result->result = pipeline->run(request, sink, job->stop.get_token());
    } catch (...) {
      publish_memory();
      throw;
    }
    publish_memory();
    if (options_.encoder) result->encoded = options_.encoder(result->result.image);
    if (options_.thumbnail_encoder) result->thumbnail = options_.thumbnail_encoder(result->result.image);
    const StageTimings& t = result->result.timings;
    log_info("job ", job->id, ": completed ", request.width, "x", request.height, ", ", result->result.steps,
             " steps, seed ", result->result.seed, ": encode_text ", t.encode_text_s, " s, denoise ", t.denoise_s,
             " s, decode ", t.decode_s, " s, total ", t.total_s, " s");
    std::lock_guard lock(mutex_);
    job->result = result;
    auto event = make_event(JobEventKind::completed, job->id);
    event->result = result;
    finish_locked(job, JobStatus::completed, event);
  } catch (const Cancelled&) {
    log_info("job ", job->id, ": cancelled (", request.width, "x", request.height, ")");
    std::lock_guard lock(mutex_);
    finish_locked(job, JobStatus::cancelled, make_event(JobEventKind::cancelled, job->id));
  } catch (const std::exception& e) {
    log_warn("job ", job->id, ": failed: ", e.what());
    std::lock_guard lock(mutex_);
    job->error = e.what();
    auto event = make_event(JobEventKind::failed, job->id);
    event->error = e.what();
    finish_locked(job, JobStatus::failed, event);
  }
}

std::string Engine::submit(GenerateRequest request) {
  Pipeline* pipeline = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (state_.stopping) throw NotReady("the server is shutting down");
    if (state_.load.state == LoadState::error)
      throw NotReady(str_cat("the models failed to load: ", state_.load.error));
    if ((state_.load.state == LoadState::loading || state_.load.state == LoadState::downloading) &&
        !options_.queue_while_loading)
      throw NotReady(str_cat("the models are still loading (", static_cast<int>(state_.load.progress() * 100), "%)"));
    pipeline = state_.pipeline.get();
  }
  // The pipeline never changes once set; validate() is a const check of the request's fields.
  if (pipeline) pipeline->validate(request);
  std::lock_guard lock(mutex_);
  if (state_.stopping) throw NotReady("the server is shutting down");
  if (state_.queue.full()) throw QueueFull();
  auto job = std::make_shared<Job>();
  do {
    job->id = new_job_id(state_.next_job++);
  } while (state_.jobs.count(job->id));
  job->request = std::move(request);
  job->created = Clock::now();
  job->created_unix =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  job->sequence = state_.next_job - 1;
  state_.queue.push(job);
  job->published_position = static_cast<int>(state_.queue.size());
  state_.jobs.emplace(job->id, job);
  state_.stats.jobs_submitted += 1;
  wake_.notify_all();
  return job->id;
}

bool Engine::cancel(const std::string& id, const std::string& reason) {
  std::lock_guard lock(mutex_);
  auto it = state_.jobs.find(id);
  if (it == state_.jobs.end()) return false;
  const std::shared_ptr<Job> job = it->second;
  if (job->status == JobStatus::queued) {
    job->cancel_reason = reason;
    state_.queue.remove(id);
    finish_locked(job, JobStatus::cancelled, make_event(JobEventKind::cancelled, id));
    publish_positions_locked();
    return true;
  }
  if (job->status == JobStatus::running) {
    if (!job->stop.stop_requested()) job->cancel_reason = reason;
    job->stop.request_stop();  // the worker publishes `cancelled` when run() stops
    return true;
  }
  return false;
}

std::optional<JobInfo> Engine::info(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = state_.jobs.find(id);
  if (it == state_.jobs.end()) return std::nullopt;
  return job_info(*it->second, state_.queue.position(id) + 1, Clock::now(), default_steps_locked());
}

std::vector<JobInfo> Engine::list() const {
  std::lock_guard lock(mutex_);
  std::vector<const Job*> jobs;
  for (const auto& [id, job] : state_.jobs) jobs.push_back(job.get());
  std::sort(jobs.begin(), jobs.end(), [](const Job* a, const Job* b) { return a->sequence > b->sequence; });
  std::vector<JobInfo> out;
  const auto now = Clock::now();
  const int steps = default_steps_locked();
  for (const Job* job : jobs) out.push_back(job_info(*job, state_.queue.position(job->id) + 1, now, steps));
  return out;
}

int Engine::default_steps_locked() const { return state_.load.variant ? default_steps(*state_.load.variant) : 0; }

std::shared_ptr<const JobResult> Engine::result(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = state_.jobs.find(id);
  if (it == state_.jobs.end()) return nullptr;
  return it->second->result;
}

uint64_t Engine::subscribe(const std::string& id, Post post, EventHandler handler) {
  std::lock_guard lock(mutex_);
  auto it = state_.jobs.find(id);
  if (it == state_.jobs.end()) return 0;
  const Job& job = *it->second;
  std::vector<std::shared_ptr<const JobEvent>> current;
  switch (job.status) {
    case JobStatus::queued: {
      auto event = make_event(JobEventKind::queued, id);
      event->position = state_.queue.position(id) + 1;
      current.push_back(event);
      break;
    }
    case JobStatus::running:
      current.push_back(make_event(JobEventKind::started, id));
      if (job.last_stage) current.push_back(job.last_stage);
      if (job.last_step && job.last_stage && job.last_stage->stage == Stage::denoise) current.push_back(job.last_step);
      break;
    default:
      current.push_back(job.terminal);
  }
  for (const auto& event : current) post([handler, event] { handler(event); });
  const uint64_t subscription = state_.next_subscription++;
  if (!is_terminal(job.status)) state_.subscribers[id].push_back({subscription, std::move(post), std::move(handler)});
  return subscription;
}

void Engine::unsubscribe(const std::string& id, uint64_t subscription) {
  std::lock_guard lock(mutex_);
  auto it = state_.subscribers.find(id);
  if (it == state_.subscribers.end()) return;
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(), [&](const Subscriber& s) { return s.id == subscription; }),
             list.end());
  if (list.empty()) state_.subscribers.erase(it);
}

void Engine::publish_locked(const std::string& id, std::shared_ptr<const JobEvent> event, bool last) {
  auto it = state_.subscribers.find(id);
  if (it == state_.subscribers.end()) return;
  for (const Subscriber& s : it->second) s.post([handler = s.handler, event] { handler(event); });
  if (last) state_.subscribers.erase(it);
}

void Engine::publish_positions_locked() {
  const auto& jobs = state_.queue.jobs();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const int position = static_cast<int>(i) + 1;
    if (jobs[i]->published_position == position) continue;  // only changes are sent
    jobs[i]->published_position = position;
    if (!state_.subscribers.count(jobs[i]->id)) continue;
    auto event = make_event(JobEventKind::queued, jobs[i]->id);
    event->position = position;
    publish_locked(jobs[i]->id, event, false);
  }
}

void Engine::finish_locked(const std::shared_ptr<Job>& job, JobStatus status, std::shared_ptr<JobEvent> event) {
  if (event->kind == JobEventKind::cancelled) event->reason = job->cancel_reason;
  job->status = status;
  job->finished = Clock::now();
  job->terminal = event;
  if (state_.running == job) state_.running.reset();
  switch (status) {
    case JobStatus::completed:
      state_.stats.jobs_completed += 1;
      state_.stats.job_seconds_sum += seconds_between(job->started, job->finished);
      break;
    case JobStatus::failed:
      state_.stats.jobs_failed += 1;
      break;
    case JobStatus::cancelled:
      state_.stats.jobs_cancelled += 1;
      break;
    default:
      break;
  }
  publish_locked(job->id, std::move(event), /*last=*/true);
  drop_excess_finished_locked();
  wake_.notify_all();  // the worker recomputes the next expiry
}

void Engine::drop_excess_finished_locked() {
  std::vector<std::map<std::string, std::shared_ptr<Job>>::iterator> finished;
  for (auto it = state_.jobs.begin(); it != state_.jobs.end(); ++it)
    if (is_terminal(it->second->status)) finished.push_back(it);
  if (finished.size() <= options_.max_finished_jobs) return;
  std::sort(finished.begin(), finished.end(), [](const auto& a, const auto& b) {
    return a->second->finished < b->second->finished ||
           (a->second->finished == b->second->finished && a->second->sequence < b->second->sequence);
  });
  const size_t excess = finished.size() - options_.max_finished_jobs;
  for (size_t i = 0; i < excess; ++i) {
    state_.subscribers.erase(finished[i]->first);
    state_.jobs.erase(finished[i]);
  }
}

void Engine::drop_expired_locked(Clock::time_point now) {
  const auto ttl = result_ttl();
  for (auto it = state_.jobs.begin(); it != state_.jobs.end();) {
    if (is_terminal(it->second->status) && it->second->finished + ttl <= now) {
      state_.subscribers.erase(it->first);
      it = state_.jobs.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace flux
