# The executables' memory allocator.
#
# glibc's malloc hands every block over 32 MB (its largest mmap threshold) back to the kernel on
# free, so each new one is faulted in and zeroed page by page again. A textual-inversion step
# allocates and frees hundreds of such blocks (activations, oneDNN's weight reorders, the 1.13
# attention chunks): a 512 px step on libtorch 1.13 takes 27.7 s on glibc's malloc and 17.8 s on
# tcmalloc, which keeps freed spans for reuse (2.6: 14.0 s and 12.5 s; docs/PERFORMANCE.md).
#
# tinv_use_allocator(TARGET) links TARGET (an executable) with libtcmalloc_minimal, ahead of
# libstdc++ and libc, so that it serves malloc and operator new for libtorch as well. The
# library (tinv_core, tinv_api) never imposes an allocator on a program that embeds it.
# TINV_TCMALLOC=OFF, or a machine without the library (a PyTorch install elsewhere), keeps
# glibc's; the target then gets TINV_ALLOCATOR="glibc", else "tcmalloc".
if(TINV_TCMALLOC)
  find_library(TINV_TCMALLOC_LIBRARY NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)
  if(TINV_TCMALLOC_LIBRARY)
    message(STATUS "tinv: executables use tcmalloc (${TINV_TCMALLOC_LIBRARY})")
  else()
    message(WARNING "tinv: libtcmalloc_minimal not found (Debian: libtcmalloc-minimal4); the "
                    "executables use glibc's malloc, which makes CPU training steps up to ~1.6x slower")
  endif()
endif()

function(tinv_use_allocator target)
  if(TINV_TCMALLOC AND TINV_TCMALLOC_LIBRARY)
    # --no-as-needed: the executable's own objects may not call malloc directly, but libtorch's do.
    target_link_libraries(${target} PRIVATE "-Wl,--push-state,--no-as-needed"
                          ${TINV_TCMALLOC_LIBRARY} "-Wl,--pop-state")
    target_compile_definitions(${target} PRIVATE TINV_ALLOCATOR="tcmalloc")
  else()
    target_compile_definitions(${target} PRIVATE TINV_ALLOCATOR="glibc")
  endif()
endfunction()
