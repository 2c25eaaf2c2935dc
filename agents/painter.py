"""Neural frames for a game played one frame at a time: `FrameletPainter`, and `ThreadedPainter` for play.

The renderer paints a framelet of F (= `patch_frames`) frames at once from their depth and flow (and their car
mask, for a renderer that wants one), so a game that steps frame by frame hands the painter each frame's
observation and gets F neural frames back every F frames. The reset frame is painted as a framelet of F copies
of itself (as `NeuralRenderObservation` does); an episode that ends inside a framelet is finished by `flush()`,
which repeats the last frame's observation and keeps only the frames that happened.

`ThreadedPainter` runs a `FrameletPainter` in a worker thread so a window's input loop never waits for the
network: framelets are queued, and when the painter falls behind, whole framelets are dropped and the next
one is painted as if it followed (the renderer's context skips a beat; the game never slows down).
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from pathlib import Path

import numpy as np

from spokester_env import pad_frames

__all__ = ["FrameletPainter", "ThreadedPainter", "checkpoint_available", "game_setting"]


def checkpoint_available(checkpoint: str | os.PathLike | None) -> bool:
    """Whether a renderer checkpoint can be found (None = the shipped default)."""
    from neural_render.checkpoint import DEFAULT_CHECKPOINT, checkpoint_paths

    weights, _ = checkpoint_paths(DEFAULT_CHECKPOINT if checkpoint is None else Path(checkpoint))
    return weights.is_file()


def game_setting(camera: str | None, scene: str | None, painter: FrameletPainter | None) -> dict[str, str]:
    """The env's camera and scene: those given, else the renderer's (with a painter), else the defaults; a
    warning says when a given one is not the renderer's."""
    from spokester_env import DEFAULT_CAMERA, DEFAULT_SCENE

    own = painter.game if painter is not None else {"camera": DEFAULT_CAMERA, "scene": DEFAULT_SCENE}
    chosen = {"camera": camera or own["camera"], "scene": scene or own["scene"]}
    if painter is not None and chosen != own:
        warnings.warn(
            f"the renderer {painter.path} was made for the {own['camera']} camera in the {own['scene']} scene; "
            f"the game uses the {chosen['camera']} camera in the {chosen['scene']} scene",
            UserWarning,
            stacklevel=2,
        )
    return chosen


class FrameletPainter:
    """Paints neural frames of one stream from per-frame observations: depth (S, S, 1) and flow (S, S, 2), and the
    car mask "cars" (S, S, 1) for a renderer that wants it (`inputs` names what it reads)."""

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        num_steps: int | None = None,
        window: int = 3,
        device="cpu",
        camera: str | None = None,
        look: str | None = None,
    ):
        """`camera`: the preset the game is seen with (None = the renderer's own, `self.game["camera"]`); its
        depth and flow are normalised with that camera's statistics where the checkpoint has them.
        `num_steps`, `look`: Euler steps per framelet and the footage's look to paint (None = the checkpoint's,
        `load_renderer(...).num_steps` and `.look`)."""
        import torch

        from neural_render import StreamingRenderer, load_renderer
        from neural_render.wrapper import painted_from

        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: no CUDA device is available here; use cpu")
        loaded = load_renderer(checkpoint, device=device)
        self.path = loaded.path
        self.checkpoint_id = loaded.checkpoint_id
        self.game = loaded.game
        self.renderer = StreamingRenderer(  # on a GPU each framelet replays one captured CUDA graph
            loaded.model,
            stats=loaded.stats,
            source=loaded.game_source(camera or loaded.game["camera"]),
            num_steps=loaded.steps(num_steps),
            window=window,
            device=device,
            cuda_graph=device.type == "cuda",
            look=loaded.look_for(look),
        )
        self.size = loaded.model.config.image_size
        self.patch = loaded.model.config.patch_size
        self.frames = loaded.model.config.patch_frames
        self._shapes = painted_from(loaded.model.config)
        self.inputs = tuple(self._shapes)
        self._pushed: list[dict[str, np.ndarray]] = []

    def reset(self, observation: dict, seed: int | None = None) -> np.ndarray:
        """Start a stream at the reset frame's observation; returns its neural frame (S, S, 3) uint8."""
        frame = self._take(observation)
        self.renderer.reset(seed)
        self._pushed = []
        return self.renderer.step(**{key: np.stack([value] * self.frames) for key, value in frame.items()})[-1]

    def push(self, observation: dict) -> np.ndarray:
        """Add one frame; returns the painted frames (F, S, S, 3) once a framelet is full, else (0, S, S, 3)."""
        self._pushed.append(self._take(observation))
        if len(self._pushed) < self.frames:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return self.flush()

    def flush(self) -> np.ndarray:
        """Paint the frames pushed since the last framelet (padding with the last one); (k, S, S, 3)."""
        k = len(self._pushed)
        if k == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        padded, self._pushed = pad_frames(self._pushed, self.frames), []
        return self.renderer.step(**{key: np.stack([frame[key] for frame in padded]) for key in self.inputs})[:k]

    def _take(self, observation: dict) -> dict[str, np.ndarray]:
        """What the renderer reads of one observation, checked: {key: (S, S, k)}."""
        missing = [key for key in self.inputs if key not in observation]
        if missing:
            raise ValueError(f"the renderer paints from {', '.join(self.inputs)}; the observation lacks {missing}")
        wrong = {key: observation[key].shape for key in self.inputs}
        if any(shape != self._shapes[key] for key, shape in wrong.items()):
            got = ", ".join(f"{key} {shape}" for key, shape in wrong.items())
            raise ValueError(f"the renderer paints {self.size}x{self.size} frames; got {got}")
        return {key: observation[key] for key in self.inputs}


class ThreadedPainter:
    """A `FrameletPainter` in a worker thread: `submit` never blocks; `latest()` is the newest painted frame."""

    def __init__(self, painter: FrameletPainter, max_pending: int = 1):
        self.painter = painter
        self._jobs: queue.Queue = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._latest: np.ndarray | None = None
        self._pending: list[dict] = []
        self._stop = False
        self.painted = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="neural-painter", daemon=True)
        self._thread.start()

    def reset(self, observation: dict, seed: int | None = None) -> None:
        """Start a new stream at the reset frame's observation (queued like a framelet; older queued work is
        dropped)."""
        self._pending = []
        self._put(("reset", observation, seed), replace=True)

    def submit(self, observation: dict) -> None:
        """Hand over one game frame's observation; a full framelet is queued, or dropped when the worker is
        behind."""
        self._pending.append(observation)
        if len(self._pending) == self.painter.frames:
            framelet, self._pending = self._pending, []
            self._put(("framelet", framelet), replace=False)

    def latest(self) -> np.ndarray | None:
        """The newest painted frame, or None before the first."""
        with self._lock:
            return self._latest

    def _put(self, job: tuple, replace: bool) -> None:
        while True:
            try:
                self._jobs.put_nowait(job)
                return
            except queue.Full:
                try:
                    dropped = self._jobs.get_nowait()
                except queue.Empty:
                    continue
                if dropped[0] == "reset" and not replace:  # a reset is never dropped for a framelet
                    self.dropped += 1
                    self._jobs.put_nowait(dropped)
                    return
                self.dropped += 1

    def _work(self) -> None:
        while not self._stop:
            try:
                job = self._jobs.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                if job[0] == "reset":
                    frames = self.painter.reset(job[1], job[2])[None]
                else:  # a full framelet: its last push paints it
                    frames = [self.painter.push(observation) for observation in job[1]][-1]
            except BaseException as error:  # shown by the window; the game goes on without neural frames
                self.error = error
                return
            with self._lock:
                self._latest = frames[-1]
                self.painted += len(frames)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5.0)
