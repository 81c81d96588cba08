# What every tinv executable (tinv, the tests, the benchmarks) gets and the libraries never do.
#
# tinv_executable(TARGET [GLIBC])
#
# 1. The allocator: tcmalloc. glibc's malloc hands every block over 32 MB (its largest mmap
#    threshold) back to the kernel on free, so each new one is faulted in and zeroed page by page
#    again. A textual-inversion step allocates and frees hundreds of such blocks (activations,
#    oneDNN's weight reorders, the 1.13 attention chunks): a 512 px step on libtorch 1.13 takes
#    27.7 s on glibc's malloc and 17.8 s on tcmalloc, which keeps freed spans for reuse (2.6:
#    14.0 s and 12.5 s; docs/PERFORMANCE.md). TARGET is linked with libtcmalloc_minimal ahead of
#    libstdc++ and libc, so that it serves malloc and operator new for libtorch as well.
#    TINV_TCMALLOC=OFF, a machine without the library (a PyTorch install elsewhere), or GLIBC (a
#    benchmark's side-by-side twin) keeps glibc's; TARGET then gets TINV_ALLOCATOR="glibc", else
#    "tcmalloc".
# 2. src/common/executable_init.cpp, whose constructor runs before main: OpenBLAS's kernels for
#    CPUs its detection does not know (common/blas.h) and one libtorch thread per physical core
#    (common/threads.h).
#
# The libraries (tinv_core, tinv_api) impose neither on a program that embeds them.
if(TINV_TCMALLOC)
  find_library(TINV_TCMALLOC_LIBRARY NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)
  if(TINV_TCMALLOC_LIBRARY)
    message(STATUS "tinv: executables use tcmalloc (${TINV_TCMALLOC_LIBRARY})")
  else()
    message(WARNING "tinv: libtcmalloc_minimal not found (Debian: libtcmalloc-minimal4); the "
                    "executables use glibc's malloc, which makes CPU training steps up to ~1.6x slower")
  endif()
endif()

function(tinv_executable target)
  cmake_parse_arguments(PARSE_ARGV 1 EXE "GLIBC" "" "")
  target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/src/common/executable_init.cpp)
  if(TINV_TCMALLOC AND TINV_TCMALLOC_LIBRARY AND NOT EXE_GLIBC)
    # --no-as-needed: the executable's own objects may not call malloc directly, but libtorch's do.
    target_link_libraries(${target} PRIVATE "-Wl,--push-state,--no-as-needed"
                          ${TINV_TCMALLOC_LIBRARY} "-Wl,--pop-state")
    target_compile_definitions(${target} PRIVATE TINV_ALLOCATOR="tcmalloc")
  else()
    target_compile_definitions(${target} PRIVATE TINV_ALLOCATOR="glibc")
  endif()
endfunction()
