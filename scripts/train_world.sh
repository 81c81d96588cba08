#!/usr/bin/env bash
# The recipe of tinv's embedded world models (models/world-sd, models/world-blip) on world v2
# (docs/WORLD.md), trained with tinv itself: exactly the commands that produce the shipped weights.
#
#   scripts/train_world.sh [WORK_DIR] [OUT_DIR]      # defaults: runs/world-v2, models
#
# World v2.1 (docs/WORLD.md): the v2 captioner and denoiser fine-tuned, in WORK_DIR.1
# (runs/world-v2.1), on scenes whose ringed objects carry an unnamed dot half the time
# (--unnamed-dot 0.5); the VAE, the tokenizer and the BLIP vocabulary are v2's (symbolic links).
# The bundled models are exported from it.
#
# Every command checkpoints into WORK_DIR and resumes from it, so the script can be interrupted
# and re-run, across sessions too (the work folder's checkpoints are what carries over). Step k
# of a part draws its data and noise from (seed, part, k) only; `--stop-at` ends a run early while
# the learning-rate schedule still spans `--steps`. Thread counts are the ones used: results are
# reproducible to float rounding across thread counts, bit for bit with the same ones. A GPU is
# used when present (`--device cuda` is the default `auto` there), where the whole recipe takes
# minutes.
#
# STAGE selects a part (vae, captioner, diffusion, captioner-ft, diffusion-ft, export); without it
# every stage runs in order.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/world-v2}
OUT=${2:-models}
WORK21=$WORK.1
TINV=${TINV:-build/tinv}
STAGE=${STAGE:-all}
export OMP_WAIT_POLICY=PASSIVE
run() { [ "$STAGE" = all ] || [ "$STAGE" = "$1" ]; }
# The VAE and the captioner are independent: on 2 cores they ran side by side, one thread each.
if run vae; then
  "$TINV" world train vae --work "$WORK" --steps 3000 --threads 1 --save-every 50
fi
if run captioner; then
  "$TINV" world train captioner --work "$WORK" --steps 5000 --threads 1 --save-every 100
fi
# The denoiser and text encoder, from scratch with v-prediction, on 16384 encoded train scenes.
if run diffusion; then
  "$TINV" world train diffusion --work "$WORK" --prediction v_prediction --steps 6000 \
    --dataset 16384 --threads 2 --save-every 50
fi
# World v2.1: fine-tunes from the v2 weights (fresh AdamW moments, a new warm-up and cosine).
link_v2() {
  mkdir -p "$WORK21"
  for f in tokenizer blip-vocab.txt vae.ckpt.safetensors; do
    ln -sfn "../$(basename "$WORK")/$f" "$WORK21/$f"
  done
}
if run captioner-ft; then
  link_v2
  "$TINV" world train captioner --work "$WORK21" --init "$WORK/captioner.ckpt.safetensors" --unnamed-dot 0.5 \
    --steps 2500 --lr 3e-4 --threads 1 --save-every 50
fi
if run diffusion-ft; then
  link_v2
  "$TINV" world train diffusion --work "$WORK21" --init "$WORK/diffusion.ckpt.safetensors" --unnamed-dot 0.5 \
    --prediction v_prediction --steps 1500 --lr 2e-4 --dataset 16384 --threads 2 --save-every 50
fi
if run export; then
  "$TINV" world export --work "$WORK21" --out "$OUT"
  "$TINV" world eval --model "$OUT/world-sd" --captioner "$OUT/world-blip"
fi
