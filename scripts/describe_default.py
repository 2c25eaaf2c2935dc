"""Complete the shipped default renderer's provenance for its model card (2026-12-03, tiny-overlap-blend, 15,000 steps).

    python scripts/describe_default.py FOOTAGE_DIR EVAL_JSON [--num-steps N]   # then: python -m neural_render.card ...

Training records what a run knows (data hashes, steps, config, its last in-run evaluation). This adds what it
cannot: each video's source and licence (the footage README's table, `portable_provenance.add_sources`) after the
file in FOOTAGE_DIR is checked against the recorded sha256; the commands that actually made it; what the
footage shows (`portable_provenance.DATA_NOTES`) and the renderer's limitations; and, as its evaluation, the
README's 64-frame held-out evaluation (EVAL_JSON, the output of `spokester_train.evaluation.evaluate --json`,
without its machine paths), which must have sampled with the steps it is saved with: `--num-steps` (default: the
ones it has). The weights, config, statistics and game are saved again unchanged (`neural_render.save_renderer`, so
the JSON inside the weights and the copy beside them agree; a new checkpoint id).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from portable_provenance import DATA_NOTES, add_sources

from neural_render import load_renderer, save_renderer
from neural_render.checkpoint import DEFAULT_CHECKPOINT

VIDEOS = (
    "$D/udacity_solid_white_right.mp4 $D/udacity_project_video_part1.mp4 $D/udacity_project_video_part2.mp4 "
    "$D/rural_road_tree_lined.mp4 $D/expressway_pune.mp4@150 $D/gopro_sidewalk_walk.mp4"
)
RESUME = "python -m spokester_train --resume --out runs/tiny-overlap-blend --threads 1"
RESUME_X = "python -m spokester_train --resume --out runs/tiny-overlap-blend-x --no-progress"
COMMANDS = [
    "D=FOOTAGE  # the project's shared road footage (its README names each file)",
    "python -m spokester_train --preset cpu-tiny --renderer tiny-overlap-blend --camera first_person --scene open "
    f"--video {VIDEOS} --eval-video $D/udacity_project_video_part3.mp4 --labels runs/labels --threads 1 "
    "--minutes 35 --steps 12000 --out runs/ablate-tiny-overlap-blend  # the ablation's arm: 1,887 steps",
    "cp -r runs/ablate-tiny-overlap-blend runs/tiny-overlap-blend",
    f"{RESUME} --minutes 98  # to 5,192 steps",
    f"{RESUME} --minutes 130  # to 6,968",
    f"{RESUME} --minutes 240  # stopped by hand after its checkpoint at 8,600",
    f"{RESUME} --steps 11000 --minutes 240  # the cool-down, to 11,000 (shipped as the default that day)",
    "cp -r runs/tiny-overlap-blend runs/tiny-overlap-blend-x  # a longer schedule: back to 5e-4 until 12,000",
    f"{RESUME_X} --steps 15000  # stopped by hand at 11,830; the next resume went on from the checkpoint at 11,800",
    f"{RESUME_X} --steps 15000  # stopped at 12,536 by the run's --minutes 240 (wall time, resumes included)",
    f"{RESUME_X} --steps 15000 --minutes 400  # the cool-down, 12,000 to 15,000",
    "python scripts/describe_default.py $D eval.json --num-steps 6  # sampled with 6 Euler steps (README: Euler steps)",
]
LIMITATIONS = [
    "Made for the first-person camera, as all its footage is first-person: through the follow camera it paints "
    "the rider's box as road, never as a rider.",
    "Cars are only partly there: DeepLab reads 21 % of the pixels of the game's visible cars in its paintings as "
    "vehicles (44 % of those cars at least a quarter so), and it paints vehicle pixels where the game has no car "
    "on 13 % of the frame (48 first-person frames, seed 0; these figures swing from ride to ride: over seeds 0-2, "
    "0.21 and 0.11).",
    "On unseen footage its raw PSNR is near that of a flat colour (it paints its training clips' palette); after a "
    "per-channel colour match it is clearly above.",
    "Its framelet boundaries show a little: the mean frame difference across them is 1.16-1.18 times that within "
    "framelets on the held-out clip (real footage 1.03), 1.13 on a game ride.",
]


def main(footage: Path, evaluation: dict, num_steps: int | None = None) -> None:
    loaded = load_renderer(DEFAULT_CHECKPOINT)
    num_steps = loaded.steps(num_steps)
    if evaluation.get("num_steps") != num_steps:
        sampled = evaluation.get("num_steps")
        raise SystemExit(f"EVAL_JSON: sampled with {sampled} steps, but the renderer is saved with {num_steps}")
    provenance = dict(loaded.provenance)
    add_sources(provenance["data"], footage)
    evaluation = {k: v for k, v in evaluation.items() if k not in ("checkpoint", "video")}
    evaluation["command"] = (
        "python -m spokester_train.evaluation.evaluate --checkpoint neural_render/weights/default.safetensors "
        f"--video udacity_project_video_part3.mp4 --frames 64 --cache-at-step {','.join(evaluation['psnr'])} --json"
    )
    provenance["evaluation"] = evaluation
    provenance["commands"] = COMMANDS
    provenance["data_notes"] = DATA_NOTES
    provenance["limitations"] = LIMITATIONS
    save_renderer(DEFAULT_CHECKPOINT, loaded.model, loaded.stats, provenance, loaded.game, num_steps)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("footage", type=Path)
    parser.add_argument("evaluation", type=Path)
    parser.add_argument("--num-steps", type=int, default=None)
    args = parser.parse_args()
    main(args.footage, json.loads(args.evaluation.read_text()), args.num_steps)
