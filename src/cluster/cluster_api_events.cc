// ClusterApi's event side (cluster_api.h): the thread that relays each job's event stream from Redis to the mirror
// and the subscribers, the queue positions, and the node's /metrics series.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/log.h"
#include "cluster/cluster_api_mirror.h"
#include "cluster/reconnecting.h"
#include "io/image.h"

namespace flux::cluster {

std::vector<LoraFileInfo> ClusterApi::read_offers(RedisConnection& r) {
  std::map<std::string, LoraFileInfo> union_by_name;
  for (const Reply& name : r.command({"SMEMBERS", kWorkersKey}).elements) {
    const Reply offer = r.command({"GET", worker_key(name.str)});
    if (offer.is_nil()) {  // its heartbeat stopped
      r.command({"SREM", kWorkersKey, name.str});
      continue;
    }
    try {
      const auto j = nlohmann::json::parse(offer.str);
      for (const auto& l : j.at("loras"))
        union_by_name[l.at("name").get<std::string>()] = {
            l.at("name").get<std::string>(), "", l.at("size").get<uintmax_t>(), l.at("format").get<std::string>()};
    } catch (const nlohmann::json::exception& e) {
      log_warn("cluster: api: ", worker_key(name.str), ": not an offer: ", e.what());
    }
  }
  std::vector<LoraFileInfo> out;
  for (auto& [name, info] : union_by_name) out.push_back(std::move(info));
  return out;
}

std::optional<std::vector<LoraFileInfo>> ClusterApi::offered_loras() const {
  if (!options_.lora_dir.empty()) return std::nullopt;  // the node's own folder is listed
  std::lock_guard lock(mutex_);
  return offered_loras_;
}

std::string ClusterApi::node_metrics() const {
  const LinkStatus link = link_->status();
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  out << "# HELP flux_cluster_redis_up 1 while this node's command link to Redis is connected.\n"
      << "# TYPE flux_cluster_redis_up gauge\nflux_cluster_redis_up " << (link.up ? 1 : 0) << "\n"
      << "# HELP flux_cluster_queue_waiting Entries of flux:jobs no worker has claimed (polled from Redis).\n"
      << "# TYPE flux_cluster_queue_waiting gauge\nflux_cluster_queue_waiting " << std::max<int64_t>(0, waiting_)
      << "\n# HELP flux_cluster_queue_pending Entries of flux:jobs claimed by a worker and not acknowledged.\n"
      << "# TYPE flux_cluster_queue_pending gauge\nflux_cluster_queue_pending " << pending_ << "\n"
      << "# HELP flux_cluster_jobs_unsent Jobs accepted here and not (yet) added to flux:jobs.\n"
      << "# TYPE flux_cluster_jobs_unsent gauge\nflux_cluster_jobs_unsent " << in_flight_ << "\n"
      << "# HELP flux_cluster_jobs_resent_total Jobs sent again because Redis lost its data.\n"
      << "# TYPE flux_cluster_jobs_resent_total counter\nflux_cluster_jobs_resent_total " << resent_ << "\n"
      << "# HELP flux_cluster_jobs_held Jobs each worker holds (claimed, not acknowledged; from XPENDING).\n"
      << "# TYPE flux_cluster_jobs_held gauge\n";
  for (const auto& [worker, n] : held_by_)
    out << "flux_cluster_jobs_held{worker=\"" << prometheus_label(worker) << "\"} " << n << "\n";
  out << "# HELP flux_cluster_jobs_done_total Jobs each worker completed (seen by this node).\n"
      << "# TYPE flux_cluster_jobs_done_total counter\n";
  for (const auto& [worker, n] : done_by_)
    out << "flux_cluster_jobs_done_total{worker=\"" << prometheus_label(worker) << "\"} " << n << "\n";
  return out.str();
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
    case JobEventKind::cancelled:
      apply_terminal_locked(job, event, worker);
      return;
    default:
      return;  // queued events are this node's own
  }
  publish_locked(id, event, false);
  if (event->kind == JobEventKind::started) publish_positions_locked();
}

void ClusterApi::apply_terminal_locked(Mirror& job, const std::shared_ptr<const JobEvent>& event,
                                       const std::string& worker) {
  const auto now = Clock::now();
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
  publish_locked(job.id, event, true);
  publish_positions_locked();
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

}  // namespace flux::cluster
