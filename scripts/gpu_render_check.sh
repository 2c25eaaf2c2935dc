#!/usr/bin/env bash
# The renderer's GPU checks in one call (device tool or any CUDA machine): the streaming benchmark of the
# base preset at 320x320 (compiled, eager vs CUDA graphs, with a kernel profile), the gpu tests of the
# renderer and of the training step, then options:
#   --autotune  the same benchmark with torch.compile mode max-autotune-no-cudagraphs (minutes to compile)
#   --all       also eager, the tiny preset and a batch of 8 streams
# Logs go to $OUT (default: runs/gpu-check).
set -u
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
. scripts/checkout_names.sh
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
bench() { timeout "$1" $PY -m neural_render.bench --device cuda "${@:2}" 2>&1 | grep -v "USDT\|Warning" | tee -a "$OUT/bench.txt"; }
base=(--preset base --size 320 --steps 12 --window 3 --cuda-graph --baseline-framelets 4)
bench 120 "${base[@]}" --cache-at-step 6 --compile --framelets 100 --profile 20
timeout 100 $PY -m pytest -q -m gpu -p no:cacheprovider -k "not compiled" tests/neural_render/test_cuda.py 2>&1 | tail -4 | tee "$OUT/pytest_gpu.txt"
timeout 120 $PY -m pytest -q -m gpu -p no:cacheprovider tests/train/data/test_batches.py tests/train/recipe/test_bench.py 2>&1 | tail -4 | tee -a "$OUT/pytest_gpu.txt"
for option in "$@"; do
  case $option in
    --autotune) bench 300 "${base[@]}" --cache-at-step 6 --compile max-autotune-no-cudagraphs --framelets 100 --profile 20 ;;
    --all)
      bench 80 "${base[@]}" --compile --framelets 100
      bench 150 "${base[@]}" --framelets 200 --baseline-framelets 20
      bench 60 --preset tiny --cuda-graph --framelets 300 --baseline-framelets 20
      bench 60 --preset base --size 320 --batch 8 --cuda-graph --framelets 40 --baseline-framelets 4 ;;
  esac
done
