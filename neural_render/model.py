"""The renderer network: a pixel-space video DiT that predicts clean frames from noisy frames and the game's
normalised depth and flow.

A framelet of `patch_frames` frames is cut into `patch_frames x p x p` RGB tokens (see `layout.py`). The
condition is cut the same way, projected to the width and added per token to the embedding of the
framelet's timestep; SiLU of that sum drives AdaLN modulation of every block. Attention uses 2D rotary
positions and a framelet-causal mask; there is no temporal position. The network knows nothing of the
noise schedule (see `diffusion.py`): it maps (noisy frames, clean-time t per framelet, condition) to a
prediction of the clean frames.

Legend of tensor letters:
    b batch, n framelets, f frames per framelet, s tokens per framelet, L = n*s, d width,
    o pixels per patch (f*p*p*3), H/W frame height/width
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from neural_render.conditioning import CAR_MASK_CHANNELS, CONDITION_CHANNELS
from neural_render.kv_cache import KVCache
from neural_render.layers import DiTBlock, FinalLayer, PixelHead, TimestepEmbedder
from neural_render.layout import framelet_block_mask, framelet_mask, patchify, rope_tables, unpatchify

__all__ = [
    "ANY_LOOK",
    "RendererConfig",
    "ConfigFieldError",
    "Renderer",
    "RENDERER_PRESETS",
    "ATTENTION_BACKENDS",
    "build_renderer",
    "preset_name",
]

ATTENTION_BACKENDS = ("sdpa", "flex")
"""How a multi-framelet (training) pass applies the framelet mask: "sdpa" gives scaled_dot_product_attention
a dense (L, L) boolean mask, which costs O(L^2) however small the window; "flex" gives FlexAttention a
block mask, which skips the blocks the window hides (long clips: 256 frames are 51,200 tokens at 320^2).
Cached streaming passes need no mask and ignore this."""


RGB_CHANNELS = 3
"""Channels of a generated frame: the project's frames are RGB."""

LOOK_SCALE = 64.0
"""What a look vector's stored values are multiplied by. The timestep embedding a look is added to is large (in
the shipped default about 30 per channel, root mean square, over the sampling times), and a vector learnt from
zero at the network's learning rate stays too small to matter (a fine-tune on a GPU, 2,300 steps: about 0.06
per channel, and the look chosen moved the held-out PSNR by 0.01 dB); stored at 1/64 of its size it moves 64
times as fast."""

CAR_SCALE = 8.0
"""What the car mask is multiplied by before the condition embedding. A car mask learnt from zero weights
(`--car-masks` from a renderer without one) grew slowly: on the CPU its weights' mean magnitude reached 9 % of
the depth channel's in 3,000 steps and 18 % in 6,000. Read at 8 times its size, the mask's weights move 8
times as fast under Adam, as `LOOK_SCALE` does for looks."""

ANY_LOOK = "any"
"""The look of no look in particular: the network's look vector left out, as training leaves it out for a share
of the clips (`look_drop`); what a renderer with no looks always paints."""


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class ConfigFieldError(ValueError):
    """A `RendererConfig` field holds a value the renderer cannot use; the message names the field, its value
    and what it must be (`field`, `value` and `rule` keep them for callers that name the file too)."""

    def __init__(self, field: str, value, rule: str):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"RendererConfig.{field} = {value!r}; must be {rule}")

    def __reduce__(self):  # so that it crosses process boundaries (vector env workers) intact
        return type(self), (self.field, self.value, self.rule)


@dataclass(frozen=True)
class RendererConfig:
    """Everything needed to rebuild a renderer network; it travels inside every checkpoint."""

    image_size: int = 128
    """Side of the square frames in pixels."""
    patch_size: int = 16
    """Side of a token's patch in pixels."""
    patch_frames: int = 2
    """Frames per framelet: a token spans this many frames, and one timestep covers them."""
    width: int = 256
    """Token width d."""
    num_blocks: int = 4
    """Number of DiT blocks."""
    heads: int = 4
    """Attention heads; width / heads must be divisible by 4 for 2D rotary positions."""
    mlp_ratio: float = 4.0
    """Hidden width of each MLP relative to the token width."""
    channels: int = RGB_CHANNELS
    """Channels of a generated frame (RGB: 3, the only value the project can use)."""
    cond_channels: int = CONDITION_CHANNELS
    """Channels of the normalised condition: 3 (depth, flow x, flow y), the seed's design, or 4 (`CAR_MASK_CHANNELS`:
    and a car mask, 1 where a car is), for a renderer told where the cars are (`wants_cars`)."""
    shared_adaln: bool = True
    """One AdaLN projection shared by all blocks (plus a learned offset per block), as the seed pins it."""
    qk_norm: bool = True
    """RMS-normalise queries and keys per head before the rotary positions."""
    rope_base: float = 100.0
    """Base of the rotary frequencies over patch rows and columns."""
    pixel_head: int = 0
    """Hidden channels of a convolutional pixel head after unpatchifying, which also sees the full-resolution
    condition (`layers.PixelHead`); 0 = none, the seed's design (each patch decoded on its own)."""
    patch_overlap: int = 0
    """Pixels of the neighbouring patches that each token's embedding (of the frames and of the condition) also
    sees, on every side (overlapping patch embedding); 0 = disjoint patches, the seed's design."""
    decode_overlap: int = 0
    """Pixels of the neighbouring patches that each token also paints, on every side; overlapping paintings are
    blended with weights falling towards each window's edge (`layout.blend_weights`), so that patches meet
    without a step; 0 = each token paints its own patch alone, the seed's design."""
    looks: tuple[str, ...] = ()
    """Names of the looks the network can be asked to paint (the training videos', one each): a learned vector
    per look, added to the timestep embedding that drives AdaLN (`Renderer.look_vectors`); () = none, the seed's
    design. `ANY_LOOK` is no look: what the network learnt with the look left out."""

    def __post_init__(self):
        """Refuse a config that the network cannot be built with, or that the rest of the project cannot use,
        with a `ConfigFieldError` naming the first bad field and what it must be."""
        for name in ("image_size", "patch_size", "patch_frames", "width", "num_blocks"):
            if not _is_integer(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigFieldError(name, getattr(self, name), "a positive integer")
        if self.image_size % self.patch_size:
            rule = f"a positive integer dividing image_size {self.image_size}"
            raise ConfigFieldError("patch_size", self.patch_size, rule)
        if self.width % 4:
            raise ConfigFieldError("width", self.width, "a positive multiple of 4 (2D rotary positions)")
        heads = self.heads
        if not _is_integer(heads) or heads < 1 or self.width % heads or (self.width // heads) % 4:
            rule = f"a positive integer dividing width {self.width} into heads of a multiple of 4 channels (2D RoPE)"
            raise ConfigFieldError("heads", heads, rule)
        if not _is_number(self.mlp_ratio) or int(self.width * self.mlp_ratio) < 1:
            rule = f"a finite number with width {self.width} x mlp_ratio >= 1"
            raise ConfigFieldError("mlp_ratio", self.mlp_ratio, rule)
        if not _is_integer(self.channels) or self.channels != RGB_CHANNELS:
            raise ConfigFieldError("channels", self.channels, f"{RGB_CHANNELS} (RGB frames)")
        if not _is_integer(self.cond_channels) or self.cond_channels not in (CONDITION_CHANNELS, CAR_MASK_CHANNELS):
            rule = f"{CONDITION_CHANNELS} (depth, flow x, flow y) or {CAR_MASK_CHANNELS} (and a car mask)"
            raise ConfigFieldError("cond_channels", self.cond_channels, rule)
        for name in ("shared_adaln", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigFieldError(name, getattr(self, name), "true or false")
        if not _is_number(self.rope_base) or self.rope_base <= 0:
            raise ConfigFieldError("rope_base", self.rope_base, "a finite number > 0")
        if not _is_integer(self.pixel_head) or self.pixel_head < 0:
            raise ConfigFieldError("pixel_head", self.pixel_head, "an integer >= 0 (hidden channels, 0 = none)")
        if not _is_integer(self.patch_overlap) or not 0 <= self.patch_overlap <= self.patch_size:
            rule = f"an integer from 0 to patch_size {self.patch_size} (pixels, 0 = disjoint patches)"
            raise ConfigFieldError("patch_overlap", self.patch_overlap, rule)
        if not _is_integer(self.decode_overlap) or not 0 <= self.decode_overlap <= self.patch_size:
            rule = f"an integer from 0 to patch_size {self.patch_size} (pixels, 0 = each patch painted alone)"
            raise ConfigFieldError("decode_overlap", self.decode_overlap, rule)
        looks = self.looks
        if isinstance(looks, list):  # as JSON gives it
            object.__setattr__(self, "looks", looks := tuple(looks))
        names = isinstance(looks, tuple) and all(isinstance(n, str) and n and n != ANY_LOOK for n in looks)
        if not names or len(set(looks)) != len(looks):
            raise ConfigFieldError("looks", looks, f"a list of distinct non-empty names other than {ANY_LOOK!r}")

    @property
    def wants_cars(self) -> bool:
        """The condition ends with a car mask (`cond_channels` = `CAR_MASK_CHANNELS`): painting needs the game's."""
        return self.cond_channels == CAR_MASK_CHANNELS

    @property
    def embedded_patch(self) -> int:
        """Side in pixels of what one token's embedding sees: its patch and the overlap on both sides."""
        return self.patch_size + 2 * self.patch_overlap

    @property
    def painted_patch(self) -> int:
        """Side in pixels of what one token paints: its patch and the decode overlap on both sides."""
        return self.patch_size + 2 * self.decode_overlap

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def tokens_per_framelet(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"looks": list(self.looks)}

    def look_index(self, look: str | None) -> int:
        """The row of `look` in the network's look vectors; -1 for no look (None or `ANY_LOOK`)."""
        if look is None or look == ANY_LOOK:
            return -1
        if look not in self.looks:
            known = ", ".join([ANY_LOOK, *self.looks]) if self.looks else f"only {ANY_LOOK!r} (it has no looks)"
            raise ValueError(f"look {look!r}: this renderer paints {known}")
        return self.looks.index(look)

    @classmethod
    def from_dict(cls, data: dict) -> RendererConfig:
        """Rebuild from `to_dict` output; unknown or missing fields are errors, never silent defaults, and so
        is any field's bad value (a `ConfigFieldError`)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"must be an object of fields, got {data!r}")
        names = [field.name for field in dataclasses.fields(cls)]
        unknown, missing = sorted(set(data) - set(names)), [name for name in names if name not in data]
        if unknown:
            raise ValueError(f"unknown fields {unknown} (the fields are {', '.join(names)})")
        if missing:
            raise ValueError(f"missing fields {missing}")
        return cls(**data)


class Renderer(nn.Module):
    """Depth+flow-conditioned pixel-space video DiT with x-prediction.

    `attention` ("sdpa" or "flex", see ATTENTION_BACKENDS) picks how multi-framelet passes are masked, and
    `checkpoint_activations` makes training passes recompute each block in the backward pass instead of
    storing its activations. Both change speed and memory, not results (beyond rounding), and are not part
    of the config.
    """

    def __init__(self, config: RendererConfig, attention: str = "sdpa"):
        super().__init__()
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention={attention!r}: choose one of {', '.join(ATTENTION_BACKENDS)}")
        self.attention = attention
        self.checkpoint_activations = False
        self.config = config
        width, f, e, o = config.width, config.patch_frames, config.embedded_patch, config.painted_patch
        self.x_embedder = nn.Linear(f * e * e * config.channels, width)
        self.cond_embedder = nn.Linear(f * e * e * config.cond_channels, width)
        self.null_condition = nn.Parameter(torch.zeros(width))
        self.t_embedder = TimestepEmbedder(width)
        self.look_embedding = nn.Parameter(torch.zeros(len(config.looks), width)) if config.looks else None
        self.adaln = nn.Linear(width, 6 * width) if config.shared_adaln else None
        self.blocks = nn.ModuleList(
            DiTBlock(width, config.heads, config.mlp_ratio, config.qk_norm, config.shared_adaln)
            for _ in range(config.num_blocks)
        )
        self.final_layer = FinalLayer(width, f * o * o * config.channels)
        self.pixel_head = (
            PixelHead(config.channels, config.cond_channels, config.pixel_head) if config.pixel_head else None
        )
        cos, sin = rope_tables(config.grid, config.head_dim, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # (s, e/2)
        self.register_buffer("rope_sin", sin, persistent=False)  # (s, e/2)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All weight initialisation, in one place."""
        # 1. Every linear layer: Xavier-uniform weights and zero biases, as in ViT and DiT.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # 2. Timestep MLP: small normal weights so that early timesteps do not swamp the condition.
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        # 3. Null condition: a small random vector, distinct from any projected condition at the start.
        nn.init.normal_(self.null_condition, std=0.02)
        # 4. AdaLN projections and per-block offsets: zero, so every gate is 0 and each block starts as
        #    the identity.
        projections = [self.adaln] if self.adaln is not None else [block.adaln for block in self.blocks]
        for projection in projections:
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
        for block in self.blocks:
            if block.adaln_offset is not None:
                nn.init.zeros_(block.adaln_offset)
        # 5. Final modulation and output layer: zero, so the first prediction is exactly 0 (mid grey).
        for layer in (self.final_layer.adaln, self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # 6. Look vectors: zero, so every look starts as no look (a network given looks later paints as before).
        if self.look_embedding is not None:
            nn.init.zeros_(self.look_embedding)
        # 7. Pixel head: Xavier-uniform input convolution, zero output convolution, so it starts as the identity.
        if self.pixel_head is not None:
            nn.init.xavier_uniform_(self.pixel_head.conv_in.weight)
            nn.init.zeros_(self.pixel_head.conv_in.bias)
            nn.init.zeros_(self.pixel_head.conv_out.weight)
            nn.init.zeros_(self.pixel_head.conv_out.bias)

    def embed_condition(self, cond: torch.Tensor | None, drop_cond: torch.Tensor | None, shape) -> torch.Tensor:
        """Per-token condition embedding (b, n, s, d); the learned null embedding where dropped or absent."""
        b, n, s = shape
        null = self.null_condition.expand(b, n, s, -1)  # (b, n, s, d)
        if cond is None:
            return null
        cfg = self.config
        if cfg.wants_cars:  # the car mask read at CAR_SCALE times its size
            cond = torch.cat([cond[..., :CONDITION_CHANNELS], cond[..., CONDITION_CHANNELS:] * CAR_SCALE], dim=-1)
        embedded = self.cond_embedder(patchify(cond, cfg.patch_frames, cfg.patch_size, cfg.patch_overlap))
        if drop_cond is None:
            return embedded
        drop = drop_cond.to(device=embedded.device, dtype=torch.bool).reshape(b, -1)  # (b, 1) or (b, n)
        return torch.where(drop[:, :, None, None], null, embedded)

    def look_vectors(self, look: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Each clip's look vector (b, d) for look rows `look` (b,) (-1 = no look: zeros); None where the network
        has no looks or no look is given."""
        if look is None or self.look_embedding is None:
            return None
        look = look.to(device=self.look_embedding.device, dtype=torch.long).reshape(batch)
        table = F.pad(self.look_embedding * LOOK_SCALE, (0, 0, 1, 0))  # row 0: no look
        return table[look + 1]  # (b, d)

    def pixel_condition(self, cond: torch.Tensor | None, drop_cond: torch.Tensor | None, out: torch.Tensor):
        """The condition (b, n*f, H, W, k) the pixel head sees: zero where absent or dropped."""
        b, t = out.shape[:2]
        if cond is None:
            return out.new_zeros((*out.shape[:-1], self.config.cond_channels))
        if drop_cond is None:
            return cond
        keep = ~drop_cond.to(device=cond.device, dtype=torch.bool).reshape(b, -1)  # (b, 1) or (b, n)
        keep = keep.repeat_interleave(t // keep.shape[1], dim=1)  # (b, t)
        return cond * keep[:, :, None, None, None].to(cond.dtype)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None,
        *,
        drop_cond: torch.Tensor | None = None,
        window: int | None = None,
        cache: KVCache | None = None,
        return_layers: Iterable[int] = (),
        cond_tokens: torch.Tensor | None = None,
        look: torch.Tensor | None = None,
    ):
        """Predict clean frames.

        x: noisy frames (b, n*f, H, W, 3); t: clean-time of each framelet (b, n), 0 = noise, 1 = clean;
        cond: normalised condition (b, n*f, H, W, 3), or None for the null condition everywhere;
        drop_cond: bool (b,) or (b, n), True where the null condition replaces `cond`;
        window: framelets a token sees (its own included), None = all earlier ones (parallel pass only);
        cache: a KVCache for one framelet (n = 1) whose context is the cache's framelets;
        return_layers: block counts l (1..num_blocks) whose hidden states (b, n, s, d) after l blocks to return;
        cond_tokens: `embed_condition(cond, drop_cond, ...)` (b, n, s, d) when the caller has it already (the
        sampler embeds a framelet's condition once for all its passes); `cond` then only reaches a pixel head;
        look: each clip's row in the network's look vectors (b,), -1 for no look (`RendererConfig.looks`).
        Returns the prediction (b, n*f, H, W, 3), and a dict {l: hidden} too when `return_layers` is given.
        """
        cfg = self.config
        tokens = patchify(x, cfg.patch_frames, cfg.patch_size, cfg.patch_overlap)  # (b, n, s, o)
        b, n, s, _ = tokens.shape
        if t.shape != (b, n):
            raise ValueError(f"t must have shape (batch, framelets) = {(b, n)}, got {tuple(t.shape)}")
        if cache is not None and n != 1:
            raise ValueError(f"a cached pass takes one framelet at a time, got {n}")
        layers = sorted(set(return_layers))
        if any(not 1 <= layer <= cfg.num_blocks for layer in layers):
            raise ValueError(f"return_layers must lie in 1..{cfg.num_blocks}, got {layers}")

        h = self.x_embedder(tokens)  # (b, n, s, d)
        if cond_tokens is None:
            cond_tokens = self.embed_condition(cond, drop_cond, (b, n, s))  # (b, n, s, d)
        c = cond_tokens + self.t_embedder(t)[:, :, None]  # (b, n, s, d)
        looks = self.look_vectors(look, b)
        if looks is not None:
            c = c + looks[:, None, None]  # (b, n, s, d)
        c = F.silu(c)
        h, c = (rearrange(z, "b n s d -> b (n s) d") for z in (h, c))  # (b, L, d)
        condition = self.adaln(c) if self.adaln is not None else c  # (b, L, 6d) shared, else (b, L, d)
        cos = repeat(self.rope_cos, "s m -> (n s) m", n=n)  # (L, e/2)
        sin = repeat(self.rope_sin, "s m -> (n s) m", n=n)
        if cache is not None or n == 1:
            mask = None
        elif self.attention == "flex":
            mask = framelet_block_mask(n, s, window, str(x.device))
        else:
            mask = framelet_mask(n, s, window, device=x.device)

        hidden = {}
        recompute = self.checkpoint_activations and cache is None and torch.is_grad_enabled()
        for index, block in enumerate(self.blocks):
            if recompute:
                h = checkpoint(block, h, condition, cos, sin, mask, None, index, use_reentrant=False)
            else:
                h = block(h, condition, cos, sin, mask, cache, index)  # (b, L, d)
            if index + 1 in layers:
                hidden[index + 1] = rearrange(h, "b (n s) d -> b n s d", n=n)
        out = self.final_layer(h, c)  # (b, L, o)
        out = rearrange(out, "b (n s) o -> b n s o", n=n)
        out = unpatchify(out, cfg.patch_frames, cfg.patch_size, cfg.grid, cfg.decode_overlap)  # (b, n*f, H, W, 3)
        if self.pixel_head is not None:  # it sees the condition where the tokens saw it, zeros elsewhere
            out = self.pixel_head(out, self.pixel_condition(cond, drop_cond, out))  # (b, n*f, H, W, 3)
        return (out, hidden) if layers else out  # (b, n*f, H, W, 3)

    def new_cache(self, *, batch_size: int, window: int, device=None, dtype=None) -> KVCache:
        """An empty KV cache sized for this network."""
        cfg = self.config
        return KVCache(
            num_blocks=cfg.num_blocks,
            batch_size=batch_size,
            heads=cfg.heads,
            head_dim=cfg.head_dim,
            tokens_per_framelet=cfg.tokens_per_framelet,
            window=window,
            device=device if device is not None else self.rope_cos.device,
            dtype=dtype if dtype is not None else self.x_embedder.weight.dtype,
        )


def tiny() -> RendererConfig:
    """About 5M parameters at 128x128: the CPU default and the test size."""
    return RendererConfig(image_size=128, patch_size=16, width=256, num_blocks=4, heads=4)


def small() -> RendererConfig:
    """About 25M parameters at 256x256: a mid-size GPU model."""
    return RendererConfig(image_size=256, patch_size=16, width=448, num_blocks=9, heads=7)


def base() -> RendererConfig:
    """ViT-B: 12 blocks of width 768 at 320x320, about 95M parameters, the seed's size."""
    return RendererConfig(image_size=320, patch_size=16, width=768, num_blocks=12, heads=12)


def tiny_head() -> RendererConfig:
    """`tiny` with a 16-channel pixel head: patches that can meet without seams, at a small extra cost."""
    return dataclasses.replace(tiny(), pixel_head=16)


def tiny_p8() -> RendererConfig:
    """128x128 in 8-px patches (16 x 16 tokens instead of 8 x 8), narrower to keep about `tiny`'s CPU cost."""
    return RendererConfig(image_size=128, patch_size=8, width=128, num_blocks=4, heads=2)


def tiny_overlap() -> RendererConfig:
    """`tiny` whose tokens embed 24-px windows around their 16-px patches: neighbours seen on the way in."""
    return dataclasses.replace(tiny(), patch_overlap=4)


def tiny_overlap_head() -> RendererConfig:
    """`tiny-overlap` with `tiny-head`'s pixel head: neighbours seen on the way in and on the way out."""
    return dataclasses.replace(tiny_overlap(), pixel_head=16)


def tiny_overlap_blend() -> RendererConfig:
    """`tiny-overlap` whose tokens also paint 24-px windows around their 16-px patches, blended where they
    overlap: neighbours seen on the way in, and patches that meet without a step by construction."""
    return dataclasses.replace(tiny_overlap(), decode_overlap=4)


def tiny_p8_head() -> RendererConfig:
    """`tiny-p8` with `tiny-head`'s pixel head: the token grid that learnt cars first, and the head that takes
    the tiles off (the two winners of the anti-tile ablation, together)."""
    return dataclasses.replace(tiny_p8(), pixel_head=16)


RENDERER_PRESETS: dict[str, Callable[[], RendererConfig]] = {
    "tiny": tiny,
    "tiny-head": tiny_head,
    "tiny-p8": tiny_p8,
    "tiny-p8-head": tiny_p8_head,
    "tiny-overlap": tiny_overlap,
    "tiny-overlap-head": tiny_overlap_head,
    "tiny-overlap-blend": tiny_overlap_blend,
    "small": small,
    "base": base,
}


def preset_name(config: RendererConfig) -> str | None:
    """The name of the preset whose config equals `config` exactly, or None."""
    return next((name for name, preset in RENDERER_PRESETS.items() if preset() == config), None)


def build_renderer(name_or_config: str | RendererConfig, *, device=None, dtype=None, **overrides) -> Renderer:
    """Build a renderer from a preset name or a config; keyword overrides replace config fields."""
    if isinstance(name_or_config, RendererConfig):
        config = name_or_config
    elif name_or_config in RENDERER_PRESETS:
        config = RENDERER_PRESETS[name_or_config]()
    else:
        raise ValueError(f"unknown renderer preset {name_or_config!r}; known: {', '.join(RENDERER_PRESETS)}")
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return Renderer(config).to(device=device, dtype=dtype)
