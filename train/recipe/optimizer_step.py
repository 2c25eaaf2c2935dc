"""One optimiser step of the recipe, shared by the training loop (`spokester_train.recipe.loop`) and its
benchmark (`spokester_train.recipe.bench`): what a step computes lives here once.

`step_loss`: the cars of a random `cars_enter` share of the clips hidden before a random framelet and the loss's
weight on cars `car_loss_weight` (`spokester_train.recipe.cars`), condition augmentation, the null condition for a
random `uncond_prob` of the clips, no look for a random `look_drop` of them (where the network has looks), the
flow-matching loss with diffusion forcing (neural_render's FlowMatching) under bf16 autocast on CUDA (and on the CPU
when the config asks for it: `uses_bf16`), plus `irepa_weight` x the iREPA cosine loss of the projected hidden
layer against the normalised teacher. Every random draw of a clip (its augmentation, null condition, framelet
times and noise) comes from its own generator, seeded from (run seed, step, the clip's row in the global batch:
`clip_generators`; on a GPU its augmentation's choices from a CPU twin of it, `choice_generators`), so a clip is
trained the same whichever process holds it: one process with batch 2b and two with b each compute the same
per-clip losses.
`apply_update`: the learning rate of the step, backward, global-norm clipping, AdamW, and the EMA.

Legend: b clips.
"""

from __future__ import annotations

import numpy as np
import torch

from neural_render import FlowMatching, Renderer
from spokester_train.recipe.augment import augment_clip
from spokester_train.recipe.cars import car_weights, hide_cars
from spokester_train.recipe.config import TrainConfig
from spokester_train.recipe.irepa import Projector, irepa_loss, normalise_teacher

__all__ = ["apply_update", "clip_generators", "learning_rate", "make_optimizer", "step_loss", "uses_bf16"]


def make_optimizer(model: Renderer, projector: Projector | None, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the network (and projector); weight decay on matrices only."""
    params = list(model.parameters()) + (list(projector.parameters()) if projector is not None else [])
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Rate of optimiser step `step` (0-based): linear warm-up, steady, linear cool-down at the end."""
    total = config.total_steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cooldown = round(config.cooldown_fraction * total)
    if cooldown and step >= total - cooldown:
        progress = (step - (total - cooldown) + 1) / cooldown
        return config.lr * (1.0 - (1.0 - config.final_lr_fraction) * progress)
    return config.lr


def clip_generators(seed: int, step: int, rows: range, device: torch.device) -> list[torch.Generator]:
    """One generator per clip of optimiser step `step` (0-based), for the rows `rows` of its global batch,
    seeded from (seed, step, row) by numpy's SeedSequence."""
    states = [np.random.SeedSequence([seed, step, row]).generate_state(2, np.uint64)[0] for row in rows]
    return [torch.Generator(device).manual_seed(int(state) >> 1) for state in states]


def choice_generators(generators: list[torch.Generator]) -> list[torch.Generator]:
    """The generators of each clip's augmentation choices: the clip's own on the CPU; on a GPU a CPU generator
    with the same seed, so that a choice (a Python number) never waits for the GPU."""
    return [g if g.device.type == "cpu" else torch.Generator().manual_seed(g.initial_seed()) for g in generators]


def step_loss(
    forward,
    model: Renderer,
    diffusion: FlowMatching,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    *,
    clip: float,
    generators: list[torch.Generator],
    projector: Projector | None,
    layer: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch ({"x", "cond", "teacher"?, "look"?}) and its parts as floats. `forward` is the model
    or its compiled (or DistributedDataParallel) form; `clip` is the statistics' clip of the normalised
    condition; `generators` holds each clip's generator (`clip_generators`)."""
    x, cond = batch["x"], batch["cond"]
    device = x.device
    if len(generators) != x.shape[0]:
        raise ValueError(f"{len(generators)} clip generators for a batch of {x.shape[0]} clips")
    weight = None
    if config.cars_enter:  # drawn first, only then, so that a run without it draws what it always drew
        x, cond, weight = _cars_enter(x, cond, config.cars_enter, model.config.patch_frames, generators)
    if config.car_loss_weight != 1:  # on the cars the clips show (not those hidden, whose weight stays 0)
        on_cars = car_weights(cond, config.car_loss_weight)
        weight = on_cars if weight is None else weight * on_cars
    conds = zip(cond, generators, choice_generators(generators), strict=True)
    cond = torch.stack([augment_clip(c, config.augment, clip, g, choices) for c, g, choices in conds])
    drop = torch.stack([torch.rand((), generator=g, device=device) < config.uncond_prob for g in generators])  # (b,)
    framelets = x.shape[1] // model.config.patch_frames
    t = torch.cat([diffusion.sample_time(1, framelets, generator=g, device=device) for g in generators])  # (b, n)
    noise = torch.stack([torch.randn(x.shape[1:], generator=g, device=device, dtype=x.dtype) for g in generators])
    look = batch.get("look")
    if look is not None:  # drawn after the rest, so that a run without looks draws what it always drew
        dropped = torch.stack([torch.rand((), generator=g, device=device) < config.look_drop for g in generators])
        look = torch.where(dropped, torch.full_like(look, -1), look.to(device))  # (b,)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(config, device)):
        result = diffusion.loss(
            forward,
            x,
            cond,
            t=t,
            noise=noise,
            drop_cond=drop,
            window=config.window,
            return_layers=(layer,) if projector is not None else (),
            look=look,
            weight=weight,
        )
        loss, parts = result.loss, {"diffusion": result.loss.item()}
        if projector is not None:
            grid = (batch["teacher"].shape[2], batch["teacher"].shape[3])
            projected = projector(result.hidden[layer].float(), model.config.grid, grid)
            align = irepa_loss(projected, normalise_teacher(batch["teacher"]))
            loss = loss + config.irepa_weight * align
            parts["irepa"] = align.item()
    return loss, parts


def _cars_enter(
    x: torch.Tensor, cond: torch.Tensor, share: float, frames: int, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch with the cars of a random `share` of its clips entering at a random framelet after the first
    (`hide_cars`; `frames` per framelet), and the loss's per-pixel weights (b, t, H, W)."""
    clips = []
    for clip_x, clip_cond, g in zip(x, cond, generators, strict=True):
        chosen = float(torch.rand((), generator=g, device=g.device)) < share
        framelets = clip_x.shape[0] // frames
        framelet = int(torch.randint(1, framelets, (), generator=g, device=g.device)) if framelets > 1 else 0
        clips.append(hide_cars(clip_x, clip_cond, framelet * frames if chosen else 0))
    x, cond, weight = (torch.stack(parts) for parts in zip(*clips, strict=True))
    return x, cond, weight


def uses_bf16(config: TrainConfig, device: torch.device) -> bool:
    """Whether the step runs under bf16 autocast on `device`: the config's `autocast`, None meaning on CUDA."""
    return device.type == "cuda" if config.autocast is None else config.autocast


def apply_update(
    loss: torch.Tensor,
    step: int,
    optimizer: torch.optim.Optimizer,
    model: Renderer,
    ema: Renderer,
    config: TrainConfig,
) -> tuple[float, float]:
    """Backward, clip, AdamW step at the scheduled rate, EMA update; returns (learning rate, grad norm)."""
    lr = learning_rate(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else float("inf"))
    optimizer.step()
    decay = min(config.ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for averaged, current in zip(ema.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - decay)
    return lr, float(norm)
