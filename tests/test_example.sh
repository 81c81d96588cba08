#!/usr/bin/env bash
# Runs examples/embed.cpp (tinv through include/tinv/tinv.h alone) on a bundled concept image
# with the bundled models, and checks what it printed and wrote.
set -euo pipefail
example="$1" image="$2"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
log=$("$example" "$image" "$out" --steps 20)
echo "$log"
grep -q '^caption: a ' <<< "$log" || { echo "FAIL: no caption printed"; exit 1; }
grep -q '^trigger: <concept> (20 steps)' <<< "$log" || { echo "FAIL: no trigger / steps"; exit 1; }
[ -s "$out/concept.safetensors" ] || { echo "FAIL: no embedding file"; exit 1; }
[ "$(head -c 8 "$out/generated.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
  { echo "FAIL: generated.png is not a PNG"; exit 1; }
grep -q 'wrote .*/generated.png (64x64)' <<< "$log" || { echo "FAIL: size not reported"; exit 1; }
# A missing image is a one-line error and a non-zero exit.
if err=$("$example" "$out/missing.png" "$out" 2>&1 >/dev/null); then echo "FAIL: missing image accepted"; exit 1; fi
[ "$(wc -l <<< "$err")" = 1 ] && grep -q 'missing.png' <<< "$err" || { echo "FAIL: error was: $err"; exit 1; }
echo PASS
