"""Setting up a training run: everything the loop (`spokester_train.recipe.loop`) needs before its first step, in
named pieces it calls in order.

- `open_run`: the run folder, and the training checkpoint to resume from (with the checks that it fits);
- `Networks`: the renderer, its EMA, the iREPA projector and the optimiser, built from the config (and
  restored from a checkpoint, or started from a renderer's weights: `init_from`), moved to another frame size
  between curriculum stages;
- `init_from_choices`: what a run started from a renderer takes from it unless told otherwise (its network,
  game and sampling steps);
- `StageData`: what one curriculum stage trains on: the label stores of the videos at the stage's frame
  size, the condition statistics (the game's and every video's, `spokester_train.data.sources`) and the batches.
What an exported renderer records about how it was made is `spokester_train.recipe.provenance`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from neural_render import RENDERER_PRESETS, ConditionStats, Renderer, build_renderer, load_renderer
from neural_render.checkpoint import LoadedRenderer
from neural_render.conditioning import CAR_MASK_CHANNELS
from spokester_env.output import check_output
from spokester_train.data.batches import ClipBatches
from spokester_train.data.extract import extract, file_record
from spokester_train.data.sources import game_sources, load_game_sources, video_source_name, video_sources
from spokester_train.data.store import LabelStore
from spokester_train.data.video import parse_video
from spokester_train.recipe.checkpoint import CHECKPOINT, load_state
from spokester_train.recipe.config import RESUMABLE_CHANGES, Stage, TrainConfig, config_from_dict, irepa_layer
from spokester_train.recipe.distributed import Ranks
from spokester_train.recipe.irepa import TEACHER_CHANNELS, Projector
from spokester_train.recipe.optimizer_step import make_optimizer

__all__ = [
    "Networks",
    "StageData",
    "init_from_choices",
    "look_names",
    "look_rows",
    "open_run",
    "prepare_stores",
    "video_file_name",
]


def open_run(config: TrainConfig, resume: bool, main: bool = True) -> tuple[Path, dict | None]:
    """The run folder (made) and, with `resume`, its training checkpoint; a fresh run refuses a folder that
    holds one, and a resume refuses a changed recipe (only `RESUMABLE_CHANGES` may differ). A process other
    than the main one of a distributed run only reads the checkpoint."""
    if not config.videos:
        raise ValueError("videos: give at least one training video")
    if not main:
        out = Path(config.out)
        return out, load_state(out / CHECKPOINT, map_location="cpu") if resume else None  # not onto GPU 0
    out = check_output(config.out, folder=True)
    if not resume:
        if (out / CHECKPOINT).is_file():
            raise ValueError(f"{out}: already holds a training checkpoint; resume it or choose another out folder")
        out.mkdir(parents=True, exist_ok=True)
        return out, None
    state = load_state(out / CHECKPOINT, map_location=config.device)
    old, new = config_from_dict(state["config"]).to_dict(), config.to_dict()
    changed = sorted(k for k in old if k not in RESUMABLE_CHANGES and old[k] != new[k])
    if changed:
        raise ValueError(
            f"{out / CHECKPOINT}: cannot resume with a different {', '.join(changed)} (only {RESUMABLE_CHANGES})"
        )
    return out, state


def _describe(weights: dict[str, torch.Tensor]) -> str:
    blocks = {name.split(".")[1] for name in weights if name.startswith("blocks.")}
    width = next((tensor.shape[0] for name, tensor in weights.items() if name.startswith("x_embedder.")), "?")
    head = any(name.startswith("pixel_head.") for name in weights)
    return f"{len(blocks)} blocks of width {width}, {'a' if head else 'no'} pixel head, {len(weights)} tensors"


def _check_network(saved: dict[str, torch.Tensor], model: Renderer, config: TrainConfig, source: Path) -> None:
    """Weights read from `source` must be those of the network the config names: one line naming both if not."""
    expected = model.state_dict()
    same = set(saved) == set(expected) and all(saved[k].shape == expected[k].shape for k in expected)
    if not same:
        raise ValueError(
            f"{source}: its weights ({_describe(saved)}) are not those of the network the run's config names, "
            f"renderer preset {config.renderer_preset!r} ({_describe(expected)})"
        )


def init_from_choices(path: str | Path) -> dict:
    """The config fields a run started from the renderer at `path` takes from it unless given others: its
    network (`renderer_preset`: the preset it was saved or trained as, and as `renderer_overrides` whatever of its
    config differs from that preset's, the frame size aside), its game (`camera`, `scene`) and its sampling steps
    (`sample_steps`; the in-run evaluation with a clean context pass and the cache at half of them,
    `eval_cache_steps`, as `scripts/renderer_figures.sh` measures a renderer), and how it reads the sky
    (`sky_at_clip`) and the cars of its videos (`car_slabs`), and whether it paints looks (`looks`) and is told where
    the cars are (`car_masks`)."""
    loaded = load_renderer(path)
    named = loaded.preset or (loaded.provenance.get("train_config") or {}).get("renderer_preset")
    name = named if named in RENDERER_PRESETS else next(iter(RENDERER_PRESETS))  # any, with its differences
    preset = dataclasses.asdict(RENDERER_PRESETS[name]())
    own = dataclasses.asdict(loaded.model.config)
    overrides = {k: v for k, v in own.items() if k not in ("image_size", "looks", "cond_channels") and v != preset[k]}
    return {
        "renderer_preset": name,
        "renderer_overrides": overrides,
        "camera": loaded.game["camera"],
        "scene": loaded.game["scene"],
        "sample_steps": loaded.num_steps,
        "eval_cache_steps": (None, loaded.num_steps // 2) if loaded.num_steps > 1 else (None,),
        "sky_at_clip": loaded.stats is not None and any(s.sky_at_clip for s in loaded.stats.sources.values()),
        "car_slabs": loaded.stats is not None and any(s.car_slabs for s in loaded.stats.sources.values()),
        "looks": bool(loaded.model.config.looks),
        "car_masks": loaded.model.config.wants_cars,
    }


def look_names(config: TrainConfig) -> tuple[str, ...]:
    """The looks a run with `config.looks` teaches: its training videos' file stems, in order (a label store folder
    given as a video goes by the stem of the video it was extracted from); () without."""
    if not config.looks:
        return ()
    names = tuple(Path(video_file_name(video)).stem for video in config.videos)
    for name in names:
        if names.count(name) > 1:  # as the videos' condition sources refuse it
            raise ValueError(f"two training videos share the name {name!r}; rename one")
    return names


def look_rows(model: Renderer, stems: Sequence[str], device) -> torch.Tensor | None:
    """Each training store's row in the network's look vectors (-1 where its video is not one of the looks), or
    None for a network without looks."""
    looks = model.config.looks
    if not looks:
        return None
    return torch.tensor([looks.index(stem) if stem in looks else -1 for stem in stems], device=device)


def _adopt_looks(weights: dict[str, torch.Tensor], looks: tuple[str, ...], model: Renderer) -> dict:
    """Weights saved with looks `looks` for `model`, whose looks may differ: the vectors of the looks both have are
    kept, the model's other looks start at zero (as a new network's), the rest are dropped."""
    name = "look_embedding"
    saved = weights.get(name)
    weights = {k: v for k, v in weights.items() if k != name}
    if not model.config.looks:
        return weights
    vectors = torch.zeros_like(model.look_embedding.detach())
    for row, look in enumerate(model.config.looks):
        if saved is not None and look in looks:
            vectors[row] = saved[looks.index(look)]
    return weights | {name: vectors}


def _adopt_condition(weights: dict[str, torch.Tensor], model: Renderer) -> dict:
    """Weights of a network without a car mask for `model`, which has one: the car channel's weights in the
    condition embedding (and a pixel head's first convolution) start at zero, so that the network paints as
    before until it learns what the mask means. Weights with as many condition channels are kept as they are."""
    name = "cond_embedder.weight"
    target = model.state_dict()[name]
    if weights[name].shape == target.shape or not model.config.wants_cars:
        return weights
    k = model.config.cond_channels
    saved = weights[name].reshape(target.shape[0], -1, k - 1)  # (width, f*p*q, 3): channels innermost
    adopted = {name: torch.cat([saved, saved.new_zeros((*saved.shape[:2], 1))], dim=-1).reshape(target.shape)}
    head = "pixel_head.conv_in.weight"
    if head in weights:  # (hidden, 3 + 3, 3, 3): the frame's channels, then the condition's
        adopted[head] = torch.cat([weights[head], weights[head].new_zeros((weights[head].shape[0], 1, 3, 3))], dim=1)
    return weights | adopted


def _origin(loaded: LoadedRenderer) -> dict:
    """What a run started from `loaded` records of it: its file, size and hash, its save's id and the steps and
    training wall time its own provenance gives."""
    steps, wall_s = loaded.provenance.get("steps"), loaded.provenance.get("train_wall_s")
    return file_record(loaded.path, checkpoint_id=loaded.checkpoint_id, steps=steps, train_wall_s=wall_s)


def _resized(model: Renderer, size: int) -> Renderer:
    """The same weights in a network for `size` x `size` frames (only the rotary tables change)."""
    if model.config.image_size == size:
        return model
    resized = Renderer(dataclasses.replace(model.config, image_size=size), attention=model.attention)
    resized = resized.to(model.x_embedder.weight.device)
    resized.load_state_dict(model.state_dict())
    return resized


@dataclass
class Networks:
    """The trained network, its EMA (what gets exported), the iREPA projector (None without iREPA), the
    optimiser over both, and the block whose hidden state iREPA aligns."""

    model: Renderer
    ema: Renderer
    projector: Projector | None
    optimizer: torch.optim.Optimizer
    irepa_layer: int
    origin: dict | None = None
    """The record of the renderer the weights started from (`init_from`), None for seeded weights."""

    @classmethod
    def build(cls, config: TrainConfig, device: torch.device, state: dict | None = None) -> Networks:
        """Fresh networks seeded by `config.seed` (with `config.init_from`: the network and its EMA holding that
        renderer's weights), or those of a checkpoint's `state` at its stage's size."""
        torch.manual_seed(config.seed)  # the initial weights
        size = config.stages[0].image_size
        overrides = dict(config.renderer_overrides) | ({"looks": look_names(config)} if config.looks else {})
        overrides |= {"cond_channels": CAR_MASK_CHANNELS} if config.car_masks else {}
        model = build_renderer(config.renderer_preset, device=device, image_size=size, **overrides)
        model.attention = config.attention
        projector = None
        if config.irepa:
            projector = Projector(model.config.width, model.config.patch_frames, TEACHER_CHANNELS).to(device)
        ema = copy.deepcopy(model).requires_grad_(False).eval()
        networks = cls(model, ema, projector, None, irepa_layer(config, model.config.num_blocks))
        if state is not None:
            networks.resize(config.stage_at(max(int(state["step"]) - 1, 0))[1].image_size, config)
            model, ema = networks.model, networks.ema
            _check_network(state["model"], model, config, Path(config.out) / CHECKPOINT)
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            if projector is not None:
                projector.load_state_dict(state["projector"])
            networks.origin = state.get("origin")
        elif config.init_from is not None:
            start = load_renderer(config.init_from, device=device)
            weights = _adopt_looks(start.model.state_dict(), start.model.config.looks, model)
            weights = _adopt_condition(weights, model)
            _check_network(weights, model, config, start.path)
            model.load_state_dict(weights)
            ema.load_state_dict(weights)
            networks.origin = _origin(start)
        networks.optimizer = make_optimizer(networks.model, projector, config)
        if state is not None:
            networks.optimizer.load_state_dict(state["optimizer"])
        return networks

    def resize(self, size: int, config: TrainConfig) -> None:
        """Move the networks to `size` x `size` frames; the optimiser's state follows the same weights."""
        if self.model.config.image_size == size:
            return
        self.model, self.ema = _resized(self.model, size), _resized(self.ema, size)
        if self.optimizer is not None:
            moved = self.optimizer.state_dict()
            self.optimizer = make_optimizer(self.model, self.projector, config)
            self.optimizer.load_state_dict(moved)

    def state(self) -> dict:
        """The networks' part of a training checkpoint."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "projector": self.projector.state_dict() if self.projector is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "origin": self.origin,
        }


def video_file_name(video: str, store: LabelStore | None = None) -> str:
    """The file name a training video goes by (its stem names its condition source, `video/<stem>`, and its
    look): the video's own, or for a label store folder given in its place (`store`, opened here when not given),
    that of the video it was extracted from."""
    path = parse_video(video).path
    if not path.is_dir():
        return path.name
    return Path((store or LabelStore(path)).manifest["video"]["path"]).name


def _given_store(video: str, size: int, config: TrainConfig) -> LabelStore:
    """A label store folder given as a training video (an unpacked training pack): used as it is, no video
    needed; it must be at the stage's frame size and hold what the recipe reads."""
    spec = parse_video(video)
    if spec.start or spec.frames is not None:
        raise ValueError(f"{video}: a label store folder takes no @START[:END]; it holds the frames it was made with")
    store = LabelStore(spec.path)
    if (made := store.manifest["resolution"]) != size:
        raise ValueError(f"{spec.path}: a {made} px label store; this stage trains at {size} px")
    if config.irepa and "teacher" not in store.streams:
        raise ValueError(f"{spec.path}: no teacher features for iREPA; extract with a teacher or train with --no-irepa")
    return store


def prepare_stores(videos: Sequence[str], size: int, config: TrainConfig) -> list[LabelStore]:
    """The label store of each video (`PATH[@START[:END]]`) at `size` x `size`, extracted if not yet there; a
    label store folder given in a video's place is used as it is."""
    stores = []
    for video, spec in zip(videos, map(parse_video, videos), strict=True):
        if spec.path.is_dir():
            stores.append(_given_store(video, size, config))
            continue
        store_dir = extract(
            spec.path,
            config.label_root,
            size=size,
            flow=config.extractors.get("flow"),
            depth=config.extractors.get("depth"),
            teacher=config.extractors.get("teacher"),
            skips=config.skips,
            start=spec.start,
            max_frames=spec.frames,
            progress=config.progress,
        )
        stores.append(LabelStore(store_dir))
    return stores


@dataclass
class StageData:
    """What one curriculum stage trains and evaluates on, at its frame size."""

    index: int
    stores: list[LabelStore]
    stems: list[str]
    """Each training store's video file stem: its condition source is `video/<stem>`, its look `<stem>`."""
    eval_store: LabelStore
    stats: ConditionStats
    batches: ClipBatches

    @classmethod
    def enter(
        cls,
        config: TrainConfig,
        index: int,
        stage: Stage,
        state: dict | None,
        opened: contextlib.ExitStack,
        ranks: Ranks | None = None,
    ) -> StageData:
        """Extract (or find) the stage's label stores, fit the condition statistics, and start the batches
        (where the checkpoint's data cursor left them, when it was saved in this stage). In a distributed
        run process 0 extracts while the others wait, then they read the stores it wrote."""
        ranks = ranks or Ranks()
        videos = [*config.videos, config.eval_video or config.videos[0]]
        if not ranks.main:
            ranks.barrier()
        *stores, eval_store = prepare_stores(videos, stage.image_size, config)
        if ranks.main:
            ranks.barrier()
        stems = [Path(video_file_name(video, store)).stem for video, store in zip(config.videos, stores, strict=True)]
        game = (stage.image_size, config.game_stats_frames, config.seed, config.camera, config.scene)
        sources = load_game_sources(config.game_stats, *game) if config.game_stats else game_sources(*game)
        sources |= video_sources(
            stores, stems, config.skips, sky_to_zero=config.sky_to_zero, car_slabs=config.car_slabs
        )
        if config.sky_at_clip:  # a flag of the transform only: the statistics are the same
            sources = {name: dataclasses.replace(source, sky_at_clip=True) for name, source in sources.items()}
        stats = ConditionStats(sources=sources)
        batches = ClipBatches(
            stores, [video_source_name(stem) for stem in stems], stats, stage.clip_frames, config.skips,
            config.seed, config.irepa, balance=config.balance_videos, workers=config.loader_workers,
            rank=ranks.rank, world_size=ranks.world_size, car_masks=config.car_masks, mirror=config.mirror,
        )  # fmt: skip
        opened.enter_context(batches)  # its loader workers stop with the run
        if state is not None and state["data"]["stage"] == index:
            batches.load_state(state["data"])
        return cls(index, stores, stems, eval_store, stats, batches)

    def close(self) -> None:
        """Stop this stage's loader workers (the next stage starts its own)."""
        self.batches.close()
