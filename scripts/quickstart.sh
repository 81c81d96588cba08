#!/usr/bin/env bash
# tinv's main job on the small fixture model (until the embedded world ships): describe the
# model, learn a concept from ONE image with caption initialisation, then put the learned
# concept into new prompts. Outputs go to out/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=${TINV_FIXTURES:-../shared/fixtures}
MODEL=$FIX/tiny-sd15/model
IMAGE=$FIX/tiny-blip/cases/image.png
OUT=out/quickstart
mkdir -p "$OUT"
build/tinv info "$MODEL"
build/tinv invert --model "$MODEL" --image "$IMAGE" --caption "a red cube on a table" \
  --name cube-ti --steps 100 --format all --save-every 25 --preview-every 50 \
  --preview-prompt "a photo of {}" --out "$OUT/cube-ti.safetensors"
build/tinv generate --model "$MODEL" --embedding "$OUT/cube-ti.safetensors" \
  --prompt "a photo of <cube-ti> on a beach" --seed 7 --steps 20 --batch 4 --out "$OUT/images"
echo "outputs in $OUT:"
ls -1 "$OUT" "$OUT/images"
