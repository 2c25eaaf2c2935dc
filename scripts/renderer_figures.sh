#!/usr/bin/env bash
# The figures of one or more trained renderers, each measured by the same commands in one sitting:
# held-out reconstruction (PSNR raw and colour-matched, warp error, seam and framelet-boundary ratios),
# the semantic check with its own camera (cars as seen; over RIDES seeded rides, default 1: seed 0), and
# frames/s through NeuralRenderObservation on one thread of this CPU. Each renderer is sampled with its own
# Euler steps (its checkpoint's `num_steps`), the clip with a clean context pass and the cache at half its steps.
#   bash scripts/renderer_figures.sh RUN_OR_CHECKPOINT [...]      (default data: ../shared/data/road)
# Writes FIGURES_DIR/<name>.{eval,semantic}.json and <name>.game.txt (default runs/figures) and prints a
# summary line per renderer. LOOK: the look to paint (default: each renderer's own).
set -euo pipefail
D=${DATA:-../shared/data/road}
OUT=${FIGURES_DIR:-runs/figures}
mkdir -p "$OUT"
for target in "$@"; do
  checkpoint=$target
  [ -d "$target" ] && checkpoint=$target/renderer.safetensors
  name=$(basename "${target%.safetensors}")
  [ -d "$target" ] && name=$(basename "$target")
  steps=$(python -c "import sys; from neural_render.checkpoint import checkpoint_num_steps as n; print(n(sys.argv[1]))" "$checkpoint")
  python -m spokester_train.evaluation.evaluate --checkpoint "$checkpoint" --video "$D/udacity_project_video_part3.mp4" \
    --frames 64 --cache-at-step "none,$((steps / 2))" ${LOOK:+--look "$LOOK"} --json > "$OUT/$name.eval.json"
  python -m spokester_train.evaluation.semantic --checkpoint "$checkpoint" --frames 48 --rides "${RIDES:-1}" ${LOOK:+--look "$LOOK"} --json > "$OUT/$name.semantic.json"
  python -m neural_render.bench --game --checkpoint "$checkpoint" --device cpu --threads 1 --framelets 60 \
    > "$OUT/$name.game.txt" 2>/dev/null
  python - "$OUT/$name" <<'PY'
import json, sys, re, pathlib
base = sys.argv[1]
e = json.load(open(base + ".eval.json")); s = json.load(open(base + ".semantic.json"))
fps = re.search(r"through NeuralRenderObservation: +([\d.]+) frames/s", pathlib.Path(base + ".game.txt").read_text())
print(pathlib.Path(base).name, "| steps", e["num_steps"], "| psnr", e["psnr"], "| colour-matched", e["psnr_colour_matched"],
      "| warp", e["warp_error"], "| seam", e["seam_ratio"], "| boundary", e["boundary_ratio"],
      "| cars seen", s["vehicles"]["neural"], "| cars over rides", s["car_spread"],
      "| class mean", s["neural"]["class_mean"], "| camera", s["camera"],
      "| frames/s through the wrapper", fps.group(1) if fps else None)
PY
done
