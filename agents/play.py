"""Human play in a pygame window: `spokester play`.

Left/right arrows or A/D change lanes (one lane per key press), R restarts, Esc or closing the window quits.
Views: `cube` (the game's own picture), `neural` (the renderer's painting; the default when a renderer
checkpoint is available) and `both` (cube | neural | inverse depth | flow, side by side). A HUD shows the
distance, the speed and the frames per second. The env ends an episode at a crash; the window then holds the
picture for a moment (`crash_pause_s`) and starts a new ride.

The game advances at its own fps in this loop and never waits for the network: neural frames are painted by
a `ThreadedPainter` worker, which receives each framelet's depth and flow and drops framelets when it falls
behind, and the window shows the newest painted frame. `play_loop` takes scripted key presses and a frame
limit, so it runs headless (`SDL_VIDEODRIVER=dummy`) in tests.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from spokester_agents.envs import ENV_ID, PICTURE_SIZE
from spokester_agents.heuristic import KEEP, LEFT, RIGHT
from spokester_agents.painter import FrameletPainter, ThreadedPainter, checkpoint_available, game_setting
from spokester_env import depth_to_rgb, flow_to_rgb

__all__ = ["PlayConfig", "PlayStats", "play", "play_loop"]

PANEL = 384
"""Default on-screen side of one picture, px (the image is scaled by a whole factor towards it)."""


@dataclass(frozen=True)
class PlayConfig:
    """A play session."""

    view: str | None = None
    """`cube`, `neural` or `both`; None = `neural` when a renderer checkpoint is available, else `cube`."""
    checkpoint: str | None = None
    """Renderer checkpoint (None = the shipped default)."""
    size: int | None = None
    """Game image side, px; None = `PICTURE_SIZE`, or the renderer's size when neural frames are shown."""
    scale: int | None = None
    """Window pixels per image pixel; None = towards a 384 px picture."""
    seed: int | None = None
    """Seed of the first ride (each restart adds one); None = unseeded."""
    render_steps: int | None = None
    """Renderer Euler steps per framelet (None = the checkpoint's, `load_renderer(...).num_steps`)."""
    look: str | None = None
    """The footage's look the renderer paints (None = the checkpoint's, `load_renderer(...).look`)."""
    device: str = "cpu"
    """Where the renderer runs: "cpu", or "cuda" (bf16, CUDA-graph replay)."""
    camera: str | None = None
    """Game camera preset; None = the renderer's (`load_renderer(...).game`) with a neural view, else "follow"."""
    scene: str | None = None
    """Game scene preset; None = the renderer's with a neural view, else "city"."""
    max_frames: int | None = None
    """Quit after this many loop frames (tests, demos); None = until Esc."""
    realtime: bool = True
    """Hold the game's fps; False runs as fast as possible (tests)."""
    crash_pause_s: float = 1.0
    """How long the picture stays after a crash before the next ride, s."""


@dataclass
class PlayStats:
    """What happened in a session (for tests and the closing line)."""

    frames: int = 0
    """Loop frames shown."""
    seconds: float = 0.0
    lanes: list[int] = field(default_factory=list)
    """The rider's lane after each game step."""
    rides: list[float] = field(default_factory=list)
    """Distance of each finished ride, m."""
    crashes: int = 0
    painted: int = 0
    """Neural frames painted by the worker."""
    dropped: int = 0
    """Framelets the worker skipped to keep up."""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _keys():
    import pygame

    return {pygame.K_LEFT: LEFT, pygame.K_a: LEFT, pygame.K_RIGHT: RIGHT, pygame.K_d: RIGHT}


class _Screen:
    """The window: lays out the panels of a view and draws the HUD."""

    def __init__(self, view: str, size: int, scale: int, neural: bool):
        import pygame

        self.pygame = pygame
        self.view, self.scale = view, scale
        self.panels = {"cube": ["cube"], "neural": ["neural"]}.get(view) or (
            ["cube", "neural", "depth", "flow"] if neural else ["cube", "depth", "flow"]
        )
        side = size * scale
        pygame.display.set_caption("Spokester")
        self.surface = pygame.display.set_mode((side * len(self.panels), side))
        self.side = side
        self.font = pygame.font.Font(None, max(18, side // 14))

    def draw(self, obs: dict, neural: np.ndarray | None, hud: list[str], banner: str | None) -> None:
        pg = self.pygame
        pictures = {
            "cube": lambda: obs["rgb"],
            "neural": lambda: neural if neural is not None else np.zeros_like(obs["rgb"]),
            "depth": lambda: depth_to_rgb(obs["depth"]),
            "flow": lambda: flow_to_rgb(obs["flow"]),
        }
        for i, name in enumerate(self.panels):
            picture = np.repeat(np.repeat(pictures[name](), self.scale, 0), self.scale, 1)
            self.surface.blit(pg.surfarray.make_surface(picture.swapaxes(0, 1)), (i * self.side, 0))
        for row, text in enumerate(hud):
            self._text(text, (8, 6 + row * self.font.get_linesize()))
        if banner:
            label = self.font.render(banner, True, (255, 230, 90))
            self.surface.blit(label, label.get_rect(center=(self.surface.get_width() // 2, self.side // 2)))
        pg.display.flip()

    def _text(self, text: str, at: tuple[int, int]) -> None:
        shadow = self.font.render(text, True, (0, 0, 0))
        self.surface.blit(shadow, (at[0] + 1, at[1] + 1))
        self.surface.blit(self.font.render(text, True, (255, 255, 255)), at)


def _resolve_view(config: PlayConfig) -> str:
    if config.view is not None:
        if config.view not in ("cube", "neural", "both"):
            raise ValueError(f"view={config.view!r} is not one of ('cube', 'neural', 'both')")
        return config.view
    return "neural" if _painted(config) else "cube"


def _painted(config: PlayConfig) -> bool:
    """Whether neural frames are wanted: a renderer was named (a missing one is then an error), or the shipped
    default exists (without one, `play` falls back to the cube view)."""
    return config.checkpoint is not None or checkpoint_available(None)


def play_loop(config: PlayConfig, script: dict[int, list[int]] | None = None) -> PlayStats:
    """Run the window until Esc, a window close or `config.max_frames`; `script` maps a loop frame index to
    pygame key codes pressed at that frame (posted as KEYDOWN events, so they take the keyboard's path)."""
    import pygame

    view = _resolve_view(config)
    painter = None
    if view == "neural" or (view == "both" and _painted(config)):
        painter = FrameletPainter(
            config.checkpoint,
            num_steps=config.render_steps,
            device=config.device,
            camera=config.camera,
            look=config.look,
        )
        painter = ThreadedPainter(painter)
    size = painter.painter.size if painter is not None else (config.size or PICTURE_SIZE)
    if painter is not None and config.size is not None and config.size != size:
        painter.close()
        raise ValueError(f"--size {config.size}: the renderer paints {size} px frames")
    game = game_setting(config.camera, config.scene, painter.painter if painter is not None else None)
    wanted = painter.painter.inputs if painter is not None else ()
    observations = ("depth", "flow", "rgb") + (("cars",) if "cars" in wanted else ())
    env = gym.make(ENV_ID, width=size, height=size, observations=observations, **game)
    fps = float(env.metadata["render_fps"])
    scale = config.scale or max(1, PANEL // size)
    pygame.display.init()  # not pygame.init(): no audio wanted (and none on headless machines)
    pygame.font.init()
    stats, keys = PlayStats(), _keys()
    try:
        screen = _Screen(view, size, scale, neural=painter is not None)
        clock = pygame.time.Clock()
        seed = config.seed
        obs, info = env.reset(seed=seed)
        if painter is not None:
            painter.reset(obs, seed)
        queued: deque[int] = deque()
        pause, banner = 0, None
        times: deque[float] = deque(maxlen=int(fps))
        start = time.perf_counter()
        running = True
        while running and (config.max_frames is None or stats.frames < config.max_frames):
            for key in (script or {}).get(stats.frames, []):
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
            restart = False
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    running = False
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                    restart = True
                elif event.type == pygame.KEYDOWN and event.key in keys:
                    queued.append(keys[event.key])
            if not running:
                break
            if pause > 0:  # holding the picture after a crash
                pause -= 1
                restart = restart or pause == 0
                queued.clear()
            elif not restart:
                obs, _, terminated, truncated, info = env.step(queued.popleft() if queued else KEEP)
                stats.lanes.append(info["lane"])
                if painter is not None:
                    painter.submit(obs)
                if terminated or truncated:
                    stats.rides.append(info["distance"])
                    stats.crashes += int(info["crashed"])
                    banner = f"crashed at {info['distance']:.0f} m" if info["crashed"] else "time's up"
                    pause = max(1, round(config.crash_pause_s * fps))
            if restart:
                if pause == 0 and banner is None:
                    stats.rides.append(info["distance"])
                seed = None if seed is None else seed + 1
                obs, info = env.reset(seed=seed)
                if painter is not None:
                    painter.reset(obs, seed)
                queued.clear()
                pause, banner = 0, None
            times.append(time.perf_counter())
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            hud = [f"{info['distance']:7.1f} m", f"{info['speed'] * 3.6:5.1f} km/h", f"{rate:5.1f} frames/s"]
            if painter is not None and painter.error is not None:
                hud.append(f"renderer failed: {painter.error}")
            screen.draw(obs, painter.latest() if painter is not None else None, hud, banner)
            stats.frames += 1
            if config.realtime:
                clock.tick(fps)
        stats.seconds = time.perf_counter() - start
    finally:
        if painter is not None:
            stats.painted, stats.dropped = painter.painted, painter.dropped
            painter.close()
        env.close()
        pygame.quit()
    return stats


def play(config: PlayConfig) -> PlayStats:
    """`spokester play`: the window, then one closing line."""
    if os.environ.get("SDL_VIDEODRIVER") != "dummy" and not os.environ.get("DISPLAY") and os.name == "posix":
        if not os.environ.get("WAYLAND_DISPLAY") and os.uname().sysname == "Linux":
            raise ValueError("no display to open a window on (set SDL_VIDEODRIVER=dummy to run headless)")
    stats = play_loop(config)
    rides = ", ".join(f"{d:.0f} m" for d in stats.rides) or "none finished"
    print(f"{stats.frames} frames at {stats.fps:.1f} frames/s; rides: {rides}")
    return stats
