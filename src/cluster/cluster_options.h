// Options shared by the cluster roles of `serve` (--queue, --max-tries, --visibility-ms, --queue-size, --job-ttl).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cluster/redis.h"

namespace flux::cluster {

struct ClusterOptions {
  RedisUrl url;
  std::string name;            // this node's consumer name (worker) / log name; unique per process
  int max_tries = 3;           // deliveries of a job before it is failed rather than run again
  int visibility_ms = 30000;   // a pending job idle this long is reclaimed by another worker
  size_t queue_size = 8;       // API: jobs waiting at most (not yet claimed by a worker)
  size_t stream_max = 10000;   // XADD MAXLEN ~: a safety bound; finished entries are deleted
  double result_ttl_s = 3600;  // the PNG, the event stream and the cancel key expire after this
  int cancel_poll_ms = 100;    // worker: how often a running job's cancel key is read
  // serve --lora-dir. API node: the folder a request's LoRA paths are named against (they cross as names; "" = the
  // requests hold names already). Worker: where the names resolve.
  std::string lora_dir;
  uint64_t max_image_pixels = 4096ull * 4096ull;  // worker: an init image decoded from a job entry
};

}  // namespace flux::cluster
