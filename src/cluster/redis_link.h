// RedisLink: one thread owning one Redis connection. Owners post tasks; the thread runs them in order with the
// connection (or with nullptr while Redis is down, so the owner keeps the work for later) and reconnects with
// backoff (100 ms doubling to 2 s). A task hands its results back to its owner itself (under the owner's lock, or
// through a Post). status() is a snapshot any thread may read without waiting on Redis.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/redis.h"

namespace flux::cluster {

struct LinkStatus {
  bool up = false;
  std::string last_error;  // why the latest connect or command failed ("" before any failure)
  uint64_t connects = 0;   // successful connections so far (> 1: reconnected)
};

class RedisLink {
 public:
  using Task = std::function<void(RedisConnection*)>;  // nullptr: Redis is down
  using Hook = std::function<void(RedisConnection&)>;
  struct Options {
    RedisUrl url;
    std::string name;  // for logs: "api commands", "worker claims", ...
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds read_timeout{5000};
    std::chrono::milliseconds idle_period{500};
    Hook on_up;  // after each (re)connection, before queued tasks (e.g. create the consumer group, resend work)
    Hook idle;   // every idle_period while up (e.g. poll the queue length)
  };

  explicit RedisLink(Options options);
  ~RedisLink();  // stop()
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  void post(Task task);
  LinkStatus status() const;
  // Runs no further task (the queued ones get nullptr) and joins the thread. Idempotent.
  void stop();

 private:
  void run();
  void set_down(const std::string& why);

  Options options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> tasks_;
  LinkStatus status_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace flux::cluster
