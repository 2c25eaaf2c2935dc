"""Pluggable pseudo-label extractors, found by kind ("flow", "depth", "teacher") and name.

Offline defaults: flow ``dis`` (OpenCV), depth ``pydnet`` and teacher ``deeplab`` (LiteRT, weights shipped
in ``train/weights``). With a local checkpoint and ``transformers``: depth ``depth-anything-v2-small``,
teacher ``dinov2``. Add one with ``@register(kind, name)`` on a subclass of ``FlowEstimator`` or
``FrameLabeler``.
"""

from spokester_train.data.extractors import depth, flow, teacher  # noqa: F401  (registers the built-in extractors)
from spokester_train.data.extractors.base import (
    EXTRACTORS,
    KINDS,
    Extractor,
    ExtractorSpec,
    FlowEstimator,
    FrameLabeler,
    StreamSpec,
    build_extractor,
    register,
)
from spokester_train.data.extractors.flow import warp_error, warp_previous

DEFAULT_EXTRACTORS = {"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}

__all__ = [
    "DEFAULT_EXTRACTORS",
    "EXTRACTORS",
    "KINDS",
    "Extractor",
    "ExtractorSpec",
    "FlowEstimator",
    "FrameLabeler",
    "StreamSpec",
    "build_extractor",
    "register",
    "warp_error",
    "warp_previous",
]
