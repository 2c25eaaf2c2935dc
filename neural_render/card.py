"""Model cards of renderer checkpoints, made from the checkpoint's own JSON (the Hugging Face convention:
what it is, how it was made, training data, evaluation, limitations, licence).

    python -m neural_render.card CHECKPOINT [CHECKPOINT ...]     # writes NAME.card.md beside each

Every figure and fact in a card is read from the checkpoint's JSON (`provenance` as training records it:
`spokester_train.recipe.provenance`), never typed in: a card is regenerated, not edited. What the JSON does not
record (a video's licence, say) is said to be unrecorded. Training writes the card of every renderer it
exports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from safetensors import safe_open

from neural_render.checkpoint import (
    DEFAULT_GAME,
    EMBEDDED_JSON,
    checkpoint_info,
    checkpoint_num_steps,
    checkpoint_paths,
)
from neural_render.conditioning import CAR_MASK_CHANNELS
from neural_render.model import ANY_LOOK
from spokester_env.commandline import per_file_command
from spokester_env.output import atomic_write_text

__all__ = ["card_path", "renderer_card", "write_card", "main"]

FIGURES = {
    "psnr": "PSNR against the real frames (dB)",
    "psnr_colour_matched": "PSNR after a per-channel colour match (dB)",
    "warp_error": "temporal warp error (flicker; lower is steadier)",
    "seam_ratio": "seam ratio (gradient across patch edges / elsewhere; 1 = no tiles)",
    "boundary_ratio": "framelet-boundary ratio (frame change across / within framelets; 1 = no jumps)",
}
"""The evaluation figures a card shows, in this order, with what they mean."""
REAL = {"warp_error": "warp_error_real", "seam_ratio": "seam_ratio_real", "boundary_ratio": "boundary_ratio_real"}
"""The real footage's own value of a figure, shown beside it."""
LIMITATIONS = (
    "It paints what its training footage shows. Prompted with game signals unlike the footage's (another "
    "camera, other scenery), it paints the footage's look, not the game's objects.",
    "It is a renderer for Spokester's depth+flow condition at its own frame size and game setting; it does not "
    "generalise to other conditions or sizes.",
)
"""What every renderer trained by this project cannot do, whatever its data."""


def card_path(checkpoint: str | os.PathLike) -> Path:
    """`NAME.card.md` beside `NAME.safetensors`."""
    weights, _ = checkpoint_paths(checkpoint)
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".card.md")


def _number(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _carries_json(weights: Path) -> bool:
    with safe_open(str(weights), framework="pt") as file:
        return EMBEDDED_JSON in (file.metadata() or {})


def _parameters(weights: Path) -> int:
    with safe_open(str(weights), framework="pt") as file:
        return sum(math.prod(file.get_slice(name).get_shape()) for name in file.keys())


def _command(provenance: dict) -> list[str]:
    """The commands that made it: recorded ones verbatim, else the training command its config implies."""
    if provenance.get("commands"):
        return list(provenance["commands"])
    config = provenance.get("train_config") or {}
    line = f"python -m spokester_train --preset {provenance.get('preset', '?')}"
    renderer = config.get("renderer_preset", config.get("renderer"))
    if renderer:
        line += f" --renderer {renderer}"
    for flag, key in (("--camera", "camera"), ("--scene", "scene")):
        if config.get(key):
            line += f" {flag} {config[key]}"
    line += f" --steps {provenance.get('steps', '?')} --video {' '.join(config.get('videos') or ['?'])}"
    if provenance.get("init_from"):
        line += f" --init-from {provenance['init_from'].get('file', '?')}"
    if config.get("eval_video"):
        line += f" --eval-video {config['eval_video']}"
    return [line + " --out RUN"]


def _started_from(origin: dict | None) -> str:
    """The card's words for the renderer a run's weights started from (provenance `init_from`), if any."""
    if not origin:
        return ""
    return (
        f", starting from the weights of `{origin.get('file', '?')}` (checkpoint id `{origin.get('checkpoint_id')}`, "
        f"{origin.get('steps', '?')} steps of its own)"
    )


def _data_table(provenance: dict) -> list[str]:
    rows = [
        "| video | bytes | sha256 | frames used | from frame | fps | source | licence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for video in provenance.get("data") or []:
        unknown = "not recorded"
        rows.append(
            f"| {video.get('video', '?')} | {video.get('bytes', unknown)} | `{str(video.get('sha256', '?'))[:16]}…` "
            f"| {video.get('frames', '?')} | {video.get('start_frame', 0)} | {_number(video.get('fps', '?'))} "
            f"| {video.get('source', unknown)} | {video.get('licence', unknown)} |"
        )
    return rows


def _evaluation(provenance: dict, name: str) -> list[str]:
    evaluation = provenance.get("evaluation")
    video = provenance.get("eval_video")
    video_name = video.get("file") if isinstance(video, dict) else video
    if not evaluation:
        return ["Not evaluated: the JSON records no evaluation."]
    settings = list(evaluation.get("psnr", {}))
    lines = [
        f"On {evaluation.get('frames', '?')} frames of `{video_name}` (held out from training), the renderer "
        "reconstructing the clip from its own depth and flow, per `cache_at_step` setting (`none` = an extra "
        "clean pass):",
        "",
        "| figure | " + " | ".join(f"cache_at_step {s}" for s in settings) + " | real footage |",
        "|---|" + "---|" * (len(settings) + 1),
    ]
    for key, meaning in FIGURES.items():
        if key not in evaluation:
            continue
        real = evaluation.get(REAL.get(key, ""), "")
        values = " | ".join(_number(evaluation[key].get(s)) for s in settings)
        lines.append(f"| {meaning} | {values} | {_number(real) if real != '' else ''} |")
    command = evaluation.get("command") or (
        f"python -m spokester_train.evaluation.evaluate --checkpoint {name}.safetensors --video {video_name} "
        f"--frames {evaluation.get('frames', 32)} --json"
    )
    lines += ["", f"Reproduce: `{command}`."]
    for key, text in (evaluation.get("notes") or {}).items():
        lines.append(f"- {key}: {text}")
    return lines


def _looks_row(config: dict, sampling: dict) -> list[str]:
    """The card's row of the looks a renderer paints (none for a renderer without looks)."""
    looks = config.get("looks") or []
    if not looks:
        return []
    names = ", ".join(f"`{name}`" for name in looks)
    chosen = sampling.get("look", ANY_LOOK)
    return [
        f"| looks | {names}, or `{ANY_LOOK}`: it paints `{chosen}` unless given `look=` / `--look` (one per training "
        "video, learnt from which video each clip came from) |"
    ]


def renderer_card(checkpoint: str | os.PathLike) -> str:
    """The model card (Markdown) of a renderer checkpoint, from its JSON."""
    weights, _ = checkpoint_paths(checkpoint)
    info = checkpoint_info(weights)
    provenance = info.get("provenance") or {}
    config = info.get("config") or {}
    game = info.get("game") or DEFAULT_GAME
    name = weights.name.removesuffix(".safetensors")
    blocks = config.get("num_blocks", config.get("depth"))
    lines = [
        f"# Model card: `{name}` renderer",
        "",
        "A depth+flow-conditioned pixel-space video diffusion transformer (Spokester's neural renderer): it paints "
        "each framelet of the game from the game's inverse depth and optical flow, streaming with a KV cache.",
        "",
        "| | |",
        "|---|---|",
        f"| network | preset `{info.get('preset')}`: {config.get('image_size')}² frames, {config.get('patch_size')}-px "
        f"patches of {config.get('patch_frames')} frames, width {config.get('width')}, {blocks} blocks, "
        f"{config.get('heads')} heads, pixel head {config.get('pixel_head', 0) or 'none'}; "
        f"{_parameters(weights) / 1e6:.1f} M parameters |",
        "| paints from | the game's inverse depth and optical flow"
        + (" and its car mask (the `cars` observation)" if config.get("cond_channels") == CAR_MASK_CHANNELS else "")
        + " |",
        f"| made for | the game's `{game['camera']}` camera and `{game['scene']}` scene |",
        *_looks_row(config, info.get("sampling") or {}),
        f"| sampled with | {checkpoint_num_steps(weights)} Euler steps per framelet (its `num_steps`; the wrappers, "
        "players, recorders and evaluation commands use it unless given `num_steps` / `--steps`) |",
        f"| trained | {provenance.get('steps', '?')} steps of the `{provenance.get('preset', '?')}` preset in "
        f"{_number(provenance.get('train_wall_s', '?'))} s of wall time"
        + (f", resumed at steps {provenance['resumed_at_steps']}" if provenance.get("resumed_at_steps") else "")
        + _started_from(provenance.get("init_from"))
        + f"; made {provenance.get('created', '?')} |",
        f"| files | `{name}.safetensors` (weights{'; its JSON inside' if _carries_json(weights) else ''}), "
        f"`{name}.json` (config, condition statistics, provenance) |",
        f"| checkpoint id | `{info.get('checkpoint_id')}` |",
        "",
        "## Intended use",
        "",
        f"Painting Spokester's game as seen by its `{game['camera']}` camera in its `{game['scene']}` scene, on a "
        "CPU or a GPU, for play, recordings and RL observations (`NeuralRenderObservation`, `spokester play "
        "--view neural`). Not for anything that needs faithful pictures of real places or people.",
        "",
        "## How it was made",
        "",
        "```bash",
        *_command(provenance),
        "```",
        "",
        "## Training data",
        "",
        *_data_table(provenance),
    ]
    if provenance.get("data_notes"):
        lines += ["", provenance["data_notes"]]
    extractors = provenance.get("extractors") or {}
    lines += ["", "Pseudo-labels: " + ", ".join(f"{kind} `{_name(spec)}`" for kind, spec in sorted(extractors.items()))]
    for record in provenance.get("extractor_weights") or []:
        lines.append(
            f"- `{record['file']}` ({record['bytes']} bytes, sha256 `{record['sha256'][:16]}…`): "
            f"{record.get('terms', 'terms not recorded')}"
        )
    lines += ["", "## Evaluation", "", *_evaluation(provenance, name), "", "## Limitations", ""]
    lines += [f"- {text}" for text in (*LIMITATIONS, *(provenance.get("limitations") or []))]
    lines += [
        "",
        "## Licence",
        "",
        "The code that made it is MIT. The weights are derived from the training videos (licences above) and from "
        "the pseudo-labels of the networks listed under *Training data*, whose terms travel with them"
        + (
            ": " + "; ".join(sorted({r["terms"] for r in provenance.get("extractor_weights") or [] if "terms" in r}))
            if any("terms" in r for r in provenance.get("extractor_weights") or [])
            else " (not recorded in this checkpoint)"
        )
        + ".",
        "",
        f"*Generated from `{name}.json` by `python -m neural_render.card {name}.safetensors`; do not edit.*",
        "",
    ]
    return "\n".join(lines)


def _name(spec) -> str:
    return spec.get("name", "?") if isinstance(spec, dict) else str(spec)


def write_card(checkpoint: str | os.PathLike) -> Path:
    """Write `NAME.card.md` beside the checkpoint (atomically); returns its path."""
    path = card_path(checkpoint)
    atomic_write_text(path, renderer_card(checkpoint))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    per_file_command(argv, prog="python -m neural_render.card", doc=__doc__, files="checkpoints",
                     help="renderer checkpoints (NAME.safetensors or NAME)", work=write_card)  # fmt: skip


if __name__ == "__main__":
    main()
