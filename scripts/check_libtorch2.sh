#!/usr/bin/env bash
# Builds tinv against libtorch 2.x (Debian 13's libtorch-dev 2.6, g++ 14) in a Debian 13 root
# and runs the whole ctest suite there, parity on every ../shared/fixtures folder included.
#
# Usage: scripts/check_libtorch2.sh          (as root: debootstrap, chroot and mounts need it)
#        scripts/check_libtorch2.sh --run 'COMMAND'
#                                             builds, then runs COMMAND (a shell command line) in
#                                             the root, in the source folder, instead of ctest;
#                                             exits with its status (bench/libtorch_vs.sh uses it)
#
# The first run creates the root with `debootstrap --variant=minbase trixie` (a few minutes of
# downloads) and installs the packages of scripts/setup.sh there; later runs reuse it, install
# only what is missing, and rebuild incrementally with a ccache of their own, so a warm run costs
# about the test suite. The build goes to build-torch2/ in the source tree; the source tree and
# ../shared are bind-mounted into the root at their own paths, so every path (fixtures, models,
# ccache's base dir) is the same inside as outside. Mounts live in a private mount namespace and
# are unmounted on exit, whatever the exit.
#
# Environment:
#   TINV_TRIXIE_ROOT   the Debian 13 root       (default /var/cache/tinv/trixie-root)
#   TINV_TORCH2_CCACHE its ccache folder         (default /var/cache/tinv/ccache-torch2)
#   TINV_TORCH2_BUILD  the build folder          (default <source>/build-torch2)
#   TINV_DEBIAN_MIRROR the Debian mirror         (default: the host's apt sources, else deb.debian.org)
#   TINV_JOBS          build and ctest jobs      (default: nproc)
#   TINV_CTEST_ARGS    extra ctest arguments     (e.g. "-L parity")
# Exit status: non-zero when the root, the build or any test fails.
# shellcheck disable=SC2016  # the dpkg-query formats are literal
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd -P)
ROOT=${TINV_TRIXIE_ROOT:-/var/cache/tinv/trixie-root}
CCACHE=${TINV_TORCH2_CCACHE:-/var/cache/tinv/ccache-torch2}
BUILD=${TINV_TORCH2_BUILD:-$SRC/build-torch2}
JOBS=${TINV_JOBS:-$(nproc)}
SUITE=trixie
RUN=""
case "${1:-}" in
  --run) [ $# -eq 2 ] || { echo "usage: $0 [--run 'COMMAND']" >&2; exit 2; }; RUN=$2 ;;
  "") ;;
  *) echo "check_libtorch2: unknown argument '$1' (usage: $0 [--run 'COMMAND'])" >&2; exit 2 ;;
esac

# scripts/setup.sh's list, with Debian 13 names (GoogleTest's libraries are in libgtest-dev).
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp libtcmalloc-minimal4t64
  nlohmann-json3-dev libstb-dev libcli11-dev libgtest-dev libbenchmark-dev
  libcairo2-dev fonts-dejavu-core
  libwebp-dev libtiff-dev libpng-dev zlib1g-dev
  python3-torch
)

log() { printf 'check_libtorch2: %s\n' "$*" >&2; }
T0=$SECONDS; TLAST=$SECONDS; PHASES=""
phase_done() { PHASES+="$1 $((SECONDS - TLAST)) s, "; TLAST=$SECONDS; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and bind mounts need it)"
[ -d "$SRC/../shared/fixtures" ] || die "$SRC/../shared/fixtures: missing (the tests read it)"
SHARED=$(cd "$SRC/../shared" && pwd -P)
case "$ROOT" in "$SRC"/*) die "TINV_TRIXIE_ROOT must be outside the source tree";; esac

# Everything below runs in a private mount namespace: the bind mounts vanish with the process
# even if it is killed; the trap unmounts them on any ordinary exit.
if [ -z "${TINV_IN_MOUNT_NS:-}" ]; then
  command -v unshare >/dev/null || die "unshare (util-linux) is missing"
  TINV_IN_MOUNT_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi

mirror() {
  if [ -n "${TINV_DEBIAN_MIRROR:-}" ]; then echo "$TINV_DEBIAN_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}')
  [ -n "$m" ] || m=$(awk '/^deb / && $2 ~ /\/debian\/?$/ {print $2; exit}' \
                     /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

MOUNTS=()
cleanup() {
  local rc=$? i
  log "time: ${PHASES}total $((SECONDS - T0)) s (exit $rc)"
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The root: made once in ROOT.partial, renamed when complete (an interrupted debootstrap
#    leaves no half root behind that a later run would take for a good one).
if [ ! -f "$ROOT/.tinv-root-ok" ]; then
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  fi
  MIRROR=$(mirror)
  log "creating the Debian 13 root in $ROOT from $MIRROR"
  mkdir -p "$(dirname "$ROOT")"
  rm -rf "$ROOT.partial"
  debootstrap --variant=minbase "$SUITE" "$ROOT.partial" "$MIRROR" >&2
  touch "$ROOT.partial/.tinv-root-ok"
  rm -rf "$ROOT"
  mv "$ROOT.partial" "$ROOT"
fi
phase_done root

bind() {  # bind <host path> <path inside the root> [mount options]
  mkdir -p "$ROOT$2"
  mount --bind "$1" "$ROOT$2"
  MOUNTS+=("$ROOT$2")
  if [ -n "${3:-}" ]; then mount -o "remount,bind,$3" "$ROOT$2"; fi
}
bind /dev /dev
mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
mount -t sysfs sysfs "$ROOT/sys"; MOUNTS+=("$ROOT/sys")
mount -t tmpfs -o size=2g tmpfs "$ROOT/dev/shm"; MOUNTS+=("$ROOT/dev/shm")
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

# 2. Packages: only what is missing, so a warm run touches no network.
missing=()
for p in "${PACKAGES[@]}"; do
  in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing in the root: ${missing[*]}"
  in_root apt-get update -qq
  in_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  in_root apt-get clean
fi
phase_done packages
log "$(in_root dpkg-query -W -f='libtorch-dev ${Version}' libtorch-dev), $(in_root g++ --version | head -1)"

# 3. Source, fixtures and ccache at their own paths inside the root. Mounted after the package
#    install so that apt never sees them.
bind "$SRC" "$SRC"
bind "$SHARED" "$SHARED" ro
mkdir -p "$CCACHE" "$BUILD"
bind "$CCACHE" /var/cache/ccache-torch2
case "$BUILD" in "$SRC"/*) ;; *) bind "$BUILD" "$BUILD";; esac

# 4. Configure, build, test (niced: the 2-core machines share their cores).
log "building in $BUILD ($JOBS jobs)"
in_root env CCACHE_DIR=/var/cache/ccache-torch2 CCACHE_MAXSIZE=4G \
  nice -n 19 cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTINV_SHARED_DIR="$SHARED" >&2
in_root env CCACHE_DIR=/var/cache/ccache-torch2 CCACHE_MAXSIZE=4G \
  nice -n 19 cmake --build "$BUILD" -j"$JOBS"
in_root env CCACHE_DIR=/var/cache/ccache-torch2 ccache --show-stats 2>/dev/null | grep -Ei 'hits|misses' >&2 || true
phase_done build

if [ -n "$RUN" ]; then
  log "running in the root: $RUN"
  rc=0
  in_root env TINV_BUILD="$BUILD" bash -c "cd \"\$1\" && $RUN" bash "$SRC" || rc=$?
  phase_done run
  exit "$rc"
fi

log "running ctest"
# shellcheck disable=SC2086
in_root nice -n 19 ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" ${TINV_CTEST_ARGS:-}
phase_done tests
log "all tests passed on $(in_root dpkg-query -W -f='libtorch ${Version}' libtorch-dev)"
