#!/usr/bin/env bash
# Runs every benchmark once, each in its own process (clean peak-RSS figures), at SD1.5 /
# BLIP-base size with random weights, 2 CPU threads. Logs to ${1:-out/bench}/*.log.
# Takes ~15 minutes on a 2-core machine, plus ~20 for the two SDXL runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/bench}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
B=build/bench
run() { local name=$1; shift; echo "== $name: $*" | tee "$OUT/$name.log"; "$@" 2>&1 | tee -a "$OUT/$name.log"; }
run unet $B/bench_unet --benchmark_min_time=0.01 \
  --benchmark_filter='Conv3x3Rate|UNetForward/64|UNetForwardBackward/(32|64)'
run text_encoder $B/bench_text_encoder --benchmark_min_time=0.2
run invert_256 $B/bench_invert --res 256 --batch 1 --modes parts,step,naive --iters 1
run invert_512 $B/bench_invert --res 512 --batch 1 --modes step --iters 1
run invert_256_b4 $B/bench_invert --res 256 --batch 4 --modes step --iters 1
run generate $B/bench_generate
run vae $B/bench_vae
run caption $B/bench_caption
# SDXL size (14 GB of weights; the 1024 px TI step needs more than 24 GB and reports "out of memory").
# A virtual-memory cap turns running out of memory into that line instead of the OOM killer.
capped() { bash -c 'ulimit -v "${TINV_BENCH_VMEM_KB:-21500000}" && exec "$0" "$@"' "$@"; }
run sdxl_512 capped $B/bench_sdxl --res 512 --modes sample,step,decode --iters 1
run sdxl_1024 capped $B/bench_sdxl --res 1024 --modes sample,step,decode --iters 1
