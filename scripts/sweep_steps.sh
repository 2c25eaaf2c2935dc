#!/usr/bin/env bash
# How a renderer's figures depend on its Euler steps per framelet: for each step count, the held-out clip's
# reconstruction (PSNR raw and colour-matched, warp error, seam and framelet-boundary ratios; a clean context pass
# and the cache at half the steps) and the semantic check on its own camera, over several seeds; prints one
# Markdown row per renderer and step count, means over the seeds.
#   bash scripts/sweep_steps.sh RUN_OR_CHECKPOINT [...]      (default data: ../shared/data/road)
# STEPS (default "4 6 8 12"), EVAL_SEEDS ("0 1"), SEMANTIC_SEEDS ("0 1 2"); every result is appended to
# FIGURES_DIR/steps.jsonl (default runs/figures). LOOK: the look to paint (default: each renderer's own).
set -euo pipefail
D=${DATA:-../shared/data/road}
OUT=${FIGURES_DIR:-runs/figures}
mkdir -p "$OUT"
rows=$OUT/steps.jsonl
: > "$rows.new"
for target in "$@"; do
  checkpoint=$target
  [ -d "$target" ] && checkpoint=$target/renderer.safetensors
  for steps in ${STEPS:-4 6 8 12}; do
    for seed in ${EVAL_SEEDS:-0 1}; do
      python -m spokester_train.evaluation.evaluate --checkpoint "$checkpoint" --video "$D/udacity_project_video_part3.mp4" \
        --frames 64 --steps "$steps" --cache-at-step "none,$((steps / 2))" --seed "$seed" ${LOOK:+--look "$LOOK"} --json \
        | python -c "import json, sys; print(json.dumps({'target': sys.argv[1], 'eval': json.load(sys.stdin)}))" "$target" \
        >> "$rows.new"
    done
    for seed in ${SEMANTIC_SEEDS:-0 1 2}; do
      python -m spokester_train.evaluation.semantic --checkpoint "$checkpoint" --frames 48 --steps "$steps" --seed "$seed" \
        ${LOOK:+--look "$LOOK"} \
        --json | python -c "import json, sys; print(json.dumps({'target': sys.argv[1], 'semantic': json.load(sys.stdin)}))" \
        "$target" >> "$rows.new"
    done
  done
done
cat "$rows.new" >> "$rows" && rm "$rows.new"
python - "$rows" "$@" <<'PY'
import collections, json, statistics, sys
wanted = set(sys.argv[2:])
figures = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    row = json.loads(line)
    if row["target"] not in wanted:
        continue
    result = row.get("eval") or row["semantic"]
    into = figures[row["target"], result["num_steps"], result.get("look", "any")]
    if "eval" in row:
        for key in ("psnr", "psnr_colour_matched", "warp_error", "seam_ratio", "boundary_ratio"):
            for at, value in enumerate(result[key].values()):
                into[key, at].append(value)
    else:
        if result["vehicles"]["neural"]["seen_agreement"] is not None:  # None: no car big enough to be seen
            into["cars"].append(result["vehicles"]["neural"]["seen_agreement"])
        into["hallucinated"].append(result["vehicles"]["neural"]["hallucinated"])
        into["class mean"].append(result["neural"]["class_mean"])
mean = lambda values: statistics.mean(values) if values else float("nan")
print("| renderer | steps | look | PSNR dB | colour-matched dB | warp error | seam ratio | boundary ratio "
      "| car agreement / hallucinated | class mean |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (target, steps, look), f in sorted(figures.items()):
    pair = lambda key: f"{mean(f[key, 0]):.2f} / {mean(f[key, 1]):.2f}"
    print(f"| {target} | {steps} | {look} | {pair('psnr')} | {pair('psnr_colour_matched')} | {pair('warp_error')} "
          f"| {pair('seam_ratio')} | {pair('boundary_ratio')} | {mean(f['cars']):.3f} / {mean(f['hallucinated']):.3f} "
          f"| {mean(f['class mean']):.3f} |")
PY
