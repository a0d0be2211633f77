// How much memory this process may still take: MemAvailable, and the limit of the memory cgroup it runs in
// (a container, `systemd-run --scope -p MemoryMax=8G`, or one made by hand), whichever is smaller. A process
// that only read MemAvailable inside an 8 GiB cgroup on a 24 GiB machine would plan for 20 GiB and be
// OOM-killed by the cgroup.
#pragma once

#include <cstdint>
#include <string>

namespace flux {

// One memory cgroup level that has a limit: what the limit allows beyond what the group holds now.
struct CgroupMemory {
  std::string dir;           // the cgroup's folder (under /sys/fs/cgroup)
  uint64_t limit = 0;        // memory.max (v2) / memory.limit_in_bytes (v1)
  uint64_t usage = 0;        // memory.current / memory.usage_in_bytes: includes the group's page cache
  uint64_t reclaimable = 0;  // the group's file pages (active + inactive): the kernel evicts them before OOM
  // limit - (usage - reclaimable), 0 when the group is already over.
  uint64_t available() const;
};

// The tightest limited level from the process's cgroup up to the root (v2: every level's memory.max; v1: the
// memory controller's hierarchy). `proc_self_cgroup` is the text of /proc/self/cgroup, `root` the cgroup
// mount (/sys/fs/cgroup; v1 controllers below it as memory/, v2 as itself or unified/). Returns a CgroupMemory
// with limit 0 when no level has a limit (or nothing can be read: not Linux, no cgroup fs, a namespace root).
CgroupMemory cgroup_memory(const std::string& proc_self_cgroup, const std::string& root);
CgroupMemory cgroup_memory();  // of this process

struct MemoryAvailable {
  uint64_t bytes = 0;  // 0 when unknown
  std::string source;  // "MemAvailable" or "cgroup <dir> limit N MiB"
};
// min(MemAvailable, the cgroup's available()), naming the one that decided.
MemoryAvailable memory_available();

}  // namespace flux
