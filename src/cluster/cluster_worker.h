// ClusterWorker (serve --role worker): a local Engine (one job at a time) fed from Redis. Its claim thread, while
// the engine is idle, first reclaims a job another worker left pending longer than the visibility timeout
// (XAUTOCLAIM), else reads a new one (XREADGROUP ... BLOCK 1000). A job delivered more than --max-tries times is
// failed without running; a job whose terminal event already exists is only acknowledged (exactly once). One job
// can be two entries (the API sent its XADD again after a lost reply, or after Redis lost the stream): before
// running, the worker SETs flux:job:<id>:owner <entry> NX, and an entry whose job id another entry owns is
// acknowledged without running (the same entry reclaimed after its worker died still runs, counting tries). While
// a job runs the thread re-claims it every visibility/3 (so it is not stolen), polls its cancel key and its owner
// key (a run whose job another entry owns now stops without a terminal event), and publishes each engine event to
// the job's event stream; on completion: SET the PNG (with the TTL), the completed event, then XACK + XDEL. A job
// cancelled because this node stops is left pending for another worker. Requests carry LoRAs by name: they resolve
// in this worker's --lora-dir, and a name it lacks fails the job with the single-process server's text.
// HTTP on a worker: /health (with the jobs it holds), /metrics (jobs held, completed, duplicates), the job routes of
// its local engine; submitting is refused (jobs go to an API node).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/cluster_options.h"
#include "engine/engine.h"

namespace flux::cluster {

class Reconnecting;  // cluster_worker.cc

class ClusterWorker : public JobService {
 public:
  ClusterWorker(std::unique_ptr<Engine> engine, ClusterOptions options);
  ~ClusterWorker() override;

  LoadStatus load_status() const override { return engine_->load_status(); }
  EngineStats stats() const override { return engine_->stats(); }
  MemoryStatus memory_status() const override { return engine_->memory_status(); }
  std::string submit(GenerateRequest request) override;
  bool cancel(const std::string& id, const std::string& reason) override { return engine_->cancel(id, reason); }
  std::optional<JobInfo> info(const std::string& id) const override { return engine_->info(id); }
  std::vector<JobInfo> list() const override { return engine_->list(); }
  std::shared_ptr<const JobResult> result(const std::string& id) const override { return engine_->result(id); }
  uint64_t subscribe(const std::string& id, Post post, EventHandler handler) override {
    return engine_->subscribe(id, std::move(post), std::move(handler));
  }
  void unsubscribe(const std::string& id, uint64_t subscription) override { engine_->unsubscribe(id, subscription); }
  void shutdown() override;
  std::string node_status_json() const override;
  std::string node_metrics() const override;

 private:
  struct Claimed;
  class Inbox;
  void claim_loop();
  bool claim_next(Reconnecting& redis);
  void handle(Reconnecting& redis, const Claimed& job);
  void run(Reconnecting& redis, const Claimed& job);
  // SET flux:job:<id>:owner <entry> NX: the entry that owns the job id (this one when it was free).
  std::string claim_owner(Reconnecting& redis, const Claimed& job);
  // Every few seconds (claim thread): SET flux:worker:<name> (model, LoRA names) EX 15, SADD flux:workers.
  void publish_offer(Reconnecting& redis);

  std::unique_ptr<Engine> engine_;
  ClusterOptions options_;
  mutable std::mutex mutex_;  // the snapshot /health reads: held_, redis_up_, last_error_, done_
  std::vector<std::string> held_;
  bool redis_up_ = false;
  std::string last_error_;
  uint64_t done_ = 0;
  uint64_t duplicates_ = 0;       // entries acknowledged without running (another entry of the job runs it)
  bool model_published_ = false;  // claim thread only
  std::chrono::steady_clock::time_point next_offer_{};  // claim thread only
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::once_flag shutdown_once_;
};

}  // namespace flux::cluster
