#!/usr/bin/env bash
# The figures of one or more trained renderers, each measured by the same commands in one sitting:
# held-out reconstruction (PSNR raw and colour-matched, warp error, seam and framelet-boundary ratios),
# the semantic check with its own camera (cars as seen), and the CPU frame rate of its network.
#   bash scripts/renderer_figures.sh RUN_OR_CHECKPOINT [...]      (default data: ../shared/data/road)
# Writes FIGURES_DIR/<name>.{eval,semantic,bench}.{json,txt} (default runs/figures) and prints a summary.
set -euo pipefail
D=${DATA:-../shared/data/road}
OUT=${FIGURES_DIR:-runs/figures}
mkdir -p "$OUT"
for target in "$@"; do
  checkpoint=$target
  [ -d "$target" ] && checkpoint=$target/renderer.safetensors
  name=$(basename "${target%.safetensors}")
  [ -d "$target" ] && name=$(basename "$target")
  python -m spokester_train.evaluation.evaluate --checkpoint "$checkpoint" --video "$D/udacity_project_video_part3.mp4" \
    --frames 64 --cache-at-step none,6 --json > "$OUT/$name.eval.json"
  python -m spokester_train.evaluation.semantic --checkpoint "$checkpoint" --frames 48 --json > "$OUT/$name.semantic.json"
  preset=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['preset'] or '')" "${checkpoint%.safetensors}.json")
  if [ -n "$preset" ]; then
    python -m neural_render.bench --device cpu --threads 1 --preset "$preset" --framelets 40 --baseline-framelets 2 \
      --cache-at-step 6 > "$OUT/$name.bench.txt" 2>/dev/null
  fi
  python - "$OUT/$name" <<'PY'
import json, sys, re, pathlib
base = sys.argv[1]
e = json.load(open(base + ".eval.json")); s = json.load(open(base + ".semantic.json"))
bench = pathlib.Path(base + ".bench.txt")
fps = re.search(r"cached:.*?([\d.]+) frames/s", bench.read_text()) if bench.exists() else None
print(pathlib.Path(base).name, "| psnr", e["psnr"], "| colour-matched", e["psnr_colour_matched"], "| warp", e["warp_error"],
      "| seam", e["seam_ratio"], "| boundary", e["boundary_ratio"], "| cars seen", s["vehicles"]["neural"],
      "| class mean", s["neural"]["class_mean"], "| camera", s["camera"], "| frames/s", fps.group(1) if fps else None)
PY
done
