"""neural_render: the depth+flow-conditioned pixel DiT that paints Spokester's frames.

Import cost stays light: the gym wrapper (which needs gymnasium and spokester_env) loads on first use.
"""

from neural_render.checkpoint import load_renderer, save_renderer
from neural_render.conditioning import ConditionStats, SourceStats
from neural_render.diffusion import FlowMatching
from neural_render.model import RENDERER_PRESETS, Renderer, RendererConfig, build_renderer
from neural_render.sampler import StreamingRenderer

__all__ = [
    "RENDERER_PRESETS",
    "ConditionStats",
    "FlowMatching",
    "Renderer",
    "RendererConfig",
    "SourceStats",
    "StreamingRenderer",
    "build_renderer",
    "load_renderer",
    "save_renderer",
]
