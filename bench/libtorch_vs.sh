#!/usr/bin/env bash
# The textual-inversion step on libtorch 1.13 (this machine's build/) and libtorch 2.6 (the
# Debian 13 root of scripts/check_libtorch2.sh, build-torch2/), side by side in one run: for each
# resolution the two builds take turns (1.13, 2.6, 1.13, 2.6, ...), so a drift in the machine's
# speed hits both alike. SD1.5-size random weights, batch 1, `bench_invert --modes step`, each
# run in its own process (a clean peak RSS).
#
# Usage: bench/libtorch_vs.sh [RES ...]        (as root, like check_libtorch2.sh; default 256 512)
# Environment: TINV_VS_ROUNDS (default 2) turns per build, TINV_VS_ITERS_<RES> (default 2 at
# 256 px, 1 above) timed steps per run after one untimed warm-up step, OMP_NUM_THREADS (default 2),
# TINV_VS_DTYPE (default fp32), TINV_VS_BENCH (default bench_invert; bench_invert_libc for glibc's malloc).
# Prints one line per run and then a table: median s/step of each build, the ratio 2.6 / 1.13,
# and the largest peak RSS of each.
set -euo pipefail
cd "$(dirname "$0")/.."
RESES=("$@")
[ ${#RESES[@]} -gt 0 ] || RESES=(256 512)
ROUNDS=${TINV_VS_ROUNDS:-2}
THREADS=${OMP_NUM_THREADS:-2}
DTYPE=${TINV_VS_DTYPE:-fp32}
BENCH=${TINV_VS_BENCH:-bench_invert}
[ -x "build/bench/$BENCH" ] || { echo "libtorch_vs: build/bench/$BENCH missing (scripts/setup.sh)" >&2; exit 1; }

# One run: prints "<s/step> <peak GB>" from bench_invert's step line.
parse() { awk '/^step / {print $2, $(NF-1)}'; }
run_host() {
  OMP_NUM_THREADS=$THREADS "build/bench/$BENCH" --res "$1" --batch 1 --modes step --iters "$2" \
    --dtype "$DTYPE" | tee -a "$LOG" | parse
}
run_root() {
  scripts/check_libtorch2.sh --run "env OMP_NUM_THREADS=$THREADS \"\$TINV_BUILD/bench/$BENCH\" \
    --res $1 --batch 1 --modes step --iters $2 --dtype $DTYPE" 2>>"$LOG" | tee -a "$LOG" | parse
}
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
maxof() { sort -g | tail -1; }

LOG=$(mktemp /tmp/libtorch_vs.XXXXXX.log)
declare -A T13 T26 M13 M26
for res in "${RESES[@]}"; do
  var="TINV_VS_ITERS_$res"
  iters=${!var:-$([ "$res" -le 256 ] && echo 2 || echo 1)}
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r t m < <(run_host "$res" "$iters")
    echo "libtorch 1.13  ${res} px  round $r: $t s/step, peak $m GB" >&2
    T13[$res]+="$t "; M13[$res]+="$m "
    read -r t m < <(run_root "$res" "$iters")
    echo "libtorch 2.6   ${res} px  round $r: $t s/step, peak $m GB" >&2
    T26[$res]+="$t "; M26[$res]+="$m "
  done
done

printf '\nTI step (%s), SD1.5 random weights, batch 1, %s, %s threads, %s rounds (log: %s)\n' "$BENCH" "$DTYPE" "$THREADS" "$ROUNDS" "$LOG"
printf '| res | 1.13 s/step | 2.6 s/step | 2.6 / 1.13 | 1.13 peak RSS | 2.6 peak RSS |\n|---|---|---|---|---|---|\n'
for res in "${RESES[@]}"; do
  a=$(tr ' ' '\n' <<<"${T13[$res]}" | grep . | median)
  b=$(tr ' ' '\n' <<<"${T26[$res]}" | grep . | median)
  ma=$(tr ' ' '\n' <<<"${M13[$res]}" | grep . | maxof)
  mb=$(tr ' ' '\n' <<<"${M26[$res]}" | grep . | maxof)
  printf '| %s | %.2f | %.2f | %.2fx | %s GB | %s GB |\n' "$res" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print b / a}')" "$ma" "$mb"
done
