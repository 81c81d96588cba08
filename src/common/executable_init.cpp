// Compiled into every tinv executable (cmake/executable.cmake: tinv, the tests, the benchmarks),
// never into the libraries. Its constructor runs before main, after the shared libraries' own
// (OpenBLAS has picked its kernels, libtorch its thread count):
//   - OpenBLAS's kernels from the CPU's features where its model detection fell back to SSE3
//     (common/blas.h);
//   - libtorch's intra-op threads: OMP_NUM_THREADS, else one per physical core (common/threads.h);
//     libtorch 1.13's own default is half the CPUs on x86-64. A command's --threads overrides it.
#include "common/blas.h"
#include "common/threads.h"

namespace {

__attribute__((constructor)) void tinv_executable_init() {
  tinv::fix_blas_kernels();
  tinv::use_threads(0);
}

}  // namespace
