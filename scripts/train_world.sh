#!/usr/bin/env bash
# The recipe of tinv's embedded world models (models/world-sd, models/world-blip), trained with
# tinv itself. Reproducible from the seed; every step checkpoints into the work folder, so the
# script can be interrupted and re-run: each part resumes where it stopped (docs/WORLD.md).
#
#   scripts/train_world.sh [WORK_DIR] [OUT_DIR]      # defaults: runs/world, models
#
# Measured on a 2-core VM (see docs/WORLD.md): vae ~17 min, captioner ~30 min, diffusion ~60 min
# (the VAE and the captioner ran side by side with one thread each). A GPU is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/world}
OUT=${2:-models}
TINV=${TINV:-build/tinv}
SEED=${SEED:-0}
"$TINV" world train vae       --work "$WORK" --seed "$SEED" --steps "${VAE_STEPS:-400}"
"$TINV" world train captioner --work "$WORK" --seed "$SEED" --steps "${CAPTIONER_STEPS:-1500}"
"$TINV" world train diffusion --work "$WORK" --seed "$SEED" --steps "${DIFFUSION_STEPS:-1200}" --dataset "${DATASET:-8192}"
"$TINV" world export --work "$WORK" --out "$OUT"
"$TINV" world eval --model "$OUT/world-sd" --captioner "$OUT/world-blip"
