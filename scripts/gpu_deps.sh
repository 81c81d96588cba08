#!/usr/bin/env bash
# The build dependencies of tinv that a CUDA PyTorch machine may lack (Cairo, fontconfig, WebP,
# TIFF, stb, and the header-only nlohmann-json, CLI11 and Google Benchmark), as Debian's packages
# unpacked into one folder, for a machine that cannot install packages (offline, or no apt):
#
#   scripts/gpu_deps.sh DIR          # here, on Debian 12 with apt (downloads, needs no root)
#   scripts/gpu_check.sh --deps DIR  # there: CMake finds them under DIR/usr, tinv runs with DIR's libraries
#
# DIR gets usr/include and usr/lib/<arch> of each package (no documentation) and a MANIFEST of
# the packages and versions. The libraries are Debian 12's (glibc 2.36), so they run on any
# x86-64 Linux with glibc >= 2.36 (Ubuntu 24.04 has 2.39); glibc, libstdc++ and libgcc are left to
# the machine. The folder has no .pc files (theirs name /usr): CMake takes each library by header
# and file (cmake/dependencies.cmake).
set -euo pipefail
DIR=${1:?usage: scripts/gpu_deps.sh DIR}
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  { echo "gpu_deps: needs apt-get and dpkg-deb (a Debian machine)" >&2; exit 1; }

# Headers and link names, then the run-time libraries of their closure (libcairo2's, libtiff6's,
# libwebp7's and libfontconfig1's shared-library dependencies on Debian 12, glibc aside).
DEV=(libcairo2-dev libfontconfig-dev libfreetype-dev libwebp-dev libtiff-dev libstb-dev libpng-dev zlib1g-dev
     nlohmann-json3-dev libcli11-dev libbenchmark-dev)
RUNTIME=(libcairo2 libfontconfig1 libfreetype6 libpixman-1-0 libpng16-16 libwebp7 libtiff6 libstb0 libjbig0
         libjpeg62-turbo liblerc4 libdeflate0 libzstd1 liblzma5 zlib1g libbrotli1 libbsd0 libmd0 libexpat1
         libx11-6 libxau6 libxcb1 libxcb-render0 libxcb-shm0 libxdmcp6 libxext6 libxrender1 libbenchmark1debian)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod a+rwx "$tmp"  # apt's download user (_apt) writes there
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
echo "gpu_deps: downloading ${#DEV[@]} -dev and ${#RUNTIME[@]} library packages" >&2
(cd "$tmp" && apt-get download -q "${DEV[@]}" "${RUNTIME[@]}" >/dev/null) ||
  { echo "gpu_deps: apt-get download failed (apt-get update first?)" >&2; exit 1; }
: >"$tmp/MANIFEST"
for deb in "$tmp"/*.deb; do
  dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb" >>"$tmp/MANIFEST"
  dpkg-deb -x "$deb" "$tmp/root"
done
rm -rf "$tmp/root/usr/share/doc" "$tmp/root/usr/share/man" "$tmp/root/usr/share/lintian" "$tmp/root/usr/bin"
# Shared libraries only (the static ones would double its size; Google Benchmark's CMake files
# name its libbenchmark_main.a), no GObject or script bindings, and no .pc files: they name /usr,
# where the other machine has none of this.
find "$tmp/root" \( \( -name '*.a' ! -name 'libbenchmark*' \) -o -name 'libcairo-gobject*' -o -name 'libcairo-script*' \
  -o -name 'libtiffxx*' -o -name '*.pc' \) -delete
# Debian 12 keeps some libraries in /lib (merged /usr on the machine, not in the package).
if [ -d "$tmp/root/lib" ]; then cp -a "$tmp/root/lib/." "$tmp/root/usr/lib/"; rm -rf "$tmp/root/lib"; fi
rm -rf "$DIR/usr"
mv "$tmp/root/usr" "$DIR/usr"
sort "$tmp/MANIFEST" >"$DIR/MANIFEST"
echo "gpu_deps: $(wc -l <"$DIR/MANIFEST") packages in $DIR ($(du -sh "$DIR" | cut -f1))" >&2
