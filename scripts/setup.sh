#!/usr/bin/env bash
# Installs tinv's build dependencies (Debian 12 packages) and builds it into build/.
# Usage: scripts/setup.sh            (as root or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  clang-format                         # the C++ layout (.clang-format; the format ctest)
  libtorch-dev libopenblas0-openmp     # libtorch; OpenBLAS makes its matmul ~15x faster
  libtcmalloc-minimal4                 # malloc for the executables: CPU steps up to 1.6x faster
  nlohmann-json3-dev libstb-dev libcli11-dev googletest libbenchmark-dev
  libcairo2-dev fonts-dejavu-core      # plots (io/plot.h): Cairo, the DejaVu Sans font
  libwebp-dev libtiff-dev libpng-dev zlib1g-dev  # WebP/TIFF input, PNG output, CRC-32
  python3-torch                        # tests check that Python's torch.load reads our .pt files
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
