// JobService: what the HTTP layer (routes, SSE, the A1111 API, metrics) asks of whoever runs the jobs. The local
// Engine implements it (serve --role all); so does the cluster's API node (src/cluster/cluster_api.h), whose jobs run
// on worker processes behind Redis Streams. Every method is called on the server's I/O thread and must not block
// on compute or on the network (an implementation answers from its own snapshot).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/job.h"
#include "pipeline/lora_dir.h"

namespace flux {

struct LoadStatus;
struct EngineStats;

// Runs a callable on the subscriber's executor (a service never calls a subscriber on its own threads).
using Post = std::function<void(std::function<void()>)>;
using EventHandler = std::function<void(std::shared_ptr<const JobEvent>)>;

class JobService {
 public:
  virtual ~JobService() = default;

  virtual LoadStatus load_status() const = 0;
  virtual EngineStats stats() const = 0;
  virtual MemoryStatus memory_status() const = 0;
  // Queues a job and returns its id. Throws NotReady, QueueFull (engine.h) or Error (an invalid request).
  virtual std::string submit(GenerateRequest request) = 0;
  virtual bool cancel(const std::string& id, const std::string& reason = kCancelByUser) = 0;
  virtual std::optional<JobInfo> info(const std::string& id) const = 0;
  virtual std::vector<JobInfo> list() const = 0;
  virtual std::shared_ptr<const JobResult> result(const std::string& id) const = 0;
  // The current state first, then every event in order, each through `post`. 0 when the id is unknown.
  virtual uint64_t subscribe(const std::string& id, Post post, EventHandler handler) = 0;
  virtual void unsubscribe(const std::string& id, uint64_t subscription) = 0;
  virtual void shutdown() = 0;
  // Node-specific facts for /health (a JSON object as text, e.g. the cluster's queue and workers); "" = none.
  virtual std::string node_status_json() const { return ""; }
  // Node-specific series for /metrics (Prometheus text, HELP and TYPE lines included), appended to the server's
  // own; "" = none.
  virtual std::string node_metrics() const { return ""; }
  // The LoRA adapters the node's workers offer when it has no folder of its own (a cluster API node: the union of
  // what each live worker publishes; `path` empty); nullopt = none but the server's --lora-dir.
  virtual std::optional<std::vector<LoraFileInfo>> offered_loras() const { return std::nullopt; }
};

}  // namespace flux
