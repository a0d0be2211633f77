#include "base/system.h"

#include <fstream>
#include <string>

namespace flux {
namespace {

// The value in kB of the line "key: N kB" of a /proc file, in bytes; 0 if absent.
uint64_t proc_kb(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':')
      return std::stoull(line.substr(key.size() + 1)) * 1024;
  }
  return 0;
}

}  // namespace

uint64_t available_memory_bytes() { return proc_kb("/proc/meminfo", "MemAvailable"); }
uint64_t resident_memory_bytes() { return proc_kb("/proc/self/status", "VmRSS"); }
uint64_t anonymous_memory_bytes() { return proc_kb("/proc/self/status", "RssAnon"); }
uint64_t file_memory_bytes() { return proc_kb("/proc/self/status", "RssFile"); }
uint64_t peak_resident_memory_bytes() { return proc_kb("/proc/self/status", "VmHWM"); }
void reset_peak_resident_memory() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace flux
