"""Extractor interfaces and the registry that finds them by kind and name.

Three kinds of pseudo-label come out of a video, each from an extractor chosen by name:

- ``flow``: a :class:`FlowEstimator` maps pairs of square clip frames to the game's optical flow;
- ``depth`` and ``teacher``: a :class:`FrameLabeler` maps full source frames (it may look at the whole
  frame, e.g. at a depth net's training aspect) to named streams on the clip's centred square.

Letters in shape comments: ``n`` frames in a batch, ``s`` clip side, ``h``/``w`` source frame size.
A new extractor subclasses one of the two bases and is registered with ``@register(kind, name)``; the
label store extraction then accepts its name (or a ``{"name": ..., **options}`` dict, or a built instance).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spokester_train.data.video import CropBox

KINDS = ("flow", "depth", "teacher")


@dataclass(frozen=True)
class StreamSpec:
    """One array stored per frame in a label store: its per-frame shape, dtype and units.

    A quantised stream (``scale`` set) stores integer codes; its values are ``code * scale + offset``
    (e.g. an int8 network's activations, kept exactly in half the bytes of float16).
    """

    shape: tuple[int, ...]
    dtype: str
    units: str
    scale: float | None = None
    offset: float = 0.0

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored array -> its values (float32 for quantised streams, else unchanged)."""
        if self.scale is None:
            return stored
        return stored.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)


class Extractor:
    """Common part of every extractor: a kind, a registered name and the options that change its output."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def config(self) -> dict[str, Any]:
        """Everything that changes the output (JSON-able); it keys the label store, so a change re-extracts."""
        return {"name": self.name}


class FlowEstimator(Extractor):
    """Optical flow in the game's convention.

    Pixels per frame on the current frame's grid: position now minus position one frame earlier
    (x right, y down), so sampling ``previous`` at ``pixel - flow`` reproduces ``current``.
    """

    kind: ClassVar[str] = "flow"

    def __call__(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """(n, s, s, 3) uint8 twice -> (n, s, s, 2) float32."""
        raise NotImplementedError


class FrameLabeler(Extractor):
    """A per-frame network (depth, teacher features) that writes one or more named streams."""

    def streams(self, size: int) -> dict[str, StreamSpec]:
        """The streams this labeler writes for clips of side ``size``."""
        raise NotImplementedError

    def __call__(self, frames: np.ndarray, box: CropBox, size: int) -> dict[str, np.ndarray]:
        """(n, h, w, 3) uint8 full frames -> {stream: (n, *spec.shape)} for the ``box`` square."""
        raise NotImplementedError


EXTRACTORS: dict[str, dict[str, Callable[..., Extractor]]] = {kind: {} for kind in KINDS}

ExtractorSpec = str | Mapping[str, Any] | Extractor


def register(kind: str, name: str) -> Callable[[type[Extractor]], type[Extractor]]:
    """Class decorator: make an extractor buildable as ``build_extractor(kind, name, **options)``."""
    if kind not in KINDS:
        raise ValueError(f"unknown extractor kind {kind!r}; kinds are {KINDS}")

    def decorate(cls: type[Extractor]) -> type[Extractor]:
        if name in EXTRACTORS[kind]:
            raise ValueError(f"{kind} extractor {name!r} is already registered")
        cls.name = name
        EXTRACTORS[kind][name] = cls
        return cls

    return decorate


def build_extractor(kind: str, spec: ExtractorSpec, **options: Any) -> Extractor:
    """An extractor from a registered name, a ``{"name": ..., **options}`` mapping, or an instance."""
    if isinstance(spec, Extractor):
        if spec.kind != kind:
            raise ValueError(f"{type(spec).__name__} is a {spec.kind} extractor, not {kind}")
        return spec
    if isinstance(spec, Mapping):
        options = {**{k: v for k, v in spec.items() if k != "name"}, **options}
        spec = spec["name"]
    if kind not in KINDS:
        raise ValueError(f"unknown extractor kind {kind!r}; kinds are {KINDS}")
    if spec not in EXTRACTORS[kind]:
        raise ValueError(f"unknown {kind} extractor {spec!r}; registered: {sorted(EXTRACTORS[kind])}")
    return EXTRACTORS[kind][spec](**options)


def default_threads() -> int:
    """CPU threads for a network: all cores up to four."""
    return max(1, min(4, os.cpu_count() or 1))


def load_litert(path: str | os.PathLike, threads: int | None = None, preserve_all_tensors: bool = False):
    """A LiteRT interpreter for a .tflite file (allocated), with a one-line error when it cannot load."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ImportError("the tflite extractors need LiteRT: pip install ai-edge-litert") from exc
    path = Path(path)
    with warnings.catch_warnings():  # preserve_all_tensors is how one reads an intermediate tensor
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        try:
            interpreter = Interpreter(
                model_path=str(path),
                num_threads=threads or default_threads(),
                experimental_preserve_all_tensors=preserve_all_tensors,
            )
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{path}: cannot load as a TFLite model ({exc})") from exc
    interpreter.allocate_tensors()
    return interpreter


def require_local_weights(name: str, weights: str | os.PathLike | None, example: str) -> Path:
    """The local weights folder of a Hugging Face model, or an error that says how to get one."""
    if weights is None:
        raise ValueError(f"{name} needs weights=<local folder>, e.g. a download of {example}")
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such weights folder for {name}")
    return path


def require_transformers(name: str):
    """The ``transformers`` module, or a one-line error naming what to install."""
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(f"{name} needs the transformers package: pip install transformers") from exc
    return transformers
