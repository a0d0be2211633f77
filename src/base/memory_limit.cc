// Memory cgroup limits, v1 and v2 (see memory_limit.h).
#include "base/memory_limit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/system.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

// Limits at or above this mean "none": v1 writes LONG_MAX rounded down to a page, v2 writes "max".
constexpr uint64_t kNoLimit = uint64_t{1} << 60;

// The first number in a file ("max" or an unreadable file: 0).
uint64_t read_number(const fs::path& p) {
  std::ifstream in(p);
  std::string word;
  if (!(in >> word) || word.empty() || word[0] < '0' || word[0] > '9') return 0;
  try {
    return std::stoull(word);
  } catch (...) {
    return 0;
  }
}

// Sum of the named keys of a memory.stat ("key value" lines).
uint64_t stat_sum(const fs::path& p, std::initializer_list<const char*> keys) {
  std::ifstream in(p);
  std::string key;
  uint64_t value = 0, sum = 0;
  while (in >> key >> value)
    for (const char* k : keys)
      if (key == k) sum += value;
  return sum;
}

// top/path without a trailing separator ("/" is top itself).
fs::path below(const fs::path& top, const std::string& path) {
  const fs::path rel = fs::path(path).relative_path();
  return rel.empty() ? top : top / rel;
}

struct Layout {
  fs::path dir;  // the process's cgroup folder
  fs::path top;  // the hierarchy's root folder (stop walking up there)
  bool v1 = false;
};

// The process's memory cgroup folder from /proc/self/cgroup: a v1 line "N:...memory...:/path" wins over the
// v2 line "0::/path" (on a hybrid system the memory controller is v1's).
bool find_layout(const std::string& proc_self_cgroup, const fs::path& root, Layout& out) {
  std::istringstream lines(proc_self_cgroup);
  std::string line, v2_path;
  bool have_v2 = false;
  while (std::getline(lines, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      v2_path = path;
      have_v2 = true;
      continue;
    }
    std::istringstream names(controllers);
    std::string name;
    while (std::getline(names, name, ','))
      if (name == "memory") {
        out.v1 = true;
        out.top = root / "memory";
        out.dir = below(out.top, path);
        // In a cgroup namespace the path may name a folder the mount does not show: use the mount's root.
        if (!fs::is_directory(out.dir)) out.dir = out.top;
        return fs::is_directory(out.top);
      }
  }
  if (!have_v2) return false;
  for (const fs::path& top : {root, root / "unified"}) {
    if (!fs::exists(top / "cgroup.controllers")) continue;
    out.top = top;
    out.dir = below(top, v2_path);
    if (!fs::is_directory(out.dir)) out.dir = top;
    return true;
  }
  return false;
}

}  // namespace

uint64_t CgroupMemory::available() const {
  const uint64_t held = usage > reclaimable ? usage - reclaimable : 0;
  return limit > held ? limit - held : 0;
}

CgroupMemory cgroup_memory(const std::string& proc_self_cgroup, const std::string& root) {
  CgroupMemory best;
  Layout layout;
  if (!find_layout(proc_self_cgroup, root, layout)) return best;
  // Every level from the process's group up to the hierarchy's root (v1 with use_hierarchy, the default
  // since Linux 5.x and the only mode of v2, charges a child's pages to its ancestors).
  for (fs::path dir = layout.dir;; dir = dir.parent_path()) {
    CgroupMemory level;
    level.dir = dir.string();
    if (layout.v1) {
      level.limit = read_number(dir / "memory.limit_in_bytes");
      level.usage = read_number(dir / "memory.usage_in_bytes");
      level.reclaimable = stat_sum(dir / "memory.stat", {"total_active_file", "total_inactive_file"});
    } else {
      level.limit = read_number(dir / "memory.max");
      level.usage = read_number(dir / "memory.current");
      level.reclaimable = stat_sum(dir / "memory.stat", {"active_file", "inactive_file"});
    }
    if (level.limit > 0 && level.limit < kNoLimit && (best.limit == 0 || level.available() < best.available()))
      best = level;
    if (dir == layout.top || dir == dir.parent_path()) break;
  }
  return best;
}

CgroupMemory cgroup_memory() {
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return cgroup_memory(text.str(), "/sys/fs/cgroup");
}

MemoryAvailable memory_available() {
  MemoryAvailable out;
  out.bytes = available_memory_bytes();
  out.source = "MemAvailable";
  const CgroupMemory cg = cgroup_memory();
  if (cg.limit > 0 && (out.bytes == 0 || cg.available() < out.bytes)) {
    out.bytes = cg.available();
    out.source = "cgroup " + cg.dir + " (limit " + std::to_string(cg.limit >> 20) + " MiB, " +
                 std::to_string((cg.usage - std::min(cg.usage, cg.reclaimable)) >> 20) + " MiB held)";
  }
  return out;
}

}  // namespace flux
