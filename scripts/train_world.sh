#!/usr/bin/env bash
# The recipe of tinv's embedded world models (models/world-sd, models/world-blip), trained with
# tinv itself: exactly the commands that produced the shipped weights (docs/WORLD.md).
#
#   scripts/train_world.sh [WORK_DIR] [OUT_DIR]      # defaults: runs/world, models
#
# Every command checkpoints into WORK_DIR and resumes from it, so the script can be interrupted
# and re-run. Step k of a part draws its data and noise from (seed, part, k) only; `--stop-at`
# ends a run early while the learning-rate schedule still spans `--steps` (the shipped VAE was
# trained in two such sessions and stopped at 650 of 1000 scheduled steps to leave CPU time for
# the denoiser; the captioner's schedule was lengthened from 1800 to 2400 steps at step 1000
# when its shape accuracy lagged, and the denoiser's shortened from 1000 to 750 at step 50 to fit
# the session, then continued on a new 1600-step schedule when its samples showed that text
# conditioning had not emerged yet, stopped at 1200 when the session ran out; with epsilon
# prediction it never followed prompts, so a second stage continued its weights with
# v-prediction on a new schedule). Thread counts are the ones used: results are reproducible to float rounding
# across thread counts, bit for bit with the same ones. A GPU is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/world}
OUT=${2:-models}
TINV=${TINV:-build/tinv}
export OMP_WAIT_POLICY=PASSIVE
"$TINV" world train vae       --work "$WORK" --steps 500  --stop-at 350 --threads 1 --save-every 50
"$TINV" world train vae       --work "$WORK" --steps 1000 --stop-at 650 --threads 2 --save-every 50
"$TINV" world train captioner --work "$WORK" --steps 1800 --stop-at 1000 --threads 1 --save-every 100
"$TINV" world train captioner --work "$WORK" --steps 2400 --threads 1 --save-every 100
# Stage 1 of the denoiser (epsilon prediction), kept as diffusion-eps.ckpt.safetensors.
if [ ! -e "$WORK/diffusion-eps.ckpt.safetensors" ]; then
  EPS=(--prediction epsilon --dataset 8192 --threads 2 --save-every 50)
  "$TINV" world train diffusion --work "$WORK" --steps 1000 --stop-at 50 "${EPS[@]}"
  "$TINV" world train diffusion --work "$WORK" --steps 750 "${EPS[@]}"
  "$TINV" world train diffusion --work "$WORK" --steps 1600 --stop-at 1200 "${EPS[@]}"
  mv "$WORK/diffusion.ckpt.safetensors" "$WORK/diffusion-eps.ckpt.safetensors"
  mv "$WORK/diffusion.log.csv" "$WORK/diffusion-eps.log.csv"
fi
# Stage 2: v-prediction from stage 1's weights on a new schedule (text conditioning emerges).
"$TINV" world train diffusion --work "$WORK" --prediction v_prediction \
  --init "$WORK/diffusion-eps.ckpt.safetensors" --steps 2400 --dataset 8192 --threads 2 --save-every 50
"$TINV" world export --work "$WORK" --out "$OUT"
"$TINV" world eval --model "$OUT/world-sd" --captioner "$OUT/world-blip"
