#include "common/threads.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "common/error.h"

namespace tinv {
namespace {

// A positive integer environment variable, else 0.
int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return (*end == '\0' && n > 0 && n < 1 << 16) ? static_cast<int>(n) : 0;
}

}  // namespace

int physical_cores(const std::string& cpu_sysfs) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return 1;
  std::set<std::string> cores;  // one entry per sibling list, i.e. per core
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    std::ifstream in(cpu_sysfs + "/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list");
    std::string siblings;
    if (!std::getline(in, siblings) || siblings.empty()) return CPU_COUNT(&allowed);
    cores.insert(siblings);
  }
  return cores.empty() ? 1 : static_cast<int>(cores.size());
}

int default_threads() {
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  if (int n = env_threads("MKL_NUM_THREADS")) return n;
  return physical_cores();
}

void use_threads(int n) {
  TINV_CHECK(n >= 0, "--threads", "must be >= 0 (0: one per core), got ", n);
  at::set_num_threads(n > 0 ? n : default_threads());
}

}  // namespace tinv
