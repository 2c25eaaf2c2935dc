"""Training configuration: one frozen dataclass with a docstring per field, and named presets.

A run is fully described by a `TrainConfig`; it travels inside every training checkpoint (as a dict) and in
the exported renderer's provenance. The curriculum (resolution, clip length, batch size) is a tuple of
`Stage`s run one after the other; the network's weights carry over between stages because nothing in
them depends on the frame size (rotary positions are rebuilt for each size).

Presets:
    cpu-tiny: the `tiny` renderer (128 x 128, 4 blocks, about 5M parameters) on a 2-core CPU, within an
        hour: 8-frame clips, batch 4.
    gpu-base: the seed's recipe for the `base` renderer (ViT-B) on one GPU: 224^2, 16 frames, batch 64;
        then 320^2, 256 frames, batch 4. bf16 autocast; torch.compile; FlexAttention block masks; the
        second stage recomputes activations (without, it does not fit in an H200's 141 GB).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from neural_render import RENDERER_PRESETS
from neural_render.model import ATTENTION_BACKENDS
from spokester_env import CAMERA_PRESETS, DEFAULT_CAMERA, DEFAULT_SCENE, SCENE_PRESETS
from spokester_train.data.extractors import DEFAULT_EXTRACTORS
from spokester_train.data.sources import GAME_STATS_FRAMES
from spokester_train.data.store import default_label_root

__all__ = [
    "Stage",
    "Augment",
    "TrainConfig",
    "TRAIN_PRESETS",
    "make_config",
    "config_from_dict",
    "extractor_name",
    "irepa_layer",
]


@dataclass(frozen=True)
class Stage:
    """One stage of the resolution and clip-length curriculum."""

    steps: int
    """Optimiser steps in this stage."""
    image_size: int
    """Side of the square training frames, pixels (a multiple of the renderer's patch size)."""
    clip_frames: int
    """Frames per training clip (a multiple of the renderer's frames per framelet)."""
    batch_size: int
    """Clips per optimiser step."""
    checkpoint_activations: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them (activation
    checkpointing): about a third more compute for a fraction of the memory, for long clips."""

    def __post_init__(self):
        if min(self.steps, self.image_size, self.clip_frames, self.batch_size) < 1:
            raise ValueError(f"stage fields must be positive integers, got {self}")


@dataclass(frozen=True)
class Augment:
    """Random degradation of the normalised condition, so the renderer tolerates the game's different depth
    and flow (sharper edges, other noise): each kind is applied to a clip with probability `prob`."""

    prob: float = 0.3
    """Probability of each augmentation kind, per clip."""
    max_downscale: float = 4.0
    """Down- then up-scale by a factor drawn uniformly from [1, max_downscale]."""
    max_blur_sigma: float = 1.5
    """Gaussian blur with a sigma (pixels) drawn uniformly from [0, max_blur_sigma]."""
    posterize_levels: tuple[int, int] = (4, 32)
    """Quantise to a number of levels drawn from this inclusive range."""
    max_noise: float = 0.3
    """Add Gaussian noise with a std (normalised units) drawn uniformly from [0, max_noise]."""
    min_clip: float = 1.5
    """Clip to +-b with b drawn uniformly from [min_clip, the statistics' clip]."""

    def __post_init__(self):
        low, high = self.posterize_levels
        if not 0 <= self.prob <= 1 or self.max_downscale < 1 or self.max_blur_sigma < 0 or self.max_noise < 0:
            raise ValueError(f"augmentation needs 0 <= prob <= 1, max_downscale >= 1, sigmas >= 0: {self}")
        if not 2 <= low <= high or self.min_clip <= 0:
            raise ValueError(f"augmentation needs 2 <= posterize levels (low <= high) and min_clip > 0: {self}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run."""

    videos: tuple[str, ...] = ()
    """Training videos; `PATH@START` starts at source frame START (e.g. to skip an overlay), `PATH@START:END`
    also stops before frame END."""
    out: str = "runs/renderer"
    """Run directory: training checkpoint, exported renderer, logs, evaluation outputs."""
    preset: str = "custom"
    """Name of the preset this config came from (a label for provenance)."""
    renderer_preset: str = "tiny"
    """`neural_render` size preset of the network (`RENDERER_PRESETS`)."""
    renderer_overrides: Mapping[str, Any] = field(default_factory=dict)
    """Fields of the renderer config that replace the preset's (e.g. {"num_blocks": 2} in tests)."""
    init_from: str | None = None
    """A renderer checkpoint (`neural_render.save_renderer`, e.g. the shipped default) whose weights the network
    and its EMA start from: fine-tuning it on these videos. Its network must be the one `renderer_preset` and
    `renderer_overrides` name; the optimiser, the learning-rate schedule and the iREPA projector start fresh.
    None: weights seeded by `seed`."""
    stages: tuple[Stage, ...] = (Stage(steps=2000, image_size=128, clip_frames=8, batch_size=4),)
    """The curriculum, run in order; the exported renderer has the last stage's frame size."""
    window: int | None = 3
    """Framelets a token attends to during training (its own included), as the streaming sampler does."""
    skips: tuple[int, ...] = (1, 2, 3)
    """Random frame skips of training clips (source frames per clip frame)."""
    label_root: str = field(default_factory=lambda: str(default_label_root()))
    """Root of the label stores (shared between runs; extraction happens once per video and size)."""
    extractors: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_EXTRACTORS))
    """Pseudo-label extractors by kind: registered names (`spokester_train.data.extractors`) or {"name": ..., **options}
    (e.g. {"name": "depth-anything-v2-small", "weights": FOLDER})."""
    sky_to_zero: bool = True
    """Read the videos' inverse depth as 0 (the game's sky) where the teacher's segmentation says sky; the depth
    network's sky is otherwise a little nearer than the horizon, unlike the game's (needs the deeplab teacher,
    whose label store holds the sky mask)."""
    car_slabs: bool = False
    """Read each car the teacher's segmentation finds in a video as a flat slab at the inverse depth where it meets
    the road (`spokester_train.data.video_depth`), as the game draws its cars; the depth network blurs a car
    into the road around it (needs the deeplab teacher, whose label store holds the car mask)."""
    car_masks: bool = False
    """Tell the network where the cars are: its condition gets a fourth channel, a car mask
    (`neural_render.RendererConfig.cond_channels`), the videos' their teacher's car-shaped blobs
    (`spokester_train.data.video_depth.car_blobs`), the game's its own cars (needs the deeplab teacher)."""
    mirror: bool = False
    """Mirror half the training clips left to right (`spokester_train.data.clips.StoredClips`), so that the footage's
    cars, which keep to one side of its road, are seen on either side and only the condition says which."""
    cars_enter: float = 0.0
    """Share of the training clips whose cars enter at a random framelet after the first
    (`spokester_train.recipe.cars`): hidden before it, so that the car mask, not the context, says where a
    car is painted (needs `car_masks`)."""
    car_loss_weight: float = 1.0
    """The loss's weight on the pixels of the car mask, against 1 on the rest (`spokester_train.recipe.cars`;
    needs `car_masks`): a car covers about 1 % of a frame."""
    sky_at_clip: bool = False
    """Every condition source reads its depth floor (the sky) as -clip (`ConditionSource.sky_at_clip`) instead of
    its standardised log floor, which differs from source to source."""
    looks: bool = False
    """Teach the network one look per training video (`neural_render.RendererConfig.looks`, named by the videos'
    file stems): a learned vector, zero at the start, that tells it which footage a clip comes from, so that
    the look can be chosen when painting instead of being guessed from the game's condition."""
    look_drop: float = 0.2
    """Probability that a clip is trained without its look (`ANY_LOOK`), so that the network also paints with
    none."""
    balance_videos: bool = True
    """Draw the same number of clips from every training video per epoch (False: in proportion to length)."""
    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    weight_decay: float = 0.01
    """AdamW weight decay, applied to matrices only (not biases, norms, embeddings of the null condition)."""
    warmup_steps: int = 200
    """Linear warm-up from 0 to `lr`."""
    cooldown_fraction: float = 0.2
    """Last fraction of all steps over which the rate falls linearly to `final_lr_fraction * lr`."""
    final_lr_fraction: float = 0.05
    """Learning rate at the end of the cool-down, as a fraction of `lr`."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights (the exported renderer is the EMA)."""
    uncond_prob: float = 0.1
    """Probability that a clip is trained with the learned null condition instead of its depth and flow."""
    augment: Augment = field(default_factory=Augment)
    """Condition augmentation."""
    irepa: bool = True
    """Align a hidden layer with the teacher's features (iREPA)."""
    irepa_weight: float = 0.5
    """Weight of the iREPA cosine loss."""
    irepa_layer: int | None = None
    """Blocks after which the hidden state is projected; None = 6, or the middle block for shallower nets."""
    seed: int = 0
    """Seed of the weights, the clip order, times, noise and augmentations."""
    device: str = "cpu"
    """Torch device."""
    autocast: bool | None = None
    """Run the training step's passes under bf16 autocast (weights, optimiser and EMA stay float32). None = on
    CUDA only. True on a CPU with native bf16 matmuls (AVX512-BF16 or AMX: `neural_render.sampler.native_bf16`)
    makes a cpu-tiny step about 1.3x faster, but oneDNN's bf16 kernels do not repeat their sums bit for bit, so
    neither does the run (nor a resume of it); elsewhere oneDNN emulates bf16, slower than float32."""
    compile: bool = False
    """Wrap the network in torch.compile (CUDA only)."""
    attention: str = "sdpa"
    """How training passes apply the framelet window mask: "sdpa" (a dense mask, O(L^2) in the clip's
    tokens) or "flex" (a FlexAttention block mask that skips hidden blocks; needs CUDA for backward)."""
    threads: int | None = None
    """CPU threads of torch during the run (None = torch's default); 1 is much faster on a busy shared CPU."""
    loader_workers: int = 0
    """DataLoader worker processes that gather the next batches' clips while a step runs (0 = in the
    training process, between steps). On a GPU the synchronous gather can take longer than the step."""
    log_every: int = 10
    """Steps between JSONL log lines."""
    checkpoint_every: int = 250
    """Steps between training checkpoints (and renderer exports); the last step always writes one."""
    eval_every: int = 500
    """Steps between evaluations (figures, game rollout mp4, contact sheet); 0 = only at the end."""
    evaluate: bool = True
    """Evaluate the EMA every `eval_every` steps and at the end (this rides the game and writes videos:
    pybullet and PyAV). False on a host without them (a GPU host training from a pack); evaluate the exported
    renderer elsewhere (`spokester_train.evaluation`)."""
    eval_video: str | None = None
    """A held-out video for evaluation (`PATH@START[:END]` allowed); None = the first training video."""
    eval_frames: int = 32
    """Frames of the evaluation clip and of the rendered game rollout."""
    eval_cache_steps: tuple[int | None, ...] = (None, 3, 6)
    """`cache_at_step` values whose reconstruction PSNR the periodic evaluation reports."""
    sample_steps: int = 12
    """Euler steps per framelet when sampling for evaluation."""
    game_stats_frames: int = GAME_STATS_FRAMES
    """Frames of the seeded game rollout that fits the game's conditioning statistics."""
    game_stats: str | None = None
    """A JSON file of the game's condition statistics (`spokester_train.data.sources.game_sources_record`;
    unpacking a training pack writes one) used instead of riding the game: on a host without pybullet. Its
    frame size, frames, seed and scene must be the run's."""
    camera: str = DEFAULT_CAMERA
    """The game camera the renderer is made for (`spokester_env.CAMERA_PRESETS`): its game statistics are
    fitted with it, the training rollouts use it, and the exported renderer records it."""
    scene: str = DEFAULT_SCENE
    """The game scene the renderer is made for (`spokester_env.SCENE_PRESETS`), likewise."""
    progress: bool = True
    """Show a rich progress bar."""
    max_minutes: float | None = None
    """Stop once the run's wall time (resumes included) passes this many minutes, with a checkpoint, an
    export and an evaluation, as at the last step (None = run every step)."""

    def __post_init__(self):
        if self.renderer_preset not in RENDERER_PRESETS:
            known = ", ".join(RENDERER_PRESETS)
            raise ValueError(f"renderer_preset={self.renderer_preset!r}: known presets are {known}")
        if not self.stages:
            raise ValueError("stages: need at least one curriculum stage")
        if self.camera not in CAMERA_PRESETS or self.scene not in SCENE_PRESETS:
            cameras, scenes = ", ".join(CAMERA_PRESETS), ", ".join(SCENE_PRESETS)
            raise ValueError(f"camera={self.camera!r}, scene={self.scene!r}: cameras are {cameras}; scenes {scenes}")
        object.__setattr__(self, "stages", tuple(s if isinstance(s, Stage) else Stage(**s) for s in self.stages))
        if isinstance(self.augment, Mapping):
            augment = dict(self.augment, posterize_levels=tuple(self.augment["posterize_levels"]))
            object.__setattr__(self, "augment", Augment(**augment))
        for name in ("videos", "skips", "eval_cache_steps", "betas"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "renderer_overrides", dict(self.renderer_overrides))
        object.__setattr__(self, "extractors", dict(self.extractors))
        if not self.skips or min(self.skips) < 1:
            raise ValueError(f"skips={self.skips}: need one or more frame skips >= 1")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window={self.window}: must be >= 1 or None")
        if not 0 <= self.cars_enter <= 1:
            raise ValueError(f"cars_enter={self.cars_enter}: need a share of the clips in [0, 1]")
        if self.cars_enter and not self.car_masks:
            raise ValueError(f"cars_enter={self.cars_enter} needs car_masks=True (the cars it hides are the mask's)")
        if not (math.isfinite(self.car_loss_weight) and self.car_loss_weight >= 0):
            raise ValueError(f"car_loss_weight={self.car_loss_weight}: need a weight >= 0")
        if self.car_loss_weight != 1 and not self.car_masks:
            raise ValueError(f"car_loss_weight={self.car_loss_weight} needs car_masks=True (its cars are the mask's)")
        if not 0 <= self.look_drop <= 1:
            raise ValueError(f"look_drop={self.look_drop}: need a probability in [0, 1]")
        if not 0 <= self.uncond_prob <= 1 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"uncond_prob={self.uncond_prob}, ema_decay={self.ema_decay}: need [0, 1] and [0, 1)")
        if self.lr <= 0 or not 0 <= self.cooldown_fraction <= 1 or self.warmup_steps < 0:
            raise ValueError(f"lr={self.lr}, cooldown_fraction, warmup_steps: need lr > 0, fraction in [0, 1]")
        if min(self.log_every, self.checkpoint_every) < 1 or self.eval_every < 0 or self.eval_frames < 2:
            raise ValueError("log_every, checkpoint_every must be >= 1, eval_every >= 0, eval_frames >= 2")
        if self.compile and not self.device.startswith("cuda"):
            raise ValueError(f"compile=True needs a CUDA device, got device={self.device!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes={self.max_minutes}: must be > 0 or None")
        steps = self.sample_steps
        if steps < 1 or any(v is not None and not 0 <= v < steps for v in self.eval_cache_steps):
            raise ValueError(
                f"eval_cache_steps={self.eval_cache_steps}: each must be None or in [0, sample_steps={steps})"
            )
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers={self.loader_workers}: must be >= 0")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention={self.attention!r}: choose one of {', '.join(ATTENTION_BACKENDS)}")
        if self.attention == "flex" and not self.device.startswith("cuda"):
            raise ValueError(f"attention='flex' needs a CUDA device (no backward on the CPU), got {self.device!r}")
        if self.irepa and not self.extractors.get("teacher"):
            raise ValueError("irepa=True needs a teacher extractor in extractors")
        for flag, mask in (("sky_to_zero", "sky"), ("car_slabs", "car"), ("car_masks", "car")):
            if getattr(self, flag) and extractor_name(self.extractors.get("teacher")) != "deeplab":
                raise ValueError(
                    f"{flag}=True needs the deeplab teacher (its segmentation gives the {mask} mask), "
                    f"got teacher={self.extractors.get('teacher')!r}; set {flag}=False"
                )

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stage_at(self, step: int) -> tuple[int, Stage]:
        """(index, stage) that runs optimiser step `step` (0-based)."""
        end = 0
        for index, stage in enumerate(self.stages):
            end += stage.steps
            if step < end:
                return index, stage
        return len(self.stages) - 1, self.stages[-1]

    def with_total_steps(self, steps: int) -> TrainConfig:
        """The same curriculum cut or stretched to `steps`: stages are kept in order until `steps` is
        reached, and the last kept stage ends exactly there."""
        if steps < 1:
            raise ValueError(f"steps={steps}: must be >= 1")
        kept, done = [], 0
        for stage in self.stages:
            kept.append(dataclasses.replace(stage, steps=min(stage.steps, steps - done)))
            done += kept[-1].steps
            if done >= steps:
                break
        kept[-1] = dataclasses.replace(kept[-1], steps=kept[-1].steps + steps - done)
        return dataclasses.replace(self, stages=tuple(kept))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields a resumed run may change; any other difference from the checkpoint's config is an error.
RESUMABLE_CHANGES = (
    "stages",
    "out",
    "device",
    "autocast",
    "compile",
    "attention",
    "threads",
    "loader_workers",
    "log_every",
    "checkpoint_every",
    "eval_every",
    "evaluate",
    "game_stats",
    "progress",
    "max_minutes",
)


RENAMED = {"renderer": "renderer_preset", "cache_root": "label_root"}
"""Config fields renamed since the first release (old name -> new name): old checkpoints still resume."""
RENAMED_RENDERER_FIELDS = {"depth": "num_blocks"}
"""`renderer_overrides` keys renamed with `neural_render.RendererConfig`'s fields."""


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuild a config from `to_dict` output (old field names are read too); unknown fields are an error
    naming them."""
    data = {RENAMED.get(name, name): value for name, value in data.items()}
    if "renderer_overrides" in data:
        overrides = data["renderer_overrides"]
        data["renderer_overrides"] = {RENAMED_RENDERER_FIELDS.get(k, k): v for k, v in overrides.items()}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"training config has unknown fields {unknown}")
    return TrainConfig(**data)


def extractor_name(spec) -> str | None:
    """The registered name of an extractor spec (a name or a {"name": ..., **options} dict)."""
    return spec.get("name") if isinstance(spec, Mapping) else spec


def irepa_layer(config: TrainConfig, num_blocks: int) -> int:
    """The block count whose hidden state iREPA aligns: the config's, else 6, else the middle block."""
    if config.irepa_layer is not None:
        if not 1 <= config.irepa_layer <= num_blocks:
            raise ValueError(f"irepa_layer={config.irepa_layer}: the network has blocks 1..{num_blocks}")
        return config.irepa_layer
    return 6 if num_blocks >= 12 else max(1, num_blocks // 2)


def cpu_tiny(**overrides) -> TrainConfig:
    """The tiny renderer on a 2-core CPU in under an hour."""
    base = TrainConfig(
        preset="cpu-tiny",
        renderer_preset="tiny",
        stages=(Stage(steps=4500, image_size=128, clip_frames=8, batch_size=4),),
        lr=5e-4,
        warmup_steps=100,
        ema_decay=0.998,
        checkpoint_every=200,
        eval_every=600,
        eval_frames=32,
    )
    return dataclasses.replace(base, **overrides)


def gpu_base(**overrides) -> TrainConfig:
    """The seed's recipe for the base renderer on one GPU."""
    base = TrainConfig(
        preset="gpu-base",
        renderer_preset="base",
        stages=(
            Stage(steps=60_000, image_size=224, clip_frames=16, batch_size=64),
            Stage(steps=20_000, image_size=320, clip_frames=256, batch_size=4, checkpoint_activations=True),
        ),
        lr=1e-4,
        warmup_steps=2000,
        ema_decay=0.9999,
        device="cuda",
        compile=True,
        attention="flex",
        loader_workers=8,
        checkpoint_every=1000,
        eval_every=5000,
        eval_frames=64,
        eval_cache_steps=(None, 3, 6, 9),
    )
    return dataclasses.replace(base, **overrides)


def gpu_tiny(**overrides) -> TrainConfig:
    """A small renderer on one GPU in minutes from a training pack (`scripts/train_from_pack.py`, which fits
    the steps to its time): the CPU recipe's 128² clips in batches of 32, without evaluation (such a host has
    no game; evaluate the renderer where it has)."""
    base = TrainConfig(
        preset="gpu-tiny",
        renderer_preset="tiny",
        stages=(Stage(steps=20_000, image_size=128, clip_frames=8, batch_size=32),),
        lr=5e-4,
        warmup_steps=300,
        ema_decay=0.999,
        device="cuda",
        loader_workers=4,
        checkpoint_every=1000,
        eval_every=0,
        evaluate=False,
    )
    return dataclasses.replace(base, **overrides)


TRAIN_PRESETS: dict[str, Callable[..., TrainConfig]] = {
    "cpu-tiny": cpu_tiny,
    "gpu-tiny": gpu_tiny,
    "gpu-base": gpu_base,
}


def make_config(preset: str, **overrides) -> TrainConfig:
    """The named preset with keyword overrides; an unknown name is a one-line error listing the known ones."""
    if preset not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {preset!r}; known: {', '.join(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[preset](**overrides)
