// The BLAS behind libtorch's matrix products (Debian: OpenBLAS, DYNAMIC_ARCH), and a fix for CPUs
// its kernel detection does not know.
//
//   tinv::fix_blas_kernels();                  // at start-up, before the first matrix product
//   std::string d = tinv::blas_description();  // "OpenBLAS 0.3.21 Cooperlake"
//
// OpenBLAS picks its kernels from the CPU model once, when it is loaded. A model newer than the
// release (Debian 12's 0.3.21 on Emerald Rapids, model 207) falls back to the SSE3 "Prescott"
// kernels: 40 GFLOP/s instead of 200 for an fp32 2048^2 product on 2 cores, a 1.9x slower
// libtorch 1.13 TI step. fix_blas_kernels() then chooses the kernels from the CPU's features.
#pragma once
#include <string>

namespace tinv {

// What the CPU offers that OpenBLAS's x86-64 kernels use.
struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 and FMA (Haswell kernels)
  bool avx512 = false;    // AVX-512 F, BW, DQ and VL (SkylakeX kernels)
  bool avx512_bf16 = false;
};
// This CPU's (__builtin_cpu_supports, which also checks that the OS saves the registers).
CpuFeatures cpu_features();

// The OPENBLAS_CORETYPE to use instead of the `detected` core (openblas_get_corename), or "" to
// keep it: only a core without AVX2 kernels (Prescott, Nehalem, Sandybridge, ...) on a CPU that
// has AVX2 or AVX-512 is replaced, by Cooperlake (AVX-512 + BF16), SkylakeX or Haswell.
std::string better_openblas_core(const std::string& detected, const CpuFeatures& cpu);

// When libtorch's BLAS is OpenBLAS, the user has not set OPENBLAS_CORETYPE, and
// better_openblas_core() names a core: re-runs OpenBLAS's kernel selection with that core
// (OPENBLAS_CORETYPE is then set for child processes too). Returns the core it switched to, or "".
// Call it before any thread runs a matrix product.
std::string fix_blas_kernels();

// "OpenBLAS <version> <core>" (e.g. "OpenBLAS 0.3.21 Cooperlake"), or "not OpenBLAS".
std::string blas_description();

}  // namespace tinv
