"""One-off (2026-12-03, issue 16): make the shipped models' JSON portable and complete enough for their model cards.

    python scripts/portable_provenance.py FOOTAGE_DIR EVAL_JSON      # then: python -m neural_render.card ...

What it changes, in `neural_render/weights/default.json` (`provenance` only; the weights, the config, the
statistics and the checkpoint id stay, so the pair still loads):
- `train_config.videos` / `eval_video`: absolute paths -> file names (`expressway_pune.mp4@150`); the machine's
  folders (`out`, `cache_root`) dropped;
- each `data` entry gains `bytes`, and its `source` and `licence` (the footage's README table), after the file
  in FOOTAGE_DIR is checked against the recorded sha256;
- `eval_video` becomes a file record; `extractor_weights` records the two shipped networks with their terms;
- `evaluation`: the output of the README's evaluation command (EVAL_JSON, run on 2026-12-03), without its
  machine paths; `commands`: the three commands of NOTICE.md that made it; `data_notes` and `limitations`.
And in `agents/models/ppo_depthflow64.json`: the training `command` and the seeded `evaluation` the README
reports (it held no path of the machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from spokester_env.output import atomic_write_text
from spokester_train.data.extract import file_record, file_sha256
from spokester_train.weights import TERMS, WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[1]
SOURCES = {  # the footage README's table (../shared/data/README.md)
    "udacity_solid_white_right.mp4": ("udacity/CarND-LaneLines-P1 @ ce5681be", "MIT, (c) 2016-2019 Udacity"),
    "udacity_project_video_part1.mp4": ("hortovanyi/udacity-advanced-lane-finding-project @ f5a88e53 (Udacity's "
                                        "project_video.mp4)", "MIT, (c) 2016-2018 Udacity"),
    "udacity_project_video_part2.mp4": ("hortovanyi/udacity-advanced-lane-finding-project @ f5a88e53 (Udacity's "
                                        "project_video.mp4)", "MIT, (c) 2016-2018 Udacity"),
    "rural_road_tree_lined.mp4": ("gauravyadav016-png/Lane_Detection @ d2a786c2", "MIT, (c) 2024 Gaurav Yadav"),
    "expressway_pune.mp4": ("techievish/Road-lane-line-detection @ 00044eef", "MIT (the repository's README)"),
    "gopro_sidewalk_walk.mp4": ("gopro/gpmf-parser @ 9a715063, samples/max-heromode.mp4", "Apache-2.0 or MIT (GoPro)"),
}  # fmt: skip
DATA_NOTES = (
    "What the footage shows: first-person dashcam views of day-time freeways (California, an Indian expressway), "
    "a wet tree-lined rural road, and one walk on a sidewalk beside a building; some cars and trucks ahead. What "
    "it does not show: a cyclist seen from behind (no footage filmed like the game's follow camera), night, rain, "
    "dense city streets. 2,463 frames (about 1.7 minutes) in all."
)
LIMITATIONS = [
    "Made for the follow camera, while all its footage is first-person: it paints a generic road and sky, and "
    "neither the rider nor the cars (the semantic check finds cars on 2.4 % of the game's car pixels).",
    "Visible 16-px tiles (8x8 tokens per 128-px frame): the seam ratio of its reconstruction of held-out footage "
    "is 1.8-1.9, the real frames' 0.90.",
    "On unseen footage its raw PSNR is near that of a flat colour (it paints its training clips' palette); after a "
    "per-channel colour match it is clearly above.",
]
COMMANDS = [
    "python -m spokester_train --preset cpu-tiny --steps 4500 --threads 1 --out runs/tiny-sky "
    "--video udacity_solid_white_right.mp4 udacity_project_video_part1.mp4 udacity_project_video_part2.mp4 "
    "rural_road_tree_lined.mp4 expressway_pune.mp4@150 gopro_sidewalk_walk.mp4 "
    "--eval-video udacity_project_video_part3.mp4",
    "python -m spokester_train --resume --out runs/tiny-sky --steps 6000 --threads 2",
    "python -m spokester_train --resume --out runs/tiny-sky --steps 12000 --threads 2",
]
AGENT_COMMAND = "spokester train-agent --minutes 29 --vec-env subproc --out runs/agents-final/ppo.zip"
AGENT_EVALUATION = {  # README, "Agents": 20 seeded episodes each, seeds the selection never saw
    "command": "spokester eval-agent --agent A --episodes 20 --seed 1000",
    "rows": [
        {"agent": "random", "mean_distance": 70.0, "std_distance": 34.5, "mean_length": 266.8, "std_length": 109.1,
         "crashed": 20, "episodes": 20},
        {"agent": "this PPO, most likely action (default)", "mean_distance": 1730.3, "std_distance": 611.2,
         "mean_length": 2553.2, "std_length": 619.5, "crashed": 10, "episodes": 20},
        {"agent": "this PPO, sampled actions (--stochastic)", "mean_distance": 1222.1, "std_distance": 858.3,
         "mean_length": 1913.6, "std_length": 1039.8, "crashed": 13, "episodes": 20},
        {"agent": "heuristic (privileged)", "mean_distance": 2187.5, "std_distance": 0.0, "mean_length": 3000,
         "std_length": 0, "crashed": 0, "episodes": 20},
    ],
}  # fmt: skip


def _name(spec: str) -> str:
    return Path(spec.split("@")[0]).name + ("@" + spec.split("@")[1] if "@" in spec else "")


def add_sources(data: list[dict], footage: Path) -> None:
    """Give each training video's record its bytes, source and licence, after checking that the file of that
    name in `footage` is the recorded one (sha256)."""
    for entry in data:
        file = footage / entry["video"]
        if file_sha256(file) != entry["sha256"]:
            raise SystemExit(f"{file}: not the recorded video (sha256 differs)")
        entry["bytes"] = file.stat().st_size
        entry["source"], entry["licence"] = SOURCES[entry["video"]]


def renderer(footage: Path, evaluation: dict) -> None:
    path = REPO / "neural_render" / "weights" / "default.json"
    info = json.loads(path.read_text())
    provenance = info["provenance"]
    config = provenance["train_config"]
    config["videos"] = [_name(v) for v in config["videos"]]
    config["eval_video"] = _name(config["eval_video"])
    for machine in ("out", "cache_root", "label_root"):
        config.pop(machine, None)
    add_sources(provenance["data"], footage)
    held_out = provenance["eval_video"]
    held_out = held_out["file"] if isinstance(held_out, dict) else held_out  # (running it twice changes nothing)
    provenance["eval_video"] = file_record(footage / held_out, start_frame=0)
    provenance["extractor_weights"] = [
        file_record(WEIGHTS_DIR / name, extractor=kind, terms=TERMS[name])
        for kind, name in (("depth", "mobile_pydnet_pruned35.tflite"),
                           ("teacher", "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"))
    ]  # fmt: skip
    evaluation = {k: v for k, v in evaluation.items() if k not in ("checkpoint", "video")}
    evaluation["command"] = (
        "python -m spokester_train.evaluation.evaluate --checkpoint neural_render/weights/default.safetensors "
        "--video udacity_project_video_part3.mp4 --frames 64 --json"
    )
    provenance["evaluation"] = evaluation
    provenance["commands"] = COMMANDS
    provenance["data_notes"] = DATA_NOTES
    provenance["limitations"] = LIMITATIONS
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")


def agent() -> None:
    path = REPO / "agents" / "models" / "ppo_depthflow64.json"
    info = json.loads(path.read_text())
    info["command"] = AGENT_COMMAND
    info["evaluation"] = AGENT_EVALUATION
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    renderer(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
    agent()
