# The C libraries tinv links (image codecs, Cairo and fontconfig for the figures, stb), found
# by pkg-config where their .pc files are there (Debian's -dev packages), else by their header
# and library in CMAKE_PREFIX_PATH and the system folders. The second way serves a machine whose
# packages tinv cannot install: an offline GPU box given an unpacked folder of Debian's packages
# (scripts/gpu_deps.sh, scripts/gpu_check.sh --deps), or a prefix with no .pc files. Both ways
# give the same target, PkgConfig::<VAR>.
#
# tinv_dependency(VAR MODULE HEADER [SUFFIX dir] [LIBRARIES name...] [OPTIONAL_LIBRARIES name...])
#   MODULE: the pkg-config module (with a version condition, if any: "libtiff-4>=4.5");
#   HEADER: a header that the fallback looks for, in <prefix>/include[/SUFFIX];
#   LIBRARIES: what the fallback links (each must be found); OPTIONAL_LIBRARIES: linked when found.
find_package(PkgConfig QUIET)

function(tinv_dependency var module header)
  cmake_parse_arguments(PARSE_ARGV 3 DEP "" "SUFFIX" "LIBRARIES;OPTIONAL_LIBRARIES")
  if(TARGET PkgConfig::${var})
    return()
  endif()
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(${var} QUIET IMPORTED_TARGET GLOBAL "${module}")
    if(${var}_FOUND)
      message(STATUS "tinv: ${module}: pkg-config, version ${${var}_VERSION}")
      return()
    endif()
  endif()
  string(REGEX REPLACE "[<>=].*" "" name "${module}")
  find_path(TINV_${var}_INCLUDE_DIR "${header}" PATH_SUFFIXES ${DEP_SUFFIX})
  set(libs "")
  set(missing "")
  foreach(lib IN LISTS DEP_LIBRARIES DEP_OPTIONAL_LIBRARIES)
    find_library(TINV_${var}_${lib}_LIBRARY NAMES ${lib})
    if(TINV_${var}_${lib}_LIBRARY)
      list(APPEND libs "${TINV_${var}_${lib}_LIBRARY}")
    elseif(lib IN_LIST DEP_LIBRARIES)
      list(APPEND missing "lib${lib}.so")
    endif()
  endforeach()
  if(NOT TINV_${var}_INCLUDE_DIR)
    list(PREPEND missing "${header}")
  endif()
  if(missing)
    list(JOIN missing ", " missing)
    message(FATAL_ERROR "tinv: ${module} not found: pkg-config has no ${name}.pc and the prefixes "
                        "(CMAKE_PREFIX_PATH, system folders) lack ${missing}. On Debian: "
                        "scripts/setup.sh; offline: scripts/gpu_deps.sh, then -DCMAKE_PREFIX_PATH=<folder>/usr")
  endif()
  add_library(PkgConfig::${var} INTERFACE IMPORTED GLOBAL)
  set_target_properties(PkgConfig::${var} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TINV_${var}_INCLUDE_DIR}"
                                                     INTERFACE_LINK_LIBRARIES "${libs}")
  message(STATUS "tinv: ${module}: ${TINV_${var}_INCLUDE_DIR} (no ${name}.pc), ${libs}")
  set(TINV_${var}_FALLBACK ON PARENT_SCOPE)
endfunction()

tinv_dependency(STB stb stb_image.h SUFFIX stb OPTIONAL_LIBRARIES stb)
# Plots (io/plot.h): Cairo draws them, fontconfig (a Cairo dependency) finds DejaVu Sans.
tinv_dependency(CAIRO cairo cairo.h SUFFIX cairo LIBRARIES cairo)
tinv_dependency(FONTCONFIG fontconfig fontconfig/fontconfig.h LIBRARIES fontconfig)
# Image codecs: WebP and TIFF input, PNG output; zlib's CRC-32 (ZIP and PNG).
tinv_dependency(WEBP libwebp webp/decode.h LIBRARIES webp)
tinv_dependency(TIFF "libtiff-4>=4.5" tiffio.h LIBRARIES tiff)  # 4.5: per-handle error handlers
if(TINV_TIFF_FALLBACK)
  # The fallback's version check: tiffvers.h has TIFFLIB_MAJOR_VERSION/MINOR from 4.5 on.
  file(STRINGS "${TINV_TIFF_INCLUDE_DIR}/tiffvers.h" tiff_minor REGEX "#define TIFFLIB_MINOR_VERSION")
  file(STRINGS "${TINV_TIFF_INCLUDE_DIR}/tiffvers.h" tiff_major REGEX "#define TIFFLIB_MAJOR_VERSION")
  string(REGEX MATCH "[0-9]+" tiff_minor "${tiff_minor}")
  string(REGEX MATCH "[0-9]+" tiff_major "${tiff_major}")
  if(NOT tiff_major OR "${tiff_major}.${tiff_minor}" VERSION_LESS 4.5)
    message(FATAL_ERROR "tinv: libtiff >= 4.5 needed (per-handle error handlers); "
                        "${TINV_TIFF_INCLUDE_DIR}/tiffvers.h is older")
  endif()
endif()
tinv_dependency(PNG libpng png.h LIBRARIES png16)
find_package(ZLIB REQUIRED)
