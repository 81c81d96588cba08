#!/usr/bin/env bash
# tinv on a machine with an NVIDIA GPU and a CUDA PyTorch install: builds tinv against that
# PyTorch's libtorch, runs `tinv parity` on every ../shared/fixtures folder on the device (at
# --dtype fp32 and at --dtype bf16, whose tolerances are in docs/PERFORMANCE.md), times
# caption-initialised textual inversion (`tinv invert`, bundled world model) and SD1.5-size TI
# steps (bench_invert, random weights; fp32 and bf16), one 30-step generation, and prints one
# short table.
#
# Usage: scripts/gpu_check.sh [--device cuda|cpu] [--quick] [--deps DIR] [--fixtures DIR] [--checks LIST]
#   --device    where everything runs (default cuda; cpu checks the script on any machine)
#   --quick     fewer steps and a small SD1.5 resolution (a CPU test of the script, ~minutes)
#   --deps      a folder made by scripts/gpu_deps.sh on a Debian 12 machine: the libraries that a
#               machine without apt or network lacks (Cairo, WebP, TIFF, stb, ...); no apt then
#   --fixtures  the parity fixtures (default ../shared/fixtures)
#   --checks    comma-separated, of parity, invert (and generate), bench (SD1.5 TI steps), sdxl
#               (default all of them)
# Environment: PYTHON (default python3), TINV_GPU_BUILD (default build-gpu), TINV_JOBS (nproc),
#   TINV_GPU_OUT (default out/gpu_check: logs and outputs).
# Exit status: non-zero when the build or any check fails (the table is printed either way).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda QUICK=0 DEPS="" FIXTURES=../shared/fixtures CHECKS=parity,invert,bench,sdxl
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=${2:?--device needs cpu or cuda}; shift 2;;
    --device=*) DEVICE=${1#--device=}; shift;;
    --quick) QUICK=1; shift;;
    --deps) DEPS=${2:?--deps needs a folder}; shift 2;;
    --deps=*) DEPS=${1#--deps=}; shift;;
    --fixtures) FIXTURES=${2:?--fixtures needs a folder}; shift 2;;
    --fixtures=*) FIXTURES=${1#--fixtures=}; shift;;
    --checks) CHECKS=${2:?--checks needs a list}; shift 2;;
    --checks=*) CHECKS=${1#--checks=}; shift;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "gpu_check: unknown option '$1' (see --help)" >&2; exit 2;;
  esac
done
case "$DEVICE" in cpu|cuda|cuda:[0-9]*) ;; *) echo "gpu_check: --device must be cpu or cuda" >&2; exit 2;; esac

PY=${PYTHON:-python3}
BUILD=${TINV_GPU_BUILD:-build-gpu}
OUT=${TINV_GPU_OUT:-out/gpu_check}
JOBS=${TINV_JOBS:-$(nproc)}
for c in ${CHECKS//,/ }; do
  case "$c" in parity|invert|bench|sdxl) ;; *) echo "gpu_check: --checks: unknown check '$c' (parity, invert, bench, sdxl)" >&2; exit 2;; esac
done
has() { [[ ",$CHECKS," == *",$1,"* ]]; }
[ -d "$FIXTURES" ] || { echo "gpu_check: --fixtures: no folder $FIXTURES" >&2; exit 2; }
if [ -n "$DEPS" ]; then
  [ -d "$DEPS/usr/include" ] || { echo "gpu_check: --deps: $DEPS is not a folder made by scripts/gpu_deps.sh (no usr/include)" >&2; exit 2; }
  DEPS=$(cd "$DEPS" && pwd)
fi
# Fixture folders of a model family tinv does not implement yet: run and shown, not counted
# (the matching ctest is disabled too). Remove a name when its family lands.
NOT_YET=""
log() { printf 'gpu_check: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# XL_RES 0: no SDXL-size benchmark (its random weights alone are 14 GB and a minute to make).
if [ "$QUICK" = 1 ]; then
  TI_STEPS=10 BENCH_RES=64 BENCH_ITERS=2 XL_RES=0 XL_ITERS=0
elif [ "$DEVICE" = cpu ]; then
  TI_STEPS=100 BENCH_RES=256 BENCH_ITERS=2 XL_RES=512 XL_ITERS=1
else
  TI_STEPS=100 BENCH_RES=512 BENCH_ITERS=100 XL_RES=1024 XL_ITERS=10
fi
GEN_STEPS=30

# 1. Which libtorch: the PyTorch install's, else (no cmake files there) the system one.
TORCH_DIR="" TORCH_FROM=""
if prefix=$("$PY" -c 'import os, torch; p = torch.utils.cmake_prefix_path
assert os.path.isfile(os.path.join(p, "Torch", "TorchConfig.cmake")); print(p)' 2>/dev/null); then
  TORCH_DIR=$prefix/Torch
  TORCH_FROM="PyTorch $("$PY" -c 'import torch; print(torch.__version__)') ($prefix)"
else
  why="$PY has no torch module"
  "$PY" -c 'import torch' 2>/dev/null && why="the PyTorch of $PY ($("$PY" -c 'import torch; print(torch.__version__)')) ships no cmake files"
  for d in /usr/lib/*/cmake/Torch /usr/share/cmake/Torch /usr/local/share/cmake/Torch; do
    if [ -f "$d/TorchConfig.cmake" ]; then TORCH_DIR=$d; break; fi
  done
  [ -n "$TORCH_DIR" ] || die "$why, and no system libtorch (TorchConfig.cmake) was found"
  TORCH_FROM="system libtorch ($TORCH_DIR; fallback: $why)"
  log "note: $why; falling back to the system libtorch in $TORCH_DIR"
fi
if [ "${DEVICE%%:*}" = cuda ] && "$PY" -c 'import torch' 2>/dev/null &&
   [ "$("$PY" -c 'import torch; print(torch.cuda.is_available())')" != True ]; then
  die "--device $DEVICE: PyTorch sees no GPU (torch.cuda.is_available() is False); use --device cpu to test the script"
fi

# 2. Build tinv and bench_invert (no tests: a pip libtorch may use another C++ ABI than the
#    system GoogleTest). The libraries come from --deps, else from Debian where apt is there.
need=()
if [ -z "$DEPS" ] && command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
  for p in cmake ninja-build g++ pkg-config nlohmann-json3-dev libstb-dev libcli11-dev libbenchmark-dev \
           libcairo2-dev libfontconfig-dev libwebp-dev libtiff-dev libpng-dev zlib1g-dev; do
    case "$p" in  # tools from elsewhere (pip's cmake and ninja) will do
      cmake|g++|pkg-config) command -v "$p" >/dev/null && continue;;
      ninja-build) command -v ninja >/dev/null && continue;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  log "installing ${need[*]}"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2; } ||
    die "apt-get could not install ${need[*]}; offline, make a folder with scripts/gpu_deps.sh on a Debian 12 machine and pass --deps"
fi
DEPS_ARGS=() DEPS_LIB=""
if [ -n "$DEPS" ]; then
  arch_lib=$(find "$DEPS/usr/lib" -maxdepth 1 -type d -name '*-linux-gnu' | head -1)
  arch_lib=${arch_lib:-$DEPS/usr/lib}
  # At run time the machine's own libraries come first: a link folder holds only the --deps
  # libraries whose soname the machine lacks (ldconfig), and LD_LIBRARY_PATH gets that folder.
  DEPS_LIB=$PWD/$BUILD/deps-lib
  rm -rf "$DEPS_LIB"; mkdir -p "$DEPS_LIB"
  have=$(ldconfig -p 2>/dev/null | awk '{ print $1 }')
  for f in "$arch_lib"/lib*.so.*; do
    name=$(basename "$f")
    [[ "$name" =~ ^lib.*\.so\.[0-9]+$ ]] || continue
    grep -qxF "$name" <<<"$have" || ln -sf "$f" "$DEPS_LIB/$name"
  done
  DEPS_ARGS=(-DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$arch_lib" -DCMAKE_SHARED_LINKER_FLAGS="-Wl,-rpath-link,$arch_lib")
  log "--deps $DEPS: $(ls "$DEPS_LIB" | wc -l) libraries the machine lacks ($(ls "$DEPS_LIB" | tr '\n' ' '))"
fi
WITH_BENCH=ON
[ -n "$(find /usr /usr/local ${DEPS:+"$DEPS/usr"} -name benchmarkConfig.cmake -print -quit 2>/dev/null)" ] || WITH_BENCH=OFF
GEN=(-G Ninja); command -v ninja >/dev/null || GEN=()
mkdir -p "$OUT"
t=$(now)
log "building $BUILD against $TORCH_FROM"
if ! cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$TORCH_DIR" \
     -DCMAKE_PREFIX_PATH="$(dirname "$TORCH_DIR")${DEPS:+;$DEPS/usr}" -DTINV_BUILD_TESTS=OFF \
     -DCMAKE_POLICY_VERSION_MINIMUM=3.5 ${DEPS_ARGS[@]+"${DEPS_ARGS[@]}"} \
     -DTINV_BUILD_BENCH="$WITH_BENCH" >"$OUT/configure.log" 2>&1; then
  tail -30 "$OUT/configure.log" >&2
  die "cmake failed ($OUT/configure.log). A CUDA PyTorch's TorchConfig needs the CUDA toolkit (nvcc) of torch.version.cuda: install it or point CUDAToolkit_ROOT / CUDA_HOME at it"
fi
targets=(tinv); [ "$WITH_BENCH" = ON ] && { has bench || has sdxl; } && targets+=(bench_invert bench_sdxl)
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" >"$OUT/build.log" 2>&1 ||
  { tail -30 "$OUT/build.log" >&2; die "build failed ($OUT/build.log)"; }
BUILD_S=$(secs "$t")
[ -z "$DEPS_LIB" ] || export LD_LIBRARY_PATH="$DEPS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
TINV=$BUILD/tinv
VERSION=$("$TINV" --version)

# 3. The checks; each adds a table row. A failed check marks the run failed and goes on.
ROWS=() FAILED=0
row() { ROWS+=("$(printf '| %-46s | %-34s | %8s |' "$1" "$2" "$3")"); log "${ROWS[-1]}"; }
fail() { FAILED=1; row "$1" "FAIL: $2" "$3"; }

for dtype in fp32 bf16; do
  has parity || break
  for dir in "$FIXTURES"/*/; do
    name=$(basename "$dir")
    [ -f "$dir/model/model_index.json" ] || [ -f "$dir/cases/blip.safetensors" ] || continue
    t=$(now); rc=0; log_file="$OUT/parity-$name-$dtype.log"
    "$TINV" parity "$dir" --device "$DEVICE" --dtype "$dtype" >"$log_file" 2>&1 || rc=$?
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log_file" | tail -1 || true)
    if [ "$rc" = 0 ] && [ -n "$summary" ]; then row "parity $name $dtype" "$summary" "$(secs "$t") s"
    elif grep -q "bf16 on this CPU needs AVX-512" "$log_file"; then row "parity $name $dtype" "skipped: CPU without AVX-512 (1.13)" "-"
    elif [[ "$NOT_YET" == *" $name "* ]]; then row "parity $name $dtype (not implemented yet)" "${summary:-?} (not counted)" "$(secs "$t") s"
    else fail "parity $name $dtype" "${summary:-$(tail -1 "$log_file")}" "$(secs "$t") s"; fi
  done
done

# Caption-initialised textual inversion with the real command (bundled world model, 64 px).
t=$(now)
if ! has invert; then :
elif "$TINV" invert --model models/world-sd --image models/concepts/coin_circle.png --caption "a coin circle" \
     --name concept --steps "$TI_STEPS" --eval-every 0 --device "$DEVICE" --no-progress \
     --out "$OUT/concept.safetensors" >"$OUT/invert.log" 2>&1; then
  s=$(secs "$t")
  row "invert world-sd, caption init, $TI_STEPS steps" "$(awk -v s="$s" -v n="$TI_STEPS" 'BEGIN { printf "%.3f s/step (incl. load)", s / n }')" "$s s"
else
  fail "invert world-sd, $TI_STEPS steps" "$(tail -1 "$OUT/invert.log")" "$(secs "$t") s"
fi

t=$(now)
if ! has invert; then :
elif [ -f "$OUT/concept.safetensors" ] &&
   "$TINV" generate --model models/world-sd --prompt "a small <concept> on a yellow striped background" \
     --embedding "$OUT/concept.safetensors" --steps "$GEN_STEPS" --seed 1 --device "$DEVICE" \
     --quiet --out "$OUT/images" >"$OUT/generate.log" 2>&1; then
  row "generate world-sd + embedding, $GEN_STEPS steps" "1 image in $OUT/images" "$(secs "$t") s"
else
  fail "generate world-sd, $GEN_STEPS steps" "$(tail -1 "$OUT/generate.log" 2>/dev/null || echo 'no embedding')" "$(secs "$t") s"
fi

# Textual-inversion steps at SD1.5 size (random weights, 4 caption-token rows).
if ! has bench; then :
elif [ "$WITH_BENCH" = ON ]; then
  for dtype in fp32 bf16; do
    t=$(now); log_file="$OUT/bench_invert-$dtype.log"
    if "$BUILD/bench/bench_invert" --device "$DEVICE" --dtype "$dtype" --res "$BENCH_RES" --batch 1 --modes step \
         --iters "$BENCH_ITERS" --tokenizer "$FIXTURES/tiny-sd15/model/tokenizer" >"$log_file" 2>&1; then
      per=$(awk '$1 == "step" { print $2 " s/step" }' "$log_file")
      row "TI step SD1.5 random, ${BENCH_RES} px, $dtype, $BENCH_ITERS iters" "${per:-?}" "$(secs "$t") s"
    elif grep -q "bf16 on this CPU needs AVX-512" "$log_file"; then
      row "TI step SD1.5 random, ${BENCH_RES} px, $dtype" "skipped: CPU without AVX-512 (1.13)" "-"
    else
      fail "TI step SD1.5 random, ${BENCH_RES} px, $dtype" "$(tail -1 "$log_file")" "$(secs "$t") s"
    fi
  done
else
  row "TI step SD1.5 random" "skipped: Google Benchmark missing" "-"
fi

# A sampler step and a textual-inversion step at SDXL size (random weights, both encoders).
if ! has sdxl; then :
elif [ "$WITH_BENCH" = ON ] && [ "$XL_RES" != 0 ]; then
  t=$(now)
  if "$BUILD/bench/bench_sdxl" --device "$DEVICE" --res "$XL_RES" --modes sample,step --iters "$XL_ITERS" \
       --tokenizers "$FIXTURES/tiny-sdxl/model" >"$OUT/bench_sdxl.log" 2>&1; then
    for m in sample step; do
      per=$(awk -v m="$m" '$1 == m { $1 = ""; sub(/^ /, ""); sub(/ +peak.*/, ""); print }' "$OUT/bench_sdxl.log")
      case "$per" in *s/step) row "SDXL random, $m, ${XL_RES} px, $XL_ITERS iters" "$per" "$(secs "$t") s";;
                     *) fail "SDXL random, $m, ${XL_RES} px" "${per:-?}" "$(secs "$t") s";; esac
    done
  else
    fail "SDXL random, ${XL_RES} px" "$(tail -1 "$OUT/bench_sdxl.log")" "$(secs "$t") s"
  fi
elif [ "$XL_RES" = 0 ]; then
  row "SDXL random, sample and TI step" "skipped with --quick (14 GB weights)" "-"
fi

echo
echo "tinv gpu check: --device $DEVICE$([ "$QUICK" = 1 ] && echo ' --quick'), $VERSION"
echo "libtorch: $TORCH_FROM; build $BUILD_S s; logs in $OUT"
printf '| %-46s | %-34s | %8s |\n' check result time
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..10})"
printf '%s\n' "${ROWS[@]}"
[ "$FAILED" = 0 ] || { log "some checks failed"; exit 1; }
