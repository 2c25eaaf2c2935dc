#!/usr/bin/env bash
# Section 6 of the renderer issue in one call of a GPU host: two fine-tunes of the shipped default from the
# training pack, side by side on one GPU for MINUTES each (scripts/train_from_pack.py; their steps planned at 0.7
# of the timed rate: on 2026-12-04 two runs at 0.85 were stopped by the clock at 83 % of their steps):
#   mirror the default's network and recipe at the GPU preset's batch, half its clips mirrored (--mirror: on the
#          CPU the best held-out figures yet, +0.38 dB colour-matched after 6,000 steps);
#   cars   the same told where the cars are, half its clips mirrored and half its clips' cars entering late
#          (--car-masks --mirror --cars-enter 0.5): on the CPU (3,000-6,000 steps) the mirrored runs lost the
#          footage's habitual car and painted none from the mask, entering cars or not (they made the network read
#          the mask more, not paint cars); does a GPU's many more steps teach it to? (README: "The cars it paints
#          are its footage's, not the game's" and "Cars that enter").
# (The 2026-12-04 call ran `plain`, unmirrored, in place of `mirror`, and `looks`, --looks --sky-at-clip, in place
# of `cars`.)
# Each run's weight parts come back as they are; its JSON, log and record go into one tar, so that the call
# brings back at most 7 files. Here: `tar xf OUT/NAME.tar -C DIR` and `python scripts/train_from_pack.py --join
# DIR/NAME`, then evaluate as any renderer (scripts/renderer_figures.sh).
# On the host, first: `pip install --target /tmp/site .whl/*.whl` for what it lacks (gymnasium).
set -u
OUT=${OUT:-runs/gpu-pack}
PACK=${PACK:-runs/pack/road-128.zip}
MINUTES=${MINUTES:-8}
LR=${LR:-3e-4}
ARGS=${ARGS:-}  # more options of both runs (a try on the CPU: ARGS="--device cpu --steps 2 --batch 2")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
$PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)" >>"$OUT/gpu.txt"
start=neural_render/weights/default.safetensors
run() {
  local name=$1
  shift
  $PY scripts/train_from_pack.py "$PACK" --init-from "$start" --minutes "$MINUTES" --lr "$LR" --margin 0.7 --out "$OUT/$name" $ARGS "$@" \
    >"$OUT/$name.result.json" 2>"$OUT/$name.stderr.txt"
  echo "$name: rc $? $(cat "$OUT/$name.result.json")" >>"$OUT/gpu.txt"
}
run mirror --mirror &
run cars --car-masks --mirror --cars-enter 0.5 &
wait
for name in mirror cars; do
  (cd "$OUT" && tar cf "$name.tar" "$name".*.* "$name"/*.json "$name"/*.jsonl && rm -f "$name".*.* "$name"/*.json "$name"/*.jsonl)
done
cat "$OUT/gpu.txt"
