"""Token layout: how frames become tokens, where tokens sit, and which tokens may see which.

This module is the one home of patchify/unpatchify, the 2D rotary positions and the framelet-causal mask.
A framelet is `patch_frames` consecutive frames; each token is a `patch_frames x p x p` block of one
framelet, so a framelet is a `rows x cols` grid of tokens. There is no temporal position at all: time is
carried by the mask alone, which is what lets a KV cache store framelets in any order.

Legend of tensor letters:
    b batch, n framelets, f frames per framelet, y/x token rows/cols, p/q pixels inside a patch,
    k channels, s = y*x tokens per framelet, h heads, e head width, m = e/2 rotary pairs
Videos are channel-last: (b, n*f, H, W, k), values of frames in [-1, 1].
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

__all__ = [
    "patchify",
    "unpatchify",
    "blend_weights",
    "framelet_mask",
    "framelet_block_mask",
    "rope_tables",
    "apply_rope",
    "to_uint8",
    "from_uint8",
]


def from_uint8(frames) -> torch.Tensor:
    """uint8 pixels in [0, 255] (array or tensor) to float32 in [-1, 1]."""
    return torch.as_tensor(frames).float() / 127.5 - 1.0


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Frames in [-1, 1] to uint8 pixels, rounded and clipped."""
    return ((frames.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def patchify(video: torch.Tensor, patch_frames: int, patch_size: int, overlap: int = 0) -> torch.Tensor:
    """Cut a channel-last video (b, n*f, H, W, k) into tokens (b, n, s, f*P*P*k), P = patch_size + 2 * overlap:
    each token holds its patch and `overlap` pixels of its neighbours' on every side (zeros beyond the frame's
    edge); overlap 0 cuts disjoint patches."""
    frames, height, width = video.shape[1:4]
    if frames % patch_frames or height % patch_size or width % patch_size:
        raise ValueError(
            f"video of {frames} frames of {height}x{width} does not tile into framelets of {patch_frames} "
            f"frames and {patch_size}x{patch_size} patches"
        )
    if overlap:
        side = patch_size + 2 * overlap
        padded = F.pad(video, (0, 0, overlap, overlap, overlap, overlap))  # (b, n*f, H + 2o, W + 2o, k)
        windows = padded.unfold(2, side, patch_size).unfold(3, side, patch_size)  # (b, n*f, y, x, k, P, P)
        return rearrange(windows, "b (n f) y x k p q -> b n (y x) (f p q k)", f=patch_frames)
    return rearrange(video, "b (n f) (y p) (x q) k -> b n (y x) (f p q k)", f=patch_frames, p=patch_size, q=patch_size)


def unpatchify(
    tokens: torch.Tensor, patch_frames: int, patch_size: int, grid: tuple[int, int], overlap: int = 0
) -> torch.Tensor:
    """Inverse of `patchify`: tokens (b, n, s, f*P*P*k), P = patch_size + 2 * overlap, back to a video
    (b, n*f, H, W, k). With an overlap each token paints its patch and `overlap` pixels of its neighbours' on
    every side, and where paintings overlap they are averaged with `blend_weights` (nothing painted beyond the
    frame's edge is kept); overlap 0 lays disjoint patches side by side."""
    rows, cols = grid
    if not overlap:
        return rearrange(
            tokens,
            "b n (y x) (f p q k) -> b (n f) (y p) (x q) k",
            y=rows,
            x=cols,
            f=patch_frames,
            p=patch_size,
            q=patch_size,
        )
    side = patch_size + 2 * overlap
    channels = tokens.shape[-1] // (patch_frames * side * side)
    weights, inverse_norm = _blend_tables(side, patch_size, grid, channels)
    weights, inverse_norm = (z.to(device=tokens.device, dtype=tokens.dtype) for z in (weights, inverse_norm))
    painted = rearrange(tokens, "b n s (f p q k) -> (b n f) (k p q) s", f=patch_frames, p=side, q=side)
    total = F.fold(painted * weights, inverse_norm.shape[-2:], side, stride=patch_size, padding=overlap)
    return rearrange(total * inverse_norm, "(b t) k h w -> b t h w k", b=tokens.shape[0])


@functools.lru_cache(maxsize=8)
def _blend_tables(side: int, patch_size: int, grid: tuple[int, int], channels: int):
    """`blend_weights` laid out as a painting's values (k*P*P, 1), and 1 / the sum of the weights that reach
    each pixel of the frame (H, W): what `unpatchify` scales paintings by before and after adding them up."""
    rows, cols = grid
    overlap = (side - patch_size) // 2
    weights = blend_weights(side).reshape(1, -1, 1)  # (1, P*P, 1)
    size = (rows * patch_size, cols * patch_size)
    norm = F.fold(weights.expand(1, -1, rows * cols), size, side, stride=patch_size, padding=overlap)[0, 0]
    return weights[0].repeat(channels, 1), 1.0 / norm


@functools.lru_cache(maxsize=8)
def blend_weights(side: int) -> torch.Tensor:
    """Weights (side, side) of a painted window's pixels where windows overlap: a tent, highest in the middle
    and falling linearly to almost nothing at the window's edge, so that a neighbour's painting takes over
    gradually and patches meet without a step."""
    ramp = torch.minimum(torch.arange(side) + 0.5, side - 0.5 - torch.arange(side))  # 0.5 at the edges
    return torch.outer(ramp, ramp) / ramp.max() ** 2


def framelet_mask(
    num_framelets: int,
    tokens_per_framelet: int,
    window: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean (n*s, n*s) mask, True where a query token may attend to a key token.

    A token of framelet i sees every token of framelet j when i - window < j <= i: its own framelet and the
    `window - 1` framelets before it. `window=None` means every earlier framelet (plain framelet-causal).
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    index = torch.arange(num_framelets, device=device)
    lag = index[:, None] - index[None, :]  # (n, n): query framelet minus key framelet
    allowed = lag >= 0
    if window is not None:
        allowed &= lag < window
    return repeat(allowed, "i j -> (i s) (j r)", s=tokens_per_framelet, r=tokens_per_framelet)


@functools.lru_cache(maxsize=16)
def framelet_block_mask(num_framelets: int, tokens_per_framelet: int, window: int | None, device: str):
    """`framelet_mask` as a FlexAttention BlockMask: the same allowed pairs, but the attention kernel skips
    every block of tokens that the window hides (with long clips, most of them). Cached per shape."""
    from torch.nn.attention.flex_attention import create_block_mask

    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    size = num_framelets * tokens_per_framelet

    def allowed(b, h, q, k):
        lag = q // tokens_per_framelet - k // tokens_per_framelet
        return (lag >= 0) & (lag < window) if window is not None else lag >= 0

    return create_block_mask(allowed, B=None, H=None, Q_LEN=size, KV_LEN=size, device=device)


def rope_tables(grid: tuple[int, int], head_dim: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines (s, m) of 2D rotary angles: the first m/2 pairs turn with the token row, the rest
    with the token column."""
    if head_dim % 4:
        raise ValueError(f"2D rotary positions need a head width divisible by 4, got {head_dim}")
    rows, cols = grid
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, dtype=torch.float64, device=device) / quarter)  # (m/2,)
    row = torch.arange(rows, dtype=torch.float64, device=device)
    col = torch.arange(cols, dtype=torch.float64, device=device)
    row_angles = repeat(row[:, None] * freqs, "y m -> (y x) m", x=cols)
    col_angles = repeat(col[:, None] * freqs, "x m -> (y x) m", y=rows)
    angles = torch.cat([row_angles, col_angles], dim=-1)  # (s, m)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (..., e) by angles whose cos/sin (..., m) broadcast against
    x's pairs: for x (b, h, L, e) tables (L, m), for x (b, L, h, e) tables (L, 1, m)."""
    pairs = rearrange(x, "... (m two) -> ... m two", two=2)
    even, odd = pairs.unbind(-1)  # each (..., m)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    turned = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rearrange(turned, "... m two -> ... (m two)")
