#include "common/memory.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <unistd.h>

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

const char* malloc_implementation() {
  // tcmalloc's malloc is an alias of its tc_malloc; a library that only happens to be loaded
  // (without serving malloc) would give two different addresses.
  void* tc = dlsym(RTLD_DEFAULT, "tc_malloc");
  return tc && tc == dlsym(RTLD_DEFAULT, "malloc") ? "tcmalloc" : "glibc";
}

}  // namespace tinv
