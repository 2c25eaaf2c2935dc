"""neural_render: the depth+flow-conditioned pixel DiT that paints Spokester's frames.

Import cost stays light: the gym wrapper (which needs gymnasium and spokester_env) loads on first use.
"""

from neural_render.checkpoint import load_renderer, save_renderer
from neural_render.conditioning import ConditionSource, ConditionStats
from neural_render.diffusion import FlowMatching
from neural_render.model import ANY_LOOK, RENDERER_PRESETS, Renderer, RendererConfig, build_renderer
from neural_render.sampler import StreamingRenderer

__all__ = [
    "ANY_LOOK",
    "NeuralRenderObservation",
    "NeuralRenderVectorEnv",
    "RENDERER_PRESETS",
    "ConditionSource",
    "ConditionStats",
    "FlowMatching",
    "Renderer",
    "RendererConfig",
    "StreamingRenderer",
    "build_renderer",
    "load_renderer",
    "save_renderer",
]


def __getattr__(name: str):
    """Load the gym wrappers on first use, so that importing neural_render stays light."""
    if name in ("NeuralRenderObservation", "NeuralRenderVectorEnv"):
        from neural_render import wrapper

        return getattr(wrapper, name)
    raise AttributeError(f"module 'neural_render' has no attribute {name!r}")
