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

}  // namespace flux
