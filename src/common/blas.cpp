#include "common/blas.h"

#include <dlfcn.h>
#include <strings.h>

#include <cstdlib>
#include <sstream>

namespace tinv {
namespace {

// OpenBLAS's entry points, looked up in the process (libtorch loads it through libblas.so.3);
// null where the BLAS is another one.
template <typename Fn>
Fn openblas_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}
using NameFn = char* (*)();
using VoidFn = void (*)();

std::string openblas_core() {
  auto corename = openblas_symbol<NameFn>("openblas_get_corename");
  const char* name = corename ? corename() : nullptr;
  return name ? name : "";
}

}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures f;
  __builtin_cpu_init();
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
  return f;
}

std::string better_openblas_core(const std::string& detected, const CpuFeatures& cpu) {
  // OpenBLAS's x86-64 cores whose kernels stop at SSE or AVX (1): its fallbacks, and older CPUs.
  static const char* const kPreAvx2[] = {"Prescott",    "Core2",  "Penryn",    "Dunnington", "Nehalem",
                                         "Sandybridge", "Atom",   "Nano",      "Katmai",     "Coppermine",
                                         "Northwood",   "Banias", "Athlon",    "Opteron",    "Opteron_SSE3",
                                         "Barcelona",   "Bobcat", "Bulldozer", "Piledriver"};
  bool old = false;
  for (const char* core : kPreAvx2) old = old || strcasecmp(detected.c_str(), core) == 0;
  if (!old) return "";
  if (cpu.avx512) return cpu.avx512_bf16 ? "Cooperlake" : "SkylakeX";
  return cpu.avx2_fma ? "Haswell" : "";
}

std::string fix_blas_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return "";  // the user's choice
  auto quit = openblas_symbol<VoidFn>("gotoblas_dynamic_quit");
  auto init = openblas_symbol<VoidFn>("gotoblas_dynamic_init");
  const std::string detected = openblas_core();
  if (quit == nullptr || init == nullptr || detected.empty()) return "";  // not a DYNAMIC_ARCH OpenBLAS
  const std::string core = better_openblas_core(detected, cpu_features());
  if (core.empty()) return "";
  // What OpenBLAS does when it is loaded, again, with the core forced (as OPENBLAS_CORETYPE does).
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  quit();
  init();
  return strcasecmp(openblas_core().c_str(), core.c_str()) == 0 ? core : "";
}

std::string blas_description() {
  auto config = openblas_symbol<NameFn>("openblas_get_config");
  if (config == nullptr || config() == nullptr) return "not OpenBLAS";
  std::istringstream words(config());  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ... Prescott MAX_THREADS=64"
  std::string name, version;
  words >> name >> version;
  return name + " " + version + " " + openblas_core();
}

}  // namespace tinv
