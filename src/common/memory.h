// Process memory figures for benchmarks and reports.
#pragma once
#include <cstdint>

namespace tinv {

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
int64_t peak_rss_bytes();
// Current resident set size in bytes (/proc/self/statm), 0 where unavailable.
int64_t current_rss_bytes();
// Memory this process may still take, in bytes: /proc/meminfo's MemAvailable, capped by the
// headroom under its cgroup's limit (v2 memory.max - memory.current, or v1's limit_in_bytes -
// usage_in_bytes) where one is set; 0 where neither can be read.
int64_t available_memory_bytes();
// The malloc this process runs on: "tcmalloc" when gperftools' tcmalloc serves malloc (the
// executables link it, cmake/executable.cmake), else "glibc". Read from the dynamic symbol table.
const char* malloc_implementation();

}  // namespace tinv
