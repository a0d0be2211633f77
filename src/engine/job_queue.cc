#include "engine/job_queue.h"

#include <algorithm>

namespace flux {

bool JobQueue::push(std::shared_ptr<Job> job) {
  if (full()) return false;
  jobs_.push_back(std::move(job));
  return true;
}

std::shared_ptr<Job> JobQueue::pop() {
  if (jobs_.empty()) return nullptr;
  auto job = std::move(jobs_.front());
  jobs_.pop_front();
  return job;
}

bool JobQueue::remove(const std::string& id) {
  auto it = std::find_if(jobs_.begin(), jobs_.end(), [&](const auto& j) { return j->id == id; });
  if (it == jobs_.end()) return false;
  jobs_.erase(it);
  return true;
}

int JobQueue::position(const std::string& id) const {
  for (size_t i = 0; i < jobs_.size(); ++i)
    if (jobs_[i]->id == id) return static_cast<int>(i);
  return -1;
}

}  // namespace flux
