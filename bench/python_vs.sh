#!/usr/bin/env bash
# tinv's textual-inversion step against the Python loop people run today
# (bench/python_ti_step.py: diffusers' textual_inversion.py step in plain PyTorch, checked
# against the parity fixtures by ctest python.ti_step.<fixture>), side by side in one run: every
# configuration takes its turn in each round, so a drift in the machine's speed hits all alike.
# SD1.5-size random weights, batch 1, each run in its own process (a clean peak RSS), one untimed
# warm-up step per run.
#
# Usage: bench/python_vs.sh [RES]        (default 256)
# Environment: TINV_VS_ROUNDS (default 2), TINV_VS_ITERS (default 2) timed steps per run,
# OMP_NUM_THREADS (default 2), TINV_VS_TORCH2=1 adds tinv on libtorch 2.6 (scripts/check_libtorch2.sh's
# root, as root).
# Rows: tinv fp32 and bf16 (bench_invert --modes step), on 1.13 and (TINV_VS_TORCH2=1) on 2.6;
# the Python loop with latents cached (what tinv's step does) on the OpenBLAS kernels Debian's
# python3-torch picks by itself, then with OPENBLAS_CORETYPE set to the kernels tinv picks
# (common/blas.h), then with tcmalloc preloaded as well; and the script's own step (VAE encode
# every step). Prints a table: median s/step, each row's time over the tuned Python loop's, and
# peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
RES=${1:-256}
ROUNDS=${TINV_VS_ROUNDS:-2}
ITERS=${TINV_VS_ITERS:-2}
THREADS=${OMP_NUM_THREADS:-2}
PY=/usr/bin/python3
[ -x build/bench/bench_invert ] || { echo "python_vs: build/bench/bench_invert missing (scripts/setup.sh)" >&2; exit 1; }
"$PY" -c 'import torch' 2>/dev/null || { echo "python_vs: $PY has no torch (apt install python3-torch)" >&2; exit 1; }
# The kernels tinv selects on this CPU, from its --version line ("blas: OpenBLAS 0.3.21 Cooperlake").
CORE=$(build/tinv --version | sed -n 's/.*blas: OpenBLAS [0-9.]* \([A-Za-z0-9]*\).*/\1/p')
TCMALLOC=$(ls /usr/lib/*/libtcmalloc_minimal.so.4 2>/dev/null | head -1 || true)

LABELS=() CMDS=()
add() { LABELS+=("$1"); CMDS+=("$2"); }
BI="env OMP_NUM_THREADS=$THREADS build/bench/bench_invert --res $RES --batch 1 --modes step --iters $ITERS"
PB="env OMP_NUM_THREADS=$THREADS $PY bench/python_ti_step.py bench --res $RES --iters $ITERS"
for dt in fp32 bf16; do add "tinv $dt (libtorch 1.13)" "$BI --dtype $dt"; done
if [ "${TINV_VS_TORCH2:-0}" = 1 ]; then
  for dt in fp32 bf16; do
    add "tinv $dt (libtorch 2.6)" "scripts/check_libtorch2.sh --run 'env OMP_NUM_THREADS=$THREADS \"\$TINV_BUILD/bench/bench_invert\" --res $RES --batch 1 --modes step --iters $ITERS --dtype $dt'"
  done
fi
add "Python loop, cached latents, OpenBLAS as found" "$PB --cached-latents"
[ -n "$CORE" ] && add "Python loop, cached latents, OPENBLAS_CORETYPE=$CORE" "env OPENBLAS_CORETYPE=$CORE $PB --cached-latents"
[ -n "$CORE" ] && [ -n "$TCMALLOC" ] &&
  add "Python loop, cached latents, OPENBLAS_CORETYPE=$CORE, tcmalloc" "env OPENBLAS_CORETYPE=$CORE LD_PRELOAD=$TCMALLOC $PB --cached-latents"
add "Python script step (VAE encode every step), OpenBLAS as found" "$PB"
# The reference row for the ratios: the last cached-latents Python row, the best tuned one available.
REF=$(( ${#LABELS[@]} - 2 ))

LOG=$(mktemp /tmp/python_vs.XXXXXX.log)
declare -A T M
for ((r = 1; r <= ROUNDS; r++)); do
  for i in "${!CMDS[@]}"; do
    read -r t m < <(bash -c "${CMDS[$i]}" 2>>"$LOG" | tee -a "$LOG" | awk '/^step / {print $2, $(NF-1)}')
    echo "round $r: ${LABELS[$i]}: $t s/step, peak $m GB" >&2
    T[$i]+="$t "; M[$i]+="$m "
  done
done
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ref=$(tr ' ' '\n' <<<"${T[$REF]}" | grep . | median)
printf '\nTI step, %s px, SD1.5 random weights, batch 1, %s threads, %s rounds of %s steps (log: %s)\n' "$RES" "$THREADS" "$ROUNDS" "$ITERS" "$LOG"
printf '| configuration | s/step | vs %s | peak RSS |\n|---|---|---|---|\n' "${LABELS[$REF]}"
for i in "${!CMDS[@]}"; do
  t=$(tr ' ' '\n' <<<"${T[$i]}" | grep . | median)
  m=$(tr ' ' '\n' <<<"${M[$i]}" | grep . | sort -g | tail -1)
  printf '| %s | %.2f | %.2fx | %s GB |\n' "${LABELS[$i]}" "$t" "$(awk -v a="$t" -v b="$ref" 'BEGIN {print a / b}')" "$m"
done
