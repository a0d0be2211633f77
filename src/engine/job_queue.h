// The engine's bounded FIFO of waiting jobs. Not thread-safe by itself: the engine guards it with its mutex.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>

#include "engine/job.h"

namespace flux {

class JobQueue {
 public:
  explicit JobQueue(size_t capacity) : capacity_(capacity) {}

  size_t size() const { return jobs_.size(); }
  size_t capacity() const { return capacity_; }
  bool empty() const { return jobs_.empty(); }
  bool full() const { return jobs_.size() >= capacity_; }

  // Appends at the back; false when the queue is full.
  bool push(std::shared_ptr<Job> job);
  // The front job (the next to run), removed; null when empty.
  std::shared_ptr<Job> pop();
  // Removes the job with this id; false when it is not waiting here.
  bool remove(const std::string& id);
  // 0 = next to run; -1 when not waiting here.
  int position(const std::string& id) const;
  const std::deque<std::shared_ptr<Job>>& jobs() const { return jobs_; }

 private:
  size_t capacity_;
  std::deque<std::shared_ptr<Job>> jobs_;
};

}  // namespace flux
