#include "cluster/cluster_worker.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "cluster/job_codec.h"
#include "cluster/reconnecting.h"
#include "pipeline/lora_dir.h"

namespace flux::cluster {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One job taken from flux:jobs.
struct ClusterWorker::Claimed {
  std::string entry;  // stream entry id
  std::string id;     // job id
  JobPayload payload;
};

// The engine's events for the claim thread: the engine posts each into it (never calling the claim thread).
class ClusterWorker::Inbox {
 public:
  void push(std::shared_ptr<const JobEvent> e) {
    {
      std::lock_guard lock(mutex_);
      events_.push_back(std::move(e));
    }
    wake_.notify_one();
  }
  std::deque<std::shared_ptr<const JobEvent>> take(milliseconds wait) {
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, wait, [this] { return !events_.empty(); });
    std::deque<std::shared_ptr<const JobEvent>> out;
    out.swap(events_);
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<const JobEvent>> events_;
};

namespace {

constexpr const char* kCancelDuplicate = "duplicate";  // the reason of a local cancel: another entry runs the job

std::string ttl_seconds(double ttl_s) { return std::to_string(std::max<int64_t>(1, static_cast<int64_t>(ttl_s))); }

// [[id, [field, value, ...]], ...] -> the first entry that is not deleted (nil).
std::optional<std::pair<std::string, const Reply*>> first_entry(const Reply& entries) {
  if (!entries.is_array()) return std::nullopt;
  for (const Reply& e : entries.elements)
    if (e.is_array() && e.size() == 2 && e[1].is_array()) return std::make_pair(e[0].str, &e[1]);
  return std::nullopt;
}

}  // namespace

ClusterWorker::ClusterWorker(std::unique_ptr<Engine> engine, ClusterOptions options)
    : engine_(std::move(engine)), options_(std::move(options)) {
  thread_ = std::thread([this] { claim_loop(); });
}

ClusterWorker::~ClusterWorker() { shutdown(); }

std::string ClusterWorker::submit(GenerateRequest) {
  throw NotReady("this node is a worker (serve --role worker): submit jobs to an API node");
}

void ClusterWorker::shutdown() {
  std::call_once(shutdown_once_, [this] {
    stopping_ = true;
    engine_->shutdown();  // a running job ends as cancelled (server_stopping): left pending for another worker
    if (thread_.joinable()) thread_.join();
  });
}

std::string ClusterWorker::node_status_json() const {
  std::lock_guard lock(mutex_);
  nlohmann::json j = {
      {"role", "worker"}, {"name", options_.name}, {"queue", options_.url.text()}, {"redis", redis_up_ ? "up" : "down"},
      {"jobs", held_},    {"jobs_done", done_},    {"duplicates", duplicates_}};
  if (!last_error_.empty()) j["redis_error"] = last_error_;
  return j.dump();
}

std::string ClusterWorker::node_metrics() const {
  std::lock_guard lock(mutex_);
  const std::string label = "{worker=\"" + prometheus_label(options_.name) + "\"} ";
  return str_cat("# HELP flux_cluster_worker_jobs_held Jobs this worker holds (claimed from Redis, running).\n",
                 "# TYPE flux_cluster_worker_jobs_held gauge\n", "flux_cluster_worker_jobs_held", label, held_.size(),
                 "\n# HELP flux_cluster_worker_jobs_done_total Jobs this worker completed.\n",
                 "# TYPE flux_cluster_worker_jobs_done_total counter\n", "flux_cluster_worker_jobs_done_total", label,
                 done_, "\n# HELP flux_cluster_worker_duplicates_total Entries acknowledged without running: another ",
                 "entry of the same job runs it.\n# TYPE flux_cluster_worker_duplicates_total counter\n",
                 "flux_cluster_worker_duplicates_total", label, duplicates_, "\n");
}

void ClusterWorker::claim_loop() {
  Reconnecting redis(options_.url, stopping_, [this](bool up, const std::string& error) {
    std::lock_guard lock(mutex_);
    if (up != redis_up_)
      up ? log_info("cluster: worker ", options_.name, ": redis up")
         : log_warn("cluster: worker ", options_.name, ": redis down: ", error);
    redis_up_ = up;
    if (!error.empty()) last_error_ = error;
  });
  while (!stopping_) {
    const LoadStatus load = engine_->load_status();
    if (load.state != LoadState::ready) {
      if (load.state == LoadState::error) log_error("cluster: worker ", options_.name, ": ", load.error);
      std::this_thread::sleep_for(milliseconds(load.state == LoadState::error ? 1000 : 50));
      continue;
    }
    try {
      if (!model_published_) {
        const std::string model =
            nlohmann::json{{"model", load.model}, {"variant", load.variant ? variant_name(*load.variant) : ""}}.dump();
        redis.command({"SET", kModelKey, model});
        model_published_ = true;
      }
      publish_offer(redis);
      claim_next(redis);
    } catch (const std::exception& e) {
      if (!stopping_) {
        log_error("cluster: worker ", options_.name, ": ", e.what());
        std::this_thread::sleep_for(milliseconds(200));
      }
    }
  }
}

// One claim attempt: a stale pending job first, else a new one (blocking up to 1 s). True when a job was handled.
bool ClusterWorker::claim_next(Reconnecting& r) {
  Claimed job;
  const Reply stale = r.command(
      {"XAUTOCLAIM", kJobsStream, kGroup, options_.name, std::to_string(options_.visibility_ms), "0-0", "COUNT", "1"});
  auto entry = stale.is_array() && stale.size() >= 2 ? first_entry(stale[1]) : std::nullopt;
  Reply fresh;
  if (!entry) {
    fresh = r.command(
        {"XREADGROUP", "GROUP", kGroup, options_.name, "COUNT", "1", "BLOCK", "1000", "STREAMS", kJobsStream, ">"});
    if (fresh.is_nil() || !fresh.is_array() || fresh.size() == 0) return false;
    entry = first_entry(fresh[0][1]);
    if (!entry) return false;
  } else {
    log_info("cluster: worker ", options_.name, ": reclaimed entry ", entry->first, " (idle over ",
             options_.visibility_ms, " ms)");
  }
  job.entry = entry->first;
  job.id = entry->second->field("job");
  job.payload = payload_from_fields(*entry->second);
  handle(r, job);
  return true;
}

void ClusterWorker::handle(Reconnecting& r, const Claimed& job) {
  auto ack = [&] {
    r.command({"XACK", kJobsStream, kGroup, job.entry});
    r.command({"XDEL", kJobsStream, job.entry});
  };
  auto publish = [&](const JobEvent& e) {
    std::vector<std::string> argv = {"XADD", events_key(job.id), "MAXLEN", "~", "1000", "*"};
    for (auto& f : event_fields(e, options_.name)) argv.push_back(std::move(f));
    r.command(argv);
    r.command({"EXPIRE", events_key(job.id), ttl_seconds(options_.result_ttl_s)});
  };
  if (job.id.empty()) {  // not ours to run: drop the malformed entry
    log_error("cluster: worker ", options_.name, ": entry ", job.entry, " has no job field; dropped");
    ack();
    return;
  }
  // Exactly once: a job whose terminal event exists (its worker died between the event and XACK) is only acked.
  const Reply last = r.command({"XREVRANGE", events_key(job.id), "+", "-", "COUNT", "1"});
  if (last.is_array() && last.size() == 1 && is_terminal_fields(last[0][1])) {
    log_info("cluster: worker ", options_.name, ": job ", job.id, " already finished; acknowledged");
    ack();
    return;
  }
  // Exactly once, when one job is two entries (an XADD sent again): the first entry to claim the job id runs it; a
  // re-claim of the same entry (its worker died) runs it again, counting tries as below.
  const std::string owner = claim_owner(r, job);
  if (owner != job.entry) {
    log_info("cluster: worker ", options_.name, ": entry ", job.entry, " duplicates job ", job.id, " (run by entry ",
             owner, "); acknowledged");
    ack();
    std::lock_guard lock(mutex_);
    duplicates_ += 1;
    return;
  }
  const Reply pending = r.command({"XPENDING", kJobsStream, kGroup, job.entry, job.entry, "1"});
  const int64_t deliveries = pending.is_array() && pending.size() == 1 ? pending[0][3].integer : 1;
  JobEvent terminal;
  terminal.job_id = job.id;
  if (deliveries > options_.max_tries) {
    terminal.kind = JobEventKind::failed;
    terminal.error = str_cat("failed after ", options_.max_tries,
                             " tries: the worker running it stopped each time (delivered ", deliveries, " times)");
    log_warn("cluster: worker ", options_.name, ": job ", job.id, ": ", terminal.error);
    publish(terminal);
    ack();
    return;
  }
  if (!r.command({"GET", cancel_key(job.id)}).is_nil()) {
    terminal.kind = JobEventKind::cancelled;
    terminal.reason = kCancelByUser;
    publish(terminal);
    ack();
    return;
  }
  run(r, job);
}

void ClusterWorker::publish_offer(Reconnecting& r) {
  const auto now = Clock::now();
  if (now < next_offer_) return;
  next_offer_ = now + std::chrono::seconds(5);
  const LoadStatus load = engine_->load_status();
  nlohmann::json loras = nlohmann::json::array();
  if (!options_.lora_dir.empty()) {
    try {
      for (const LoraFileInfo& f : list_lora_dir(options_.lora_dir))
        loras.push_back({{"name", f.name}, {"size", f.size}, {"format", f.format}});
    } catch (const Error& e) {
      log_warn("cluster: worker ", options_.name, ": ", e.what());
    }
  }
  const nlohmann::json offer = {
      {"model", load.model}, {"variant", load.variant ? variant_name(*load.variant) : ""}, {"loras", std::move(loras)}};
  r.command({"SET", worker_key(options_.name), offer.dump(), "EX", "15"});
  r.command({"SADD", kWorkersKey, options_.name});
}

std::string ClusterWorker::claim_owner(Reconnecting& r, const Claimed& job) {
  const Reply previous =
      r.command({"SET", owner_key(job.id), job.entry, "NX", "GET", "EX", ttl_seconds(options_.result_ttl_s)});
  return previous.is_nil() ? job.entry : previous.str;
}

void ClusterWorker::run(Reconnecting& r, const Claimed& job) {
  GenerateRequest request;
  std::string local;
  auto inbox = std::make_shared<Inbox>();
  std::optional<JobEvent> refused;
  try {
    request = decode_request(job.payload, options_.max_image_pixels);
    resolve_loras(request, options_.lora_dir);
    if (const char* crash = std::getenv("FLUX_TEST_CRASH_ON_PROMPT"); crash && request.prompt == crash) {
      log_error("cluster: worker ", options_.name, ": FLUX_TEST_CRASH_ON_PROMPT matched job ", job.id, "; aborting");
      std::abort();
    }
    local = engine_->submit(request);
  } catch (const Error& e) {
    if (stopping_) return;  // not run: left pending for another worker
    refused = JobEvent{};
    refused->kind = JobEventKind::failed;
    refused->job_id = job.id;
    refused->error = e.what();
  }
  {
    std::lock_guard lock(mutex_);
    held_ = {job.id};
  }
  log_info("cluster: worker ", options_.name, ": running job ", job.id, " (entry ", job.entry, ")");
  // The Post runs the handler at once on the engine's thread: it only queues the event into this thread's inbox.
  const uint64_t subscription = refused
                                    ? 0
                                    : engine_->subscribe(
                                          local, [](std::function<void()> f) { f(); },
                                          [inbox](std::shared_ptr<const JobEvent> e) { inbox->push(std::move(e)); });
  if (refused) inbox->push(std::make_shared<const JobEvent>(*refused));
  const milliseconds heartbeat(std::max(1, options_.visibility_ms / 3));
  Clock::time_point next_heartbeat = Clock::now() + heartbeat;
  bool finished = false;
  bool started_seen = false;
  bool lost = false;  // another entry of the job owns it now: publish nothing more
  while (!finished) {
    const auto events = inbox->take(milliseconds(options_.cancel_poll_ms));
    // Still the job's owner (checked before publishing)? After Redis lost its data the API sends the job again: the
    // first entry to (re)claim the id keeps it, and a run that lost it stops without a terminal event.
    if (!refused && !lost && claim_owner(r, job) != job.entry) {
      log_warn("cluster: worker ", options_.name, ": job ", job.id, " is run by another entry now; stopping");
      lost = true;
      engine_->cancel(local, kCancelDuplicate);
    }
    for (const auto& event : events) {
      if (event->kind == JobEventKind::queued) continue;
      if (event->kind == JobEventKind::started && started_seen) continue;  // a replay of the subscription
      started_seen = started_seen || event->kind == JobEventKind::started;
      if (event->kind == JobEventKind::cancelled && event->reason == kCancelServerStopping) {
        finished = true;  // this node stops: the entry stays pending, another worker reclaims it
        break;
      }
      const JobEventKind k = event->kind;
      const bool terminal = k == JobEventKind::completed || k == JobEventKind::failed || k == JobEventKind::cancelled;
      if (lost) {
        if (!terminal) continue;
        r.command({"XACK", kJobsStream, kGroup, job.entry});  // another entry of the job runs it
        r.command({"XDEL", kJobsStream, job.entry});
        finished = true;
        std::lock_guard lock(mutex_);
        duplicates_ += 1;
        break;
      }
      JobEvent copy = *event;
      copy.job_id = job.id;
      if (event->kind == JobEventKind::completed) {
        const auto& png = event->result->encoded;
        r.command(
            {"SET", png_key(job.id), std::string(png.begin(), png.end()), "EX", ttl_seconds(options_.result_ttl_s)});
      }
      std::vector<std::string> argv = {"XADD", events_key(job.id), "MAXLEN", "~", "1000", "*"};
      for (auto& f : event_fields(copy, options_.name)) argv.push_back(std::move(f));
      r.command(argv);
      if (terminal) {
        r.command({"EXPIRE", events_key(job.id), ttl_seconds(options_.result_ttl_s)});
        r.command({"XACK", kJobsStream, kGroup, job.entry});
        r.command({"XDEL", kJobsStream, job.entry});
        finished = true;
        std::lock_guard lock(mutex_);
        done_ += event->kind == JobEventKind::completed;
        break;
      }
    }
    if (finished) break;
    if (!r.command({"GET", cancel_key(job.id)}).is_nil()) engine_->cancel(local, kCancelByUser);
    publish_offer(r);
    if (Clock::now() >= next_heartbeat) {  // still ours: reset the entry's idle time (JUSTID: no delivery counted)
      r.command({"XCLAIM", kJobsStream, kGroup, options_.name, "0", job.entry, "JUSTID"});
      next_heartbeat = Clock::now() + heartbeat;
    }
  }
  if (subscription) engine_->unsubscribe(local, subscription);
  std::lock_guard lock(mutex_);
  held_.clear();
  log_info("cluster: worker ", options_.name, ": job ", job.id, " done");
}

}  // namespace flux::cluster
