// CPU threads for libtorch's intra-op pool.
//
//   tinv::use_threads(0);          // OMP_NUM_THREADS / MKL_NUM_THREADS when set, else one per core
//   tinv::use_threads(4);          // exactly 4
//   int n = tinv::physical_cores();
//
// libtorch 1.13 starts with std::thread::hardware_concurrency() / 2 threads on x86-64, assuming
// two hyperthreads per core; on a VM whose vCPUs are whole cores that is half the machine (1 of
// 2 here). tinv counts the cores from the kernel's topology instead.
#pragma once
#include <string>

namespace tinv {

// Physical cores among the CPUs this process may run on (sched_getaffinity): CPUs that list one
// another in `<cpu_sysfs>/cpuN/topology/thread_siblings_list` are one core. Where the topology
// cannot be read, every allowed CPU counts as a core. At least 1.
int physical_cores(const std::string& cpu_sysfs = "/sys/devices/system/cpu");

// The thread count `use_threads(0)` picks: a positive OMP_NUM_THREADS, else a positive
// MKL_NUM_THREADS, else physical_cores().
int default_threads();

// Sets libtorch's intra-op threads to `n`, or to default_threads() for 0. Throws
// tinv::Error("--threads", ...) for a negative `n`.
void use_threads(int n);

}  // namespace tinv
