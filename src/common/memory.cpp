#include "common/memory.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tinv {

int64_t peak_rss_bytes() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

int64_t current_rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, resident = 0;
  int n = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE) : 0;
}

namespace {

// The first integer in a file ("max" or a missing file: -1).
int64_t read_integer(const char* path) {
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  long long v = -1;
  if (std::fscanf(f, "%lld", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

// Bytes left under the cgroup's memory limit, -1 where there is no limit.
int64_t cgroup_headroom() {
  const struct {
    const char *limit, *usage;
  } files[] = {{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
               {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
  for (const auto& f : files) {
    const int64_t limit = read_integer(f.limit), usage = read_integer(f.usage);
    // cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages).
    if (limit > 0 && usage >= 0 && limit < (int64_t{1} << 60)) return std::max<int64_t>(0, limit - usage);
  }
  return -1;
}

}  // namespace

int64_t available_memory_bytes() {
  int64_t available = -1;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    long long kb = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
        available = static_cast<int64_t>(kb) * 1024;
        break;
      }
    std::fclose(f);
  }
  const int64_t headroom = cgroup_headroom();
  if (available < 0) return std::max<int64_t>(0, headroom);
  return headroom < 0 ? available : std::min(available, headroom);
}

const char* malloc_implementation() {
  // tcmalloc's malloc is an alias of its tc_malloc; a library that only happens to be loaded
  // (without serving malloc) would give two different addresses.
  void* tc = dlsym(RTLD_DEFAULT, "tc_malloc");
  return tc && tc == dlsym(RTLD_DEFAULT, "malloc") ? "tcmalloc" : "glibc";
}

}  // namespace tinv
