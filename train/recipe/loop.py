"""The training loop: `train(config)` teaches the renderer from the label stores of real videos.

One optimiser step (`spokester_train.recipe.optimizer_step`):
    clips (x in [-1, 1], normalised condition, teacher features) from the label stores, in a resumable order;
    condition augmentation, and the null condition for a random `uncond_prob` of the clips;
    the flow-matching loss with diffusion forcing (an independent shifted time per framelet), x-prediction
    turned into a velocity loss (neural_render's FlowMatching), plus `irepa_weight` x the iREPA cosine
    loss of the projected hidden layer against the normalised teacher features;
    a non-finite loss stops the run naming the step; AdamW with global-norm clipping and a warm-up /
    steady / cool-down learning rate; an EMA of the weights.
Every `checkpoint_every` steps (and at the end of every curriculum stage) the whole state is saved atomically
to `checkpoint.pt` and the EMA network is exported with its condition statistics (game and videos) and
provenance as `renderer.safetensors` + `renderer.json`. Every `eval_every` steps the EMA is evaluated (`eval/`). A run
with `max_minutes` ends the same way at the first step past its time. A run killed after its last checkpoint
but before its final export or evaluation finishes them when resumed; `train` never returns without a
loadable renderer of its last step.
The set-up (run folder, networks, each stage's data) is `spokester_train.recipe.setup`. Under torchrun the
run is one of several processes (`spokester_train.recipe.distributed`); a stage whose batch is smaller than
the number of processes is refused as the run enters it (resume it with fewer processes).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from neural_render import FlowMatching, load_renderer, save_renderer
from neural_render.card import write_card
from spokester_train.data.batches import batch_share
from spokester_train.evaluation.during_training import evaluation_done, run_evaluation
from spokester_train.recipe.checkpoint import CHECKPOINT, capture_rng, restore_rng, save_state
from spokester_train.recipe.config import TrainConfig
from spokester_train.recipe.distributed import Ranks, Stopped, join
from spokester_train.recipe.optimizer_step import apply_update, clip_generators, learning_rate, step_loss
from spokester_train.recipe.provenance import renderer_provenance
from spokester_train.recipe.run_log import RunLog
from spokester_train.recipe.setup import Networks, StageData, look_rows, open_run

__all__ = ["RENDERER", "NonFiniteLoss", "TrainResult", "exported_step", "train", "learning_rate"]

RENDERER = "renderer.safetensors"
"""File name of a run's exported renderer (its JSON beside it: `renderer.json`)."""


class NonFiniteLoss(ValueError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class TrainResult:
    """What a call of `train` did: the run folder, the last step, and the metrics of each step it ran."""

    out: Path
    step: int
    history: list[dict] = field(default_factory=list)
    renderer: Path | None = None


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or, with `resume`, continue from `config.out`) the training described by `config`: in this
    process, or, under torchrun, as one of its processes (`spokester_train.recipe.distributed`)."""
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ranks = join(config.device)
    try:
        with ranks.stopping_with_peers():
            result = _train(config, resume, ranks)
            ranks.barrier()  # a finished run's processes leave together (`Ranks.leave`)
            return result
    finally:
        ranks.leave()
        torch.set_num_threads(threads)


def _progress_bar(config: TrainConfig, shown: bool) -> Progress:
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.2f} steps/s"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True), disable=not (config.progress and shown))


def _train(config: TrainConfig, resume: bool, ranks: Ranks) -> TrainResult:
    out, state = open_run(config, resume, ranks.main)
    device = ranks.device(config.device)
    nets = Networks.build(config, device, state)
    generator = torch.Generator(device).manual_seed(config.seed)
    step = saved_step = int(state["step"]) if state is not None else 0
    if state is not None:
        restore_rng(state["rng"], generator)
    log = RunLog(out, step) if ranks.main else None  # process 0 alone writes the run's files
    started = time.time() - (log.elapsed if log is not None else 0.0)  # a resumed run's wall time goes on
    resumed_at = [*state.get("resumed_at", []), step] if state is not None else []
    history, data = [], None

    with contextlib.ExitStack() as opened, _progress_bar(config, ranks.main) as bar:
        task = bar.add_task("train", total=config.total_steps, completed=step, loss=float("nan"), rate=0.0)
        tick, ticked = time.perf_counter(), step
        while step < config.total_steps:
            index, stage = config.stage_at(step)
            if data is None or data.index != index:  # enter a stage: frame size, label stores, statistics
                if stage.batch_size < ranks.world_size:  # (the previous stage ended with a checkpoint)
                    problem = (
                        f"stage {index}'s batch of {stage.batch_size} clips is smaller than the {ranks.world_size} "
                        f"processes; resume with --nproc_per_node {stage.batch_size} or fewer (from step {step})"
                    )
                    raise ValueError(problem) if ranks.main else Stopped(problem)
                nets.resize(stage.image_size, config)
                nets.model.checkpoint_activations = stage.checkpoint_activations
                forward = ranks.wrap(nets.model, device)
                forward = torch.compile(forward) if config.compile else forward
                projector = ranks.wrap(nets.projector, device)
                diffusion = FlowMatching.for_config(nets.model.config)
                if data is not None:
                    data.close()
                data = StageData.enter(config, index, stage, state, opened, ranks)
                looks = look_rows(nets.model, data.stems, device)  # each store's look row, None without looks

            rows = batch_share(stage.batch_size, ranks.rank, ranks.world_size)
            batch = data.batches.next(stage.batch_size, device)
            if looks is not None:
                batch["look"] = looks[batch["video"]]  # (b,)
            loss, parts = step_loss(
                forward, nets.model, diffusion, batch, config, clip=data.stats.clip, projector=projector,
                generators=clip_generators(config.seed, step, rows, device), layer=nets.irepa_layer,
            )  # fmt: skip
            share = len(rows) / stage.batch_size  # DDP averages over processes: weigh each by its clips
            names = ["loss", *parts]
            value, *values = ranks.sum([v * share for v in (loss.item(), *parts.values())], device)
            parts = dict(zip(names[1:], values, strict=True))
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"non-finite loss {value} at step {step + 1} ({parts}); last checkpoint: step {saved_step}"
                )
            lr, norm = apply_update(
                loss * (share * ranks.world_size), step, nets.optimizer, nets.model, nets.ema, config
            )
            step += 1

            record = {"step": step, "loss": value, **parts, "lr": lr, "grad_norm": float(norm), "stage": index}
            history.append(record)
            now = time.perf_counter()
            rate = (step - ticked) / max(now - tick, 1e-9)
            bar.update(task, completed=step, loss=value, rate=rate)
            out_of_time = config.max_minutes is not None and time.time() - started > 60 * config.max_minutes
            out_of_time = ranks.decide(out_of_time, device)  # process 0's clock, so all stop at the same step
            last = step == config.total_steps or out_of_time
            if not ranks.main:
                if out_of_time:
                    break
                continue
            if step % config.log_every == 0 or last:
                log.write({**record, "steps_per_s": round(rate, 3), "elapsed_s": round(time.time() - started, 1)})
                tick, ticked = now, step
            stage_ends = step < config.total_steps and config.stage_at(step)[0] != index
            checkpoint = step % config.checkpoint_every == 0 or last or stage_ends
            if checkpoint:  # the training state first: whatever happens next, training is not lost
                save_state(out / CHECKPOINT, {
                    "step": step, "config": config.to_dict(), **nets.state(), "stats": data.stats.to_dict(),
                    "data": {**data.batches.state(), "stage": index}, "rng": capture_rng(generator),
                    "resumed_at": resumed_at, "world_size": ranks.world_size,
                })  # fmt: skip
                saved_step = step
            if config.evaluate and ((config.eval_every and step % config.eval_every == 0) or last):
                figures = run_evaluation(nets.ema, data.stats, data.eval_store, config, step, out / "eval")
                log.write({"step": step, "eval": figures})
            if checkpoint:  # after the evaluation, whose figures it carries (and its model card shows)
                _export(out, nets, data, config, step, time.time() - started, resumed_at)
            if out_of_time:
                break
        if not ranks.main:
            return TrainResult(out=out, step=step, history=history, renderer=None)

        # What the last step did not finish (a kill or a full disk during the final export or evaluation) is
        # done now, when the run is resumed: the run's renderer is always the last step's.
        exported = exported_step(out) == step
        evaluated = not config.evaluate or evaluation_done(out / "eval", step)
        if step > 0 and not (exported and evaluated):
            if data is None:  # resumed with nothing left to train
                index, stage = config.stage_at(step - 1)
                nets.resize(stage.image_size, config)
                data = StageData.enter(config, index, stage, state, opened, ranks)
            if not evaluated:
                figures = run_evaluation(nets.ema, data.stats, data.eval_store, config, step, out / "eval")
                log.write({"step": step, "eval": figures})
            if not exported:
                _export(out, nets, data, config, step, time.time() - started, resumed_at)
            if exported_step(out) != step:
                raise ValueError(f"{out / RENDERER}: no loadable renderer of step {step} after exporting it")
    return TrainResult(out=out, step=step, history=history, renderer=out / RENDERER if step > 0 else None)


def _export(out: Path, nets: Networks, data: StageData, config: TrainConfig, step: int, wall_s: float, resumed_at):
    """Export the EMA network with its statistics, provenance, game and sampling steps (its in-run
    evaluation's) as the run's renderer, and its model card beside it (`neural_render.card`)."""
    provenance = renderer_provenance(config, data.stores, data.eval_store, step, wall_s, resumed_at, nets.origin)
    game = {"camera": config.camera, "scene": config.scene}
    write_card(save_renderer(out / RENDERER, nets.ema, data.stats, provenance, game, config.sample_steps))


def exported_step(out: str | Path) -> int | None:
    """The step of the run's exported renderer, or None when there is none that loads."""
    try:
        provenance = load_renderer(Path(out) / RENDERER).provenance
    except (ValueError, OSError):
        return None
    return provenance.get("steps")
