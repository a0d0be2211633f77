// ClusterApi (serve --role api): the JobService of an API node. It validates and accepts jobs itself (ids, a mirror
// of each job for GET /v1/jobs, positions, subscribers) and hands them to the workers through Redis:
// - submit: XADD flux:jobs MAXLEN ~ N * job=<id> request=<json> [image=<PNG>] [noise=<F32>] on the command link's
//   thread (never on the I/O thread; the init image is encoded there too). Refused with NotReady (-> 503 +
//   Retry-After) while Redis is down, with QueueFull (-> 429) when the jobs waiting in Redis (polled) plus its own
//   adds in flight reach queue_size. An accepted job whose XADD failed is kept and sent again when Redis returns
//   (so a lost reply can make one job two entries: the workers' owner key runs it once, cluster_worker.h).
// - data lost: on each connection the node SETs flux:epoch NX; a different epoch after a reconnection means Redis
//   restarted without its data, and every accepted, unfinished job (and every cancel) is sent again.
// - events: a thread XREADs (BLOCK) the event streams flux:job:<id>:events of the unfinished jobs and applies each
//   event to the mirror, then hands it to the job's subscribers through their Post, in order; a completed job's PNG
//   is read from flux:job:<id>:png (and thumbnailed) on that thread (cluster_api_events.cc).
// - cancel: SET flux:job:<id>:cancel 1 EX ttl; the worker that runs (or claims) the job stops it and publishes the
//   cancelled event. A job not yet handed to Redis is cancelled here; a cancel made while Redis is down is kept and
//   sent when it returns.
// - /metrics: the queue (waiting, pending) and jobs per worker (held now, completed) as Prometheus series.
// Shared state lives in one mutex-guarded State (as in Engine), held for bookkeeping only, never during Redis I/O.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/cluster_options.h"
#include "cluster/redis_link.h"
#include "engine/engine.h"

namespace flux::cluster {

class ClusterApi : public JobService {
 public:
  ClusterApi(ClusterOptions options, ImageEncoder thumbnail_encoder);
  ~ClusterApi() override;

  LoadStatus load_status() const override;
  EngineStats stats() const override;
  MemoryStatus memory_status() const override { return {}; }
  std::string submit(GenerateRequest request) override;
  bool cancel(const std::string& id, const std::string& reason) override;
  std::optional<JobInfo> info(const std::string& id) const override;
  std::vector<JobInfo> list() const override;
  std::shared_ptr<const JobResult> result(const std::string& id) const override;
  uint64_t subscribe(const std::string& id, Post post, EventHandler handler) override;
  void unsubscribe(const std::string& id, uint64_t subscription) override;
  void shutdown() override;
  std::string node_status_json() const override;
  std::string node_metrics() const override;
  std::optional<std::vector<LoraFileInfo>> offered_loras() const override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Mirror;
  struct Subscriber {
    uint64_t id;
    Post post;
    EventHandler handler;
  };

  void send(const std::shared_ptr<Mirror>& job);
  void xadd(RedisConnection& redis, const std::shared_ptr<Mirror>& job);
  void send_cancel(RedisConnection& redis, const std::shared_ptr<Mirror>& job);
  void on_up(RedisConnection& redis);
  bool data_lost(RedisConnection& redis);
  void poll(RedisConnection& redis);
  std::vector<LoraFileInfo> read_offers(RedisConnection& redis);
  void events_loop();
  void apply(const std::string& id, const std::string& entry, std::shared_ptr<const JobEvent> event,
             const std::string& worker);
  void apply_terminal_locked(Mirror& job, const std::shared_ptr<const JobEvent>& event, const std::string& worker);
  void publish_locked(const std::string& id, const std::shared_ptr<const JobEvent>& event, bool last);
  void publish_positions_locked();
  int position_locked(const Mirror& job) const;
  JobInfo info_locked(const Mirror& job) const;
  void drop_expired_locked();

  ClusterOptions options_;
  ImageEncoder thumbnail_encoder_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Mirror>> jobs_;
  std::map<std::string, std::vector<Subscriber>> subscribers_;
  EngineStats stats_;
  std::string model_;  // from flux:model, set by the first worker that loaded
  std::optional<Variant> variant_;
  int64_t waiting_ = 0;                      // entries of flux:jobs no worker has claimed (polled)
  int64_t pending_ = 0;                      // claimed, not acknowledged (running, or left by a dead worker)
  int64_t in_flight_ = 0;                    // accepted here, not yet (or not successfully) added to the stream
  std::map<std::string, int64_t> held_by_;   // worker -> pending entries (XPENDING summary)
  std::map<std::string, uint64_t> done_by_;  // worker -> jobs it completed (seen here)
  std::vector<LoraFileInfo> offered_loras_;  // the union of what the live workers offer (polled)
  std::string epoch_;                        // flux:epoch as last seen (link thread only)
  uint64_t resent_ = 0;                      // jobs sent again after Redis lost its data
  uint64_t next_job_ = 1, next_subscription_ = 1;
  std::atomic<bool> stopping_{false};
  std::once_flag shutdown_once_;
  std::unique_ptr<RedisLink> link_;  // made last: its thread uses the state above
  std::thread events_;
};

}  // namespace flux::cluster
