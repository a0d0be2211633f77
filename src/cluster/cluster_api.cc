#include "cluster/cluster_api.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "cluster/cluster_api_mirror.h"
#include "cluster/reconnecting.h"
#include "io/image.h"

namespace flux::cluster {
namespace {

std::string ttl_seconds(double ttl_s) { return std::to_string(std::max<int64_t>(1, static_cast<int64_t>(ttl_s))); }

}  // namespace

ClusterApi::ClusterApi(ClusterOptions options, ImageEncoder thumbnail_encoder)
    : options_(std::move(options)), thumbnail_encoder_(std::move(thumbnail_encoder)) {
  RedisLink::Options link;
  link.url = options_.url;
  link.name = "api " + options_.name;
  link.on_up = [this](RedisConnection& r) { on_up(r); };
  link.idle = [this](RedisConnection& r) { poll(r); };
  link_ = std::make_unique<RedisLink>(std::move(link));
  events_ = std::thread([this] { events_loop(); });
}

ClusterApi::~ClusterApi() { shutdown(); }

void ClusterApi::shutdown() {
  std::call_once(shutdown_once_, [this] {
    stopping_ = true;
    if (events_.joinable()) events_.join();
    link_->stop();
    // The jobs live on in Redis; only this node's streams end (their clients may ask another API node).
    std::lock_guard lock(mutex_);
    for (auto& [id, job] : jobs_) {
      if (is_terminal(job->status)) continue;
      auto event = std::make_shared<JobEvent>();
      event->kind = JobEventKind::cancelled;
      event->job_id = id;
      event->reason = kCancelServerStopping;
      publish_locked(id, event, true);
    }
  });
}

LoadStatus ClusterApi::load_status() const {
  std::lock_guard lock(mutex_);
  LoadStatus s;
  if (model_.empty()) {
    s.state = LoadState::loading;
    s.component = "waiting for a worker to load the model";
  } else {
    s.state = LoadState::ready;
    s.model = model_;
    s.variant = variant_;
    s.bytes_done = s.bytes_total = 1;
  }
  return s;
}

EngineStats ClusterApi::stats() const {
  std::lock_guard lock(mutex_);
  EngineStats s = stats_;
  s.queue_depth = static_cast<int>(std::max<int64_t>(0, waiting_) + in_flight_);
  s.running = pending_ > 0;
  return s;
}

std::string ClusterApi::submit(GenerateRequest request) {
  check_image_size(request.width, request.height);
  FLUX_CHECK(request.steps >= 0, "steps: expected >= 0, got ", request.steps);
  if (request.noise.defined()) {  // as the worker's pipeline checks it, so a bad tensor is refused here
    const Shape want{1, 16, request.height / 8, request.width / 8};
    FLUX_CHECK(is_float(request.noise.dtype()) && request.noise.numel() == want.numel(), "noise: expected ", want.str(),
               " for ", request.width, "x", request.height, ", got ", request.noise.describe());
  }
  if (request.init_image)
    FLUX_CHECK(request.strength >= 0 && request.strength <= 1, "strength: expected a number in [0, 1], got ",
               request.strength);
  auto job = std::make_shared<Mirror>();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw NotReady("the server is shutting down");
    const LinkStatus link = link_->status();
    if (!link.up)
      throw NotReady(str_cat("the job queue (", options_.url.text(), ") is unreachable: ", link.last_error));
    if (std::max<int64_t>(0, waiting_) + in_flight_ >= static_cast<int64_t>(options_.queue_size)) throw QueueFull();
    do {
      job->id = new_job_id(next_job_++);
    } while (jobs_.count(job->id));
    job->request = std::move(request);
    job->sequence = next_job_ - 1;
    job->created = Clock::now();
    job->created_unix =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    job->published_position = position_locked(*job);
    jobs_.emplace(job->id, job);
    stats_.jobs_submitted += 1;
    in_flight_ += 1;
    job->sending = true;
  }
  send(job);
  return job->id;
}

void ClusterApi::send(const std::shared_ptr<Mirror>& job) {
  link_->post([this, job](RedisConnection* r) {
    {
      std::lock_guard lock(mutex_);
      if (job->sent || is_terminal(job->status)) return;  // sent by on_up first, or cancelled here meanwhile
      if (r == nullptr) {                                 // Redis is down: kept, sent again by on_up
        job->sending = false;
        return;
      }
    }
    xadd(*r, job);
  });
}

void ClusterApi::xadd(RedisConnection& r, const std::shared_ptr<Mirror>& job) {
  if (!job->payload) {
    try {  // the request is immutable once accepted: read without the lock
      job->payload = encode_request(job->request, options_.lora_dir);
    } catch (const Error& e) {
      log_error("cluster: api: job ", job->id, ": ", e.what());
      auto event = std::make_shared<JobEvent>();
      event->kind = JobEventKind::failed;
      event->job_id = job->id;
      event->error = e.what();
      std::lock_guard lock(mutex_);
      job->sending = false;
      in_flight_ -= 1;
      apply_terminal_locked(*job, event, "");
      return;
    }
  }
  std::vector<std::string> argv = {"XADD", kJobsStream, "MAXLEN", "~", std::to_string(options_.stream_max),
                                   "*",    "job",       job->id};
  for (auto& f : payload_fields(*job->payload)) argv.push_back(std::move(f));
  try {
    r.command(argv);
  } catch (const RedisError&) {
    std::lock_guard lock(mutex_);
    job->sending = false;
    throw;
  }
  std::lock_guard lock(mutex_);
  job->sending = false;
  job->sent = true;
  in_flight_ -= 1;
  waiting_ += 1;  // until the next poll counts it
}

void ClusterApi::send_cancel(RedisConnection& r, const std::shared_ptr<Mirror>& job) {
  r.command({"SET", cancel_key(job->id), "1", "EX", ttl_seconds(options_.result_ttl_s)});
  std::lock_guard lock(mutex_);
  job->cancel_sent = true;
}

bool ClusterApi::data_lost(RedisConnection& r) {
  const std::string mine = new_job_id(0);  // random enough to tell two connections apart
  const Reply previous = r.command({"SET", kEpochKey, mine, "NX", "GET"});
  const std::string epoch = previous.is_nil() ? mine : previous.str;
  const bool lost = !epoch_.empty() && epoch != epoch_;
  epoch_ = epoch;
  return lost;
}

void ClusterApi::on_up(RedisConnection& r) {
  ensure_group(r);
  const bool lost = data_lost(r);
  std::vector<std::shared_ptr<Mirror>> unsent, cancels;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, job] : jobs_) {
      if (is_terminal(job->status)) continue;
      if (lost && job->sent) {  // the entry (or its run) went with Redis' data
        job->sent = false;
        in_flight_ += 1;
        resent_ += 1;
      }
      if (lost) job->cancel_sent = false;
      if (!job->sent) {
        job->sending = true;
        unsent.push_back(job);
      }
      if (job->cancel_requested && !job->cancel_sent) cancels.push_back(job);
    }
  }
  if (lost) log_warn("cluster: api: redis lost its data (", kEpochKey, " changed): sending every unfinished job again");
  std::sort(unsent.begin(), unsent.end(), [](const auto& a, const auto& b) { return a->sequence < b->sequence; });
  if (!unsent.empty()) log_info("cluster: api: sending ", unsent.size(), " accepted job(s) again");
  if (!cancels.empty()) log_info("cluster: api: sending ", cancels.size(), " cancel(s) made while redis was down");
  try {
    for (const auto& job : cancels) send_cancel(r, job);  // first: a resent job is cancelled when claimed
    for (const auto& job : unsent) xadd(r, job);
  } catch (const RedisError&) {
    std::lock_guard lock(mutex_);
    for (const auto& job : unsent) job->sending = false;
    throw;
  }
  poll(r);
}

void ClusterApi::poll(RedisConnection& r) {
  const Reply length = r.command({"XLEN", kJobsStream});
  const Reply summary = r.command({"XPENDING", kJobsStream, kGroup});
  const Reply model = r.command({"GET", kModelKey});
  std::vector<LoraFileInfo> offered = read_offers(r);
  std::map<std::string, int64_t> held;
  int64_t pending = 0;
  if (summary.is_array() && summary.size() >= 4) {
    pending = summary[0].integer;
    if (summary[3].is_array())
      for (const Reply& c : summary[3].elements)
        if (c.size() == 2) held[c[0].str] = std::stoll(c[1].str);
  }
  std::string model_name;
  std::optional<Variant> variant;
  if (!model.is_nil()) {
    try {
      const auto j = nlohmann::json::parse(model.str);
      model_name = j.value("model", "");
      const std::string v = j.value("variant", "");
      for (Variant x : {Variant::schnell, Variant::dev})
        if (v == variant_name(x)) variant = x;
    } catch (const nlohmann::json::exception& e) {
      log_warn("cluster: api: ", kModelKey, " is not JSON: ", e.what());
    }
  }
  std::lock_guard lock(mutex_);
  waiting_ = length.integer - pending;
  pending_ = pending;
  held_by_ = std::move(held);
  offered_loras_ = std::move(offered);
  if (!model_name.empty() && model_.empty()) log_info("cluster: api: the workers serve ", model_name);
  if (!model_name.empty()) {
    model_ = model_name;
    variant_ = variant;
  }
  drop_expired_locked();
}

void ClusterApi::drop_expired_locked() {
  const auto now = Clock::now();
  const auto ttl = std::chrono::duration<double>(options_.result_ttl_s);
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (is_terminal(it->second->status) && now - it->second->finished > ttl)
      it = jobs_.erase(it);
    else
      ++it;
  }
}

bool ClusterApi::cancel(const std::string& id, const std::string& reason) {
  std::shared_ptr<Mirror> job;
  {
    std::lock_guard lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || is_terminal(it->second->status)) return false;
    job = it->second;
    job->cancel_requested = true;
    if (!job->sent && !job->sending) {  // never reached Redis: cancelled here
      auto event = std::make_shared<JobEvent>();
      event->kind = JobEventKind::cancelled;
      event->job_id = id;
      event->reason = reason;
      job->status = JobStatus::cancelled;
      job->finished = job->started = Clock::now();
      job->terminal = event;
      in_flight_ -= 1;
      stats_.jobs_cancelled += 1;
      publish_locked(id, event, true);
      publish_positions_locked();
      return true;
    }
  }
  link_->post([this, job](RedisConnection* r) {
    if (r == nullptr) {  // kept: on_up sends it when Redis returns
      log_warn("cluster: api: cancel of job ", job->id, " kept until redis returns");
      return;
    }
    send_cancel(*r, job);  // on a lost connection: kept likewise (cancel_sent stays false)
  });
  return true;
}

JobInfo ClusterApi::info_locked(const Mirror& job) const {
  JobInfo info;
  const auto now = Clock::now();
  info.id = job.id;
  info.status = job.status;
  info.position = job.status == JobStatus::queued ? position_locked(job) : 0;
  info.step = job.step;
  info.total = job.total;
  info.width = job.request.width;
  info.height = job.request.height;
  info.steps = job.request.steps != 0 ? job.request.steps : variant_ ? default_steps(*variant_) : 0;
  info.prompt = job.request.prompt;
  info.created_unix = job.created_unix;
  info.seed = job.result ? job.result->result.seed : job.request.seed;
  info.has_thumbnail = job.result && !job.result->thumbnail.empty();
  const bool waited = job.status != JobStatus::queued;
  info.queued_s = seconds_between(job.created, waited ? job.started : now);
  if (job.status == JobStatus::running) info.running_s = seconds_between(job.started, now);
  if (is_terminal(job.status)) info.running_s = seconds_between(job.started, job.finished);
  if (job.result) info.timings = job.result->result.timings;
  if (job.terminal && job.status == JobStatus::failed) info.error = job.terminal->error;
  return info;
}

std::optional<JobInfo> ClusterApi::info(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return info_locked(*it->second);
}

std::vector<JobInfo> ClusterApi::list() const {
  std::lock_guard lock(mutex_);
  std::vector<const Mirror*> jobs;
  for (const auto& [id, job] : jobs_) jobs.push_back(job.get());
  std::sort(jobs.begin(), jobs.end(), [](const Mirror* a, const Mirror* b) { return a->sequence > b->sequence; });
  std::vector<JobInfo> out;
  for (const Mirror* job : jobs) out.push_back(info_locked(*job));
  return out;
}

std::shared_ptr<const JobResult> ClusterApi::result(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second->result;
}

uint64_t ClusterApi::subscribe(const std::string& id, Post post, EventHandler handler) {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return 0;
  const Mirror& job = *it->second;
  std::vector<std::shared_ptr<const JobEvent>> replay;
  if (job.terminal) {
    replay.push_back(job.terminal);
  } else if (job.status == JobStatus::queued) {
    auto event = std::make_shared<JobEvent>();
    event->kind = JobEventKind::queued;
    event->job_id = id;
    event->position = position_locked(job);
    replay.push_back(event);
  } else {
    auto started = std::make_shared<JobEvent>();
    started->kind = JobEventKind::started;
    started->job_id = id;
    replay.push_back(started);
    if (job.last_stage) replay.push_back(job.last_stage);
    if (job.last_step) replay.push_back(job.last_step);
  }
  for (const auto& event : replay) post([handler, event] { handler(event); });
  const uint64_t subscription = next_subscription_++;
  if (!job.terminal) subscribers_[id].push_back({subscription, std::move(post), std::move(handler)});
  return subscription;
}

void ClusterApi::unsubscribe(const std::string& id, uint64_t subscription) {
  std::lock_guard lock(mutex_);
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  auto& subs = it->second;
  subs.erase(
      std::remove_if(subs.begin(), subs.end(), [subscription](const Subscriber& s) { return s.id == subscription; }),
      subs.end());
  if (subs.empty()) subscribers_.erase(it);
}

std::string ClusterApi::node_status_json() const {
  const LinkStatus link = link_->status();
  std::lock_guard lock(mutex_);
  nlohmann::json j = {{"role", "api"},
                      {"queue", options_.url.text()},
                      {"redis", link.up ? "up" : "down"},
                      {"waiting", std::max<int64_t>(0, waiting_) + in_flight_},
                      {"pending", pending_},
                      {"held_by", held_by_},
                      {"done_by", done_by_}};
  if (!link.up) j["redis_error"] = link.last_error;
  return j.dump();
}

}  // namespace flux::cluster
