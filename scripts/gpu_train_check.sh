#!/usr/bin/env bash
# The training step's GPU checks in one call: gpu-base stage 0 (224^2, 16 frames, batch 64) and stage 1
# (320^2, 256 frames, batch 4; with and without recomputing activations), dense-mask SDPA against the
# FlexAttention block mask, eager and compiled.
# Logs go to $OUT (default: runs/gpu-check).
set -u
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. scripts/checkout_names.sh
PY=${PYTHON:-python3}
tb() { timeout "$1" $PY -m spokester_train.recipe.bench --preset gpu-base "${@:2}" 2>&1 | grep -v Warning | tee -a "$OUT/train_bench.txt"; }
tb 90 --stage 0 --no-compile --attention sdpa flex --steps 5 --warmup 2
tb 100 --stage 1 --no-compile --attention flex sdpa --steps 3 --warmup 1 --no-checkpoint-activations
tb 110 --stage 1 --no-compile --attention flex sdpa --steps 2 --warmup 1
tb 90 --stage 0 --compile --attention flex --steps 5 --warmup 2
