// What the OS says about memory: for the loader's memory policy and the server's metrics.
#pragma once

#include <cstdint>

namespace flux {

// MemAvailable from /proc/meminfo (what can be allocated without swapping); 0 if unknown.
uint64_t available_memory_bytes();
// This process's resident set size (VmRSS from /proc/self/status); 0 if unknown.
uint64_t resident_memory_bytes();
// The anonymous part of it (RssAnon: heap and private copies, not mapped file pages); 0 if unknown.
uint64_t anonymous_memory_bytes();
// The mapped-file part of it (RssFile: e.g. memory-mapped weights); 0 if unknown.
uint64_t file_memory_bytes();
// The resident set's high-water mark (VmHWM); 0 if unknown.
uint64_t peak_resident_memory_bytes();
// Resets the high-water mark to the current resident set (Linux >= 4.0: "5" to /proc/self/clear_refs), so a
// later peak_resident_memory_bytes() measures from now. Also resets what getrusage's ru_maxrss reports.
void reset_peak_resident_memory();

}  // namespace flux
