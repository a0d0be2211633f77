#include "cluster/cluster_api.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "cluster/job_codec.h"
#include "cluster/reconnecting.h"
#include "io/image.h"

namespace flux::cluster {
namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string ttl_seconds(double ttl_s) { return std::to_string(std::max<int64_t>(1, static_cast<int64_t>(ttl_s))); }

}  // namespace

struct ClusterApi::Mirror {
  std::string id;
  GenerateRequest request;
  std::string request_json;
  JobStatus status = JobStatus::queued;
  uint64_t sequence = 0;
  Clock::time_point created, started, finished;
  int64_t created_unix = 0;
  int step = 0, total = 0;
  bool sent = false, sending = false;  // added to flux:jobs / an XADD under way
  int published_position = 0;
  std::string last_entry = "0-0";  // the latest event stream entry applied
  std::string worker;
  std::shared_ptr<const JobEvent> last_stage, last_step, terminal;
  std::shared_ptr<const JobResult> result;
};

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
  auto job = std::make_shared<Mirror>();
  job->request_json = request_to_json(request);  // refuses what cannot cross nodes, naming the field
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
    if (r == nullptr) {  // Redis is down: kept, sent again by on_up
      std::lock_guard lock(mutex_);
      job->sending = false;
      return;
    }
    xadd(*r, job);
  });
}

void ClusterApi::xadd(RedisConnection& r, const std::shared_ptr<Mirror>& job) {
  try {
    r.command({"XADD", kJobsStream, "MAXLEN", "~", std::to_string(options_.stream_max), "*", "job", job->id, "request",
               job->request_json});
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

void ClusterApi::on_up(RedisConnection& r) {
  ensure_group(r);
  std::vector<std::shared_ptr<Mirror>> unsent;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, job] : jobs_)
      if (!job->sent && !is_terminal(job->status)) {
        job->sending = true;
        unsent.push_back(job);
      }
  }
  std::sort(unsent.begin(), unsent.end(), [](const auto& a, const auto& b) { return a->sequence < b->sequence; });
  if (!unsent.empty()) log_info("cluster: api: sending ", unsent.size(), " accepted job(s) again");
  for (const auto& job : unsent) xadd(r, job);
  poll(r);
}

void ClusterApi::poll(RedisConnection& r) {
  const Reply length = r.command({"XLEN", kJobsStream});
  const Reply summary = r.command({"XPENDING", kJobsStream, kGroup});
  const Reply model = r.command({"GET", kModelKey});
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

void ClusterApi::events_loop() {
  Reconnecting redis(options_.url, stopping_, [](bool, const std::string&) {});
  while (!stopping_) {
    std::vector<std::pair<std::string, std::string>> watch;  // (job id, last entry)
    {
      std::lock_guard lock(mutex_);
      for (const auto& [id, job] : jobs_)
        if (job->sent && !is_terminal(job->status)) watch.emplace_back(id, job->last_entry);
    }
    if (watch.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    std::vector<std::string> argv = {"XREAD", "COUNT", "100", "BLOCK", "50", "STREAMS"};
    for (const auto& w : watch) argv.push_back(events_key(w.first));
    for (const auto& w : watch) argv.push_back(w.second);
    Reply reply;
    try {
      reply = redis.command(argv);
    } catch (const std::exception& e) {
      if (!stopping_) log_warn("cluster: api: reading job events: ", e.what());
      continue;
    }
    if (!reply.is_array()) continue;
    for (const Reply& stream : reply.elements) {
      if (stream.size() != 2 || !stream[1].is_array()) continue;
      const std::string& key = stream[0].str;  // flux:job:<id>:events
      const std::string prefix = "flux:job:", suffix = ":events";
      if (key.size() <= prefix.size() + suffix.size()) continue;
      const std::string id = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
      for (const Reply& entry : stream[1].elements) {
        if (entry.size() != 2) continue;
        std::string worker;
        try {
          auto event = std::make_shared<JobEvent>(event_from_fields(entry[1], id, &worker));
          if (event->kind == JobEventKind::completed) {
            auto result = std::const_pointer_cast<JobResult>(event->result);
            const Reply png = redis.command({"GET", png_key(id)});
            FLUX_CHECK(!png.is_nil(), "job ", id, ": completed, but ", png_key(id), " is missing");
            result->encoded.assign(png.str.begin(), png.str.end());
            if (thumbnail_encoder_) {
              const Image image = decode_image(result->encoded.data(), result->encoded.size(), png_key(id));
              result->thumbnail = thumbnail_encoder_(image);
            }
          }
          apply(id, entry[0].str, event, worker);
        } catch (const std::exception& e) {
          log_error("cluster: api: job ", id, " event ", entry[0].str, ": ", e.what());
          std::lock_guard lock(mutex_);
          if (auto it = jobs_.find(id); it != jobs_.end()) it->second->last_entry = entry[0].str;
        }
      }
    }
  }
}

void ClusterApi::apply(const std::string& id, const std::string& entry, std::shared_ptr<const JobEvent> event,
                       const std::string& worker) {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  Mirror& job = *it->second;
  job.last_entry = entry;
  if (is_terminal(job.status)) return;  // never a second terminal event
  const auto now = Clock::now();
  switch (event->kind) {
    case JobEventKind::started:
      job.status = JobStatus::running;
      job.started = now;
      job.worker = worker;
      break;
    case JobEventKind::stage:
      job.last_stage = event;
      if (event->total > 0) job.total = event->total;
      break;
    case JobEventKind::step:
      job.last_step = event;
      job.step = event->step;
      job.total = event->total;
      stats_.steps += 1;
      break;
    case JobEventKind::completed:
    case JobEventKind::failed:
    case JobEventKind::cancelled: {
      if (job.status == JobStatus::queued) job.started = now;
      job.status = event->kind == JobEventKind::completed ? JobStatus::completed
                   : event->kind == JobEventKind::failed  ? JobStatus::failed
                                                          : JobStatus::cancelled;
      job.finished = now;
      job.terminal = event;
      job.result = event->result;
      if (job.status == JobStatus::completed) {
        stats_.jobs_completed += 1;
        stats_.job_seconds_sum += seconds_between(job.started, job.finished);
        done_by_[worker] += 1;
      }
      stats_.jobs_failed += job.status == JobStatus::failed;
      stats_.jobs_cancelled += job.status == JobStatus::cancelled;
      break;
    }
    default:
      return;  // queued events are this node's own
  }
  publish_locked(id, event, is_terminal(job.status));
  if (event->kind == JobEventKind::started || is_terminal(job.status)) publish_positions_locked();
}

void ClusterApi::publish_locked(const std::string& id, const std::shared_ptr<const JobEvent>& event, bool last) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  for (const Subscriber& s : it->second) {
    EventHandler handler = s.handler;
    s.post([handler, event] { handler(event); });
  }
  if (last) subscribers_.erase(it);
}

int ClusterApi::position_locked(const Mirror& job) const {
  int position = 1;
  for (const auto& [id, other] : jobs_)
    if (other->status == JobStatus::queued && other->sequence < job.sequence) ++position;
  return position;
}

void ClusterApi::publish_positions_locked() {
  for (auto& [id, job] : jobs_) {
    if (job->status != JobStatus::queued) continue;
    const int position = position_locked(*job);
    if (position == job->published_position) continue;
    job->published_position = position;
    auto event = std::make_shared<JobEvent>();
    event->kind = JobEventKind::queued;
    event->job_id = id;
    event->position = position;
    publish_locked(id, event, false);
  }
}

bool ClusterApi::cancel(const std::string& id, const std::string& reason) {
  std::shared_ptr<Mirror> job;
  {
    std::lock_guard lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || is_terminal(it->second->status)) return false;
    job = it->second;
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
  link_->post([this, id](RedisConnection* r) {
    if (r == nullptr) {
      log_warn("cluster: api: cancel of job ", id, " not delivered: redis is down");
      return;
    }
    r->command({"SET", cancel_key(id), "1", "EX", ttl_seconds(options_.result_ttl_s)});
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
