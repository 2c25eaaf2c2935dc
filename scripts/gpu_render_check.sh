#!/usr/bin/env bash
# The renderer's GPU checks in one call (device tool or any CUDA machine): the gpu tests, then the
# streaming benchmark of the base preset at 320x320 (eager vs CUDA graphs), the tiny preset, a batch of
# 8 streams, and torch.compile. Logs go to $OUT (default: runs/gpu-check).
set -u
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 90 $PY -m pytest -q -m gpu -p no:cacheprovider -k "not compiled" tests/neural_render/test_cuda.py 2>&1 | tail -15 | tee "$OUT/pytest_gpu.txt"
bench() { timeout "$1" $PY -m neural_render.bench --device cuda "${@:2}" 2>&1 | tee -a "$OUT/bench.txt"; }
bench 100 --preset base --size 320 --compile --cuda-graph --framelets 100 --baseline-framelets 4
bench 80 --preset base --size 320 --cache-at-step 6 --compile --cuda-graph --framelets 100 --baseline-framelets 4
if [ "${1:-}" = "--all" ]; then
  bench 150 --preset base --size 320 --steps 12 --window 3 --cuda-graph --framelets 200 --baseline-framelets 20
  bench 60 --preset tiny --cuda-graph --framelets 300 --baseline-framelets 20
  bench 60 --preset base --size 320 --batch 8 --cuda-graph --framelets 40 --baseline-framelets 4
fi
