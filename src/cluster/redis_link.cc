#include "cluster/redis_link.h"

#include <algorithm>

#include "base/log.h"

namespace flux::cluster {

RedisLink::RedisLink(Options options) : options_(std::move(options)) {
  thread_ = std::thread([this] { run(); });
}

RedisLink::~RedisLink() { stop(); }

void RedisLink::post(Task task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
}

LinkStatus RedisLink::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void RedisLink::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RedisLink::set_down(const std::string& why) {
  std::lock_guard lock(mutex_);
  if (status_.up || status_.last_error != why) log_warn("cluster: ", options_.name, ": redis down: ", why);
  status_.up = false;
  status_.last_error = why;
}

void RedisLink::run() {
  using Clock = std::chrono::steady_clock;
  std::unique_ptr<RedisConnection> connection;
  std::chrono::milliseconds backoff{100};
  Clock::time_point next_idle = Clock::now();
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!connection) {
      lock.unlock();
      try {
        connection = std::make_unique<RedisConnection>(options_.url, options_.connect_timeout, options_.read_timeout);
        if (options_.on_up) options_.on_up(*connection);
      } catch (const Error& e) {
        connection.reset();
        set_down(e.what());
      }
      lock.lock();
      if (connection) {
        if (!status_.up) log_info("cluster: ", options_.name, ": connected to ", options_.url.text());
        status_.up = true;
        ++status_.connects;
        backoff = std::chrono::milliseconds(100);
      } else {
        std::deque<Task> failed;
        failed.swap(tasks_);  // the owners learn at once that Redis is down
        lock.unlock();
        for (auto& task : failed) task(nullptr);
        lock.lock();
        wake_.wait_for(lock, backoff, [this] { return stopping_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        continue;
      }
    }
    wake_.wait_until(lock, next_idle, [this] { return stopping_ || !tasks_.empty(); });
    if (stopping_) break;
    Task task;
    if (!tasks_.empty()) {
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    lock.unlock();
    try {
      if (task) {
        task(connection.get());
      } else {
        next_idle = Clock::now() + options_.idle_period;
        if (options_.idle) options_.idle(*connection);
      }
    } catch (const RedisError& e) {
      if (e.lost || connection->broken()) {
        connection.reset();
        set_down(e.what());
      } else {
        log_warn("cluster: ", options_.name, ": ", e.what());
      }
    } catch (const std::exception& e) {
      log_error("cluster: ", options_.name, ": ", e.what());
    }
    lock.lock();
  }
  std::deque<Task> left;
  left.swap(tasks_);
  lock.unlock();
  for (auto& task : left) task(nullptr);
}

}  // namespace flux::cluster
