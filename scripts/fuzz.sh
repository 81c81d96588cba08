#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang, ASan+UBSan) and runs each for SECONDS
# (default 60) in one process (one core), from a small seed corpus generated here (never committed).
#   scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTINV_FUZZ=ON -DTINV_BUILD_TESTS=OFF -DTINV_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j2 --target fuzz_safetensors fuzz_tokenizer

corpus=build-fuzz/corpus
mkdir -p "$corpus/safetensors" "$corpus/tokenizer" build-fuzz/crashes
# safetensors seeds: an empty header, one F32 tensor, metadata + two tensors, a truncated file.
st() {  # st FILE HEADER DATA_BYTES
  local h="$2" n
  while (( ${#h} % 8 )); do h+=" "; done
  n=${#h}
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8 & 255)) \
    $((n >> 16 & 255)) $((n >> 24 & 255)))" > "$1"
  printf '%s' "$h" >> "$1"
  head -c "$3" /dev/zero | tr '\0' '\1' >> "$1"
}
st "$corpus/safetensors/empty" '{}' 0
st "$corpus/safetensors/one" '{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}' 16
st "$corpus/safetensors/two" '{"__metadata__":{"k":"v"},"a":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"I64","shape":[1],"data_offsets":[6,14]}}' 14
st "$corpus/safetensors/short" '{"x":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}' 5
# tokenizer seeds: prompts with placeholders, entities, contractions, numbers, non-ASCII.
i=0
for s in 'a photo of <x>, in the style of <cat-toy>' "it's they're I'd don't" \
         'numbers 3.14159 and 1,000,000' 'A&amp;amp;B &#x263a; &lt;x&gt;' 'café ΣΟΦΙΑ москва 東京 😀!!' \
         'a<x>y<cat-toy>b <|endoftext|> <|startoftext|>' $'\x01<new>\x00a <new> b' \
         $'tabs\tand\nnewlines \u2019quotes\u201d \uff21\uff22'; do
  printf '%s' "$s" > "$corpus/tokenizer/seed$i"; i=$((i + 1))
done

for t in safetensors tokenizer; do
  echo "== fuzz_$t for ${secs}s"
  ./build-fuzz/fuzz/fuzz_$t -max_total_time="$secs" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix=build-fuzz/crashes/$t- "$corpus/$t" 2>&1 |
    grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)|ERROR|SUMMARY|Done [0-9]+ runs|crash-|Test unit' || true
done
