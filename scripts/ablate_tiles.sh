#!/usr/bin/env bash
# The equal-wall-clock ablation of the anti-tile networks (README, "No tiles"): the arms at once (ARMS picks
# them), one thread each, the same data, seed and minutes; first-person camera, open scene; the held-out clip
# (udacity_project_video_part3) is evaluated on. Then: bash scripts/renderer_figures.sh runs/ablate-*
#   DATA=../shared/data/road MINUTES=35 bash scripts/ablate_tiles.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data/road}
VIDEOS="$D/udacity_solid_white_right.mp4 $D/udacity_project_video_part1.mp4 $D/udacity_project_video_part2.mp4
        $D/rural_road_tree_lined.mp4 $D/expressway_pune.mp4@150 $D/gopro_sidewalk_walk.mp4"
# extract the label stores once, before the arms share them
python -m spokester_train.data.extract $VIDEOS "$D/udacity_project_video_part3.mp4" --labels runs/labels --size 128 > /dev/null
for arm in ${ARMS:-tiny tiny-head tiny-p8 tiny-overlap}; do
  # shellcheck disable=SC2086
  python -m spokester_train --preset cpu-tiny --renderer $arm --camera first_person --scene open --video $VIDEOS \
    --eval-video "$D/udacity_project_video_part3.mp4" --labels runs/labels --threads 1 --minutes "${MINUTES:-35}" \
    --steps 12000 --out "runs/ablate-$arm" --no-progress > "runs/ablate-$arm.log" 2>&1 &
done
wait
