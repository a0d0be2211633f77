// Reconnecting: a Redis connection for one dedicated thread that comes back. Each call retries (reconnecting
// with backoff, 100 ms doubling to 2 s; the consumer group is (re)created on each connection) until it succeeds or
// `stopping` is set; an error reply is thrown at once. `report(up, error)` is told of every change.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cluster/job_codec.h"
#include "cluster/redis.h"

namespace flux::cluster {

class Reconnecting {
 public:
  Reconnecting(const RedisUrl& url, const std::atomic<bool>& stopping, std::function<void(bool, std::string)> report)
      : url_(url), stopping_(stopping), report_(std::move(report)) {}

  // One command, retried across reconnections; an error reply is thrown.
  Reply command(const std::vector<std::string>& argv) {
    return retry([&argv](RedisConnection& c) { return c.command(argv); });
  }

  template <typename F>
  auto retry(F f) -> decltype(f(std::declval<RedisConnection&>())) {
    std::chrono::milliseconds backoff{100};
    for (;;) {
      try {
        if (!connection_) {
          connection_ =
              std::make_unique<RedisConnection>(url_, std::chrono::milliseconds(1000), std::chrono::milliseconds(5000));
          ensure_group(*connection_);
          report_(true, "");
        }
        return f(*connection_);
      } catch (const RedisError& e) {
        if (!e.lost && connection_ && !connection_->broken()) throw;
        connection_.reset();
        report_(false, e.what());
        if (stopping_) throw;
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      }
    }
  }

 private:
  RedisUrl url_;
  const std::atomic<bool>& stopping_;
  std::function<void(bool, std::string)> report_;
  std::unique_ptr<RedisConnection> connection_;
};

}  // namespace flux::cluster
