"""The training loop: `train(config)` teaches the renderer from cached pseudo-labels of real video.

One optimiser step:
    clips (x in [-1, 1], normalised condition, teacher features) from the caches, in a resumable order;
    condition augmentation, and the null condition for a random `uncond_prob` of the clips;
    the flow-matching loss with diffusion forcing (an independent shifted time per framelet), x-prediction
    turned into a velocity loss (neural_render's FlowMatching), plus `irepa_weight` x the iREPA cosine
    loss of the projected hidden layer against the normalised teacher features;
    a non-finite loss stops the run naming the step; AdamW with global-norm clipping and a warm-up /
    steady / cool-down learning rate; an EMA of the weights.
Every `checkpoint_every` steps (and at the end) the whole state is saved atomically to `checkpoint.pt`
and the EMA network is exported with its conditioning statistics (game and video) and provenance as
`renderer.safetensors` + `renderer.json`. Every `eval_every` steps the EMA is evaluated (`eval/`).

Legend: b clips, t frames, s side.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from neural_render import ConditionStats, FlowMatching, Renderer, build_renderer, save_renderer
from train.batches import ClipBatches, cache_provenance, parse_video, prepare_caches, video_stats
from train.config import RESUMABLE_CHANGES, TrainConfig, config_from_dict, irepa_layer
from train.irepa import TEACHER_CHANNELS, Projector
from train.periodic import run_evaluation
from train.rollout import game_source_stats
from train.state import CHECKPOINT, capture_rng, load_state, restore_rng, save_state
from train.step import apply_update, learning_rate, make_optimizer, step_loss

__all__ = ["NonFiniteLoss", "TrainResult", "train", "learning_rate"]

class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class TrainResult:
    """What a call of `train` did: the run directory, the last step, and the metrics of each step it ran."""

    out: Path
    step: int
    history: list[dict] = field(default_factory=list)
    renderer: Path | None = None


def _resized(model: Renderer, size: int) -> Renderer:
    """The same weights in a network for `size` x `size` frames (only the rotary tables change)."""
    if model.config.image_size == size:
        return model
    resized = Renderer(dataclasses.replace(model.config, image_size=size), attention=model.attention)
    resized = resized.to(model.x_embedder.weight.device)
    resized.load_state_dict(model.state_dict())
    return resized


def _check_resumable(saved: TrainConfig, config: TrainConfig, path: Path) -> None:
    old, new = saved.to_dict(), config.to_dict()
    changed = sorted(k for k in old if k not in RESUMABLE_CHANGES and old[k] != new[k])
    if changed:
        raise ValueError(f"{path}: cannot resume with a different {', '.join(changed)} (only {RESUMABLE_CHANGES})")


class _Log:
    """JSONL log (and TensorBoard when installed); on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, out: Path, after_step: int):
        self.path = out / "log.jsonl"
        self.elapsed = 0.0  # wall seconds the run had spent up to `after_step` (from its last kept line)
        if self.path.is_file():
            kept = [
                ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= after_step
            ]
            times = [json.loads(ln)["elapsed_s"] for ln in kept if "elapsed_s" in json.loads(ln)]
            self.elapsed = float(times[-1]) if times else 0.0
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text("".join(f"{ln}\n" for ln in kept))
            temporary.replace(self.path)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out / "tensorboard"), purge_step=after_step + 1)
        except ImportError:
            self.board = None

    def write(self, record: dict) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.board.add_scalar(key, value, record["step"])


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or, with `resume`, continue from `config.out`) the training described by `config`."""
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, resume)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, resume: bool) -> TrainResult:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    state = None
    if resume:
        state = load_state(out / CHECKPOINT, map_location=device)
        _check_resumable(config_from_dict(state["config"]), config, out / CHECKPOINT)
    elif (out / CHECKPOINT).is_file():
        raise ValueError(f"{out}: already holds a training checkpoint; resume it or choose another out directory")
    if not config.videos:
        raise ValueError("videos: give at least one training video")

    torch.manual_seed(config.seed)  # the initial weights
    first_size = config.stages[0].image_size
    model = build_renderer(config.renderer, device=device, image_size=first_size, **config.renderer_overrides)
    model.attention = config.attention
    layer = irepa_layer(config, model.config.depth)
    projector = (
        Projector(model.config.width, model.config.patch_frames, TEACHER_CHANNELS).to(device) if config.irepa else None
    )
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = make_optimizer(model, projector, config)
    generator = torch.Generator(device).manual_seed(config.seed)
    step, history, started, stage_index, renderer_path = 0, [], time.time(), None, None
    saved_step = 0
    if state is not None:
        step = saved_step = int(state["step"])
        size = config.stage_at(max(step - 1, 0))[1].image_size
        model, ema = _resized(model, size), _resized(ema, size)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if projector is not None:
            projector.load_state_dict(state["projector"])
        optimizer = make_optimizer(model, projector, config)
        optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"], generator)
    log = _Log(out, step)
    started -= log.elapsed  # a resumed run's wall time goes on from where it stopped
    resumed_at = [*state.get("resumed_at", []), step] if state is not None else []

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.2f} steps/s"),
        TimeRemainingColumn(),
    )
    batches: ClipBatches | None = None
    with contextlib.ExitStack() as opened, Progress(*columns, disable=not config.progress) as bar:
        task = bar.add_task("train", total=config.total_steps, completed=step, loss=float("nan"), rate=0.0)
        tick, ticked = time.perf_counter(), step
        while step < config.total_steps:
            index, stage = config.stage_at(step)
            if index != stage_index:  # enter a stage: frame size, caches, statistics, clip order
                if model.config.image_size != stage.image_size:
                    model, ema = _resized(model, stage.image_size), _resized(ema, stage.image_size)
                    moved = optimizer.state_dict()
                    optimizer = make_optimizer(model, projector, config)
                    optimizer.load_state_dict(moved)
                model.checkpoint_activations = stage.checkpoint_activations
                forward = torch.compile(model) if config.compile else model
                diffusion = FlowMatching.for_config(model.config)
                kw = dict(cache_root=config.cache_root, extractors=config.extractors, skips=config.skips)
                caches = prepare_caches(config.videos, stage.image_size, progress=config.progress, **kw)
                eval_cache = prepare_caches([config.eval_video or config.videos[0]], stage.image_size, **kw)[0]
                game = game_source_stats(stage.image_size, config.game_stats_frames, seed=config.seed)
                sources = {"game": game, **video_stats(caches, config.videos, config.skips, config.sky_to_zero)}
                stats = ConditionStats(sources=sources)
                if batches is not None:
                    batches.close()  # the last stage's loader workers
                batches = opened.enter_context(ClipBatches(
                    caches, config.videos, stats, stage.clip_frames, config.skips, config.seed, config.irepa,
                    sky_to_zero=config.sky_to_zero, balance=config.balance_videos, workers=config.loader_workers,
                ))  # fmt: skip
                if state is not None and state["data"]["stage"] == index:
                    batches.load_state(state["data"])
                stage_index = index

            batch = batches.next(stage.batch_size, device)
            loss, parts = step_loss(
                forward, model, diffusion, batch, config,
                clip=stats.clip, generator=generator, projector=projector, layer=layer,
            )  # fmt: skip
            value = loss.item()
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"non-finite loss {value} at step {step + 1} ({parts}); last checkpoint: step {saved_step}"
                )
            lr, norm = apply_update(loss, step, optimizer, model, ema, config)
            step += 1

            record = {"step": step, "loss": value, **parts, "lr": lr, "grad_norm": float(norm), "stage": index}
            history.append(record)
            now = time.perf_counter()
            rate = (step - ticked) / max(now - tick, 1e-9)
            bar.update(task, completed=step, loss=value, rate=rate)
            if step % config.log_every == 0 or step == config.total_steps:
                log.write({**record, "steps_per_s": round(rate, 3), "elapsed_s": round(time.time() - started, 1)})
                tick, ticked = now, step
            if step % config.checkpoint_every == 0 or step == config.total_steps:
                state_dict = {
                    "step": step,
                    "config": config.to_dict(),
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "projector": projector.state_dict() if projector is not None else {},
                    "optimizer": optimizer.state_dict(),
                    "stats": stats.to_dict(),
                    "data": {**batches.state(), "stage": index},
                    "rng": capture_rng(generator),
                    "resumed_at": resumed_at,
                }
                save_state(out / CHECKPOINT, state_dict)
                saved_step = step
                provenance = {
                    "preset": config.preset,
                    "steps": step,
                    "irepa": config.irepa,
                    "data": cache_provenance(caches, config.videos),
                    "eval_video": parse_video(config.eval_video or config.videos[0]).path.name,
                    "extractors": config.extractors,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "train_wall_s": round(time.time() - started, 1),
                    "resumed_at_steps": resumed_at,
                    "train_config": config.to_dict(),
                }
                renderer_path = save_renderer(out / "renderer", ema, stats, provenance)
            if (config.eval_every and step % config.eval_every == 0) or step == config.total_steps:
                figures = run_evaluation(ema, stats, eval_cache, config, step, out / "eval")
                log.write({"step": step, "eval": figures})
    return TrainResult(out=out, step=step, history=history, renderer=renderer_path)
