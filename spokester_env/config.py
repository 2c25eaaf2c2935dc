"""The game's rules and the camera rig as frozen dataclasses: the one home of every game constant.

Axes (pybullet's, right-handed): x across the road (right positive), y along the road (the riding
direction), z up. Box sizes are half-extents written (across, up, along) in metres, the order the seed
used; `scene.py` maps them to pybullet's (x, y, z) = (across, along, up).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

ENV_ID = "Spokester-v0"
"""The id `import spokester_env` registers with Gymnasium: `gym.make(ENV_ID)`."""
DEFAULT_IMAGE_SIZE = 320
"""Default width and height of the env's images, px (the size the base neural renderer paints)."""

ACTION_MEANINGS = ("keep lane", "move one lane left", "move one lane right")
"""Meaning of each `Discrete(3)` action; the index is the action."""
KEEP_LANE = 0
"""The action that changes nothing."""


def _is_number(value) -> bool:
    """A finite real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_fields(config) -> None:
    """Every field of a config dataclass holds a value of its default's kind: a finite number, an integer, or
    a tuple of as many finite numbers (a list is taken as the tuple); one ValueError naming the field."""
    name = type(config).__name__
    for item in dataclasses.fields(config):
        value, default = getattr(config, item.name), item.default
        if isinstance(default, tuple):
            if not isinstance(value, (tuple, list)) or len(value) != len(default) or not all(map(_is_number, value)):
                raise ValueError(f"{name}.{item.name} must be {len(default)} finite numbers, got {value!r}")
            object.__setattr__(config, item.name, tuple(value))
        elif isinstance(default, int):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(f"{name}.{item.name} must be an integer, got {value!r}")
        elif isinstance(default, float) and not _is_number(value):
            raise ValueError(f"{name}.{item.name} must be a finite number, got {value!r}")


def frame_actions(action: int, frames: int) -> list[int]:
    """How one decision plays over `frames` game frames: the action on the first frame, "keep lane" after.

    A move is an impulse: every frame that plays "move one lane right" moves the rider's target one lane
    further, so holding a move for a repeated step would cross two lanes in two frames. Wrappers that
    decide once per several frames (`ActionRepeat`, the neural renderer's framelets, recordings in lockstep
    with them) play each decision through this (most through `spokester_env.play_decision`), so that one
    decision moves at most one lane.
    """
    return [int(action)] + [KEEP_LANE] * (frames - 1)


@dataclass(frozen=True)
class CameraConfig:
    """The camera rig (it follows the rider with lag) and its pinhole model; the defaults are the seed's
    over-the-shoulder follow camera, `CAMERA_PRESETS["follow"]`."""

    height: float = 1.8
    """Eye height above the ground, m."""
    behind: float = 4.8
    """Eye distance behind the rider's centre, m (negative: ahead of it, as a camera on the rider's head)."""
    look_ahead: float = 5.0
    """The camera looks at a point this far ahead of the rider, m."""
    look_height: float = 0.6
    """Height of the look-at point, m (below the eye, so the camera pitches down a little)."""
    eye_lag: float = 0.18
    """Time constant of the eye's exponential follow of the rider's x, s (0 = rigid)."""
    target_lag: float = 0.08
    """Time constant of the look-at point's follow, s; shorter than the eye's, so the camera yaws into turns."""
    fov: float = 60.0
    """Vertical field of view, degrees (pixels are square)."""
    near: float = 0.1
    """Near clipping distance, m: inverse depth never exceeds 1 / near."""
    far: float = 200.0
    """Far clipping distance, m: geometry beyond it reads as sky."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if not 0 < self.fov < 180:
            raise ValueError(f"CameraConfig.fov must lie in (0, 180) degrees, got {self.fov!r}")
        if not 0 < self.near < self.far:
            raise ValueError(f"CameraConfig.near and far must satisfy 0 < near < far, got {(self.near, self.far)}")
        for name in ("eye_lag", "target_lag"):
            if getattr(self, name) < 0:
                raise ValueError(f"CameraConfig.{name} must be >= 0 (0 = rigid), got {getattr(self, name)!r}")


CAMERA_PRESETS: dict[str, CameraConfig] = {
    "follow": CameraConfig(),
    "first_person": CameraConfig(
        height=1.5, behind=-0.6, look_ahead=20.0, look_height=2.9, eye_lag=0.0, target_lag=0.05
    ),
}
"""Named camera rigs: "follow", the seed's over-the-shoulder view of the rider (the default); "first_person",
the eye at the rider's head (1.5 m up, just in front of the rider's box, so the box is out of view) looking
down the road as a dashcam or a helmet camera does, pitched up 4 degrees (the shipped footage's horizon sits
about 6 % of the picture below its centre), rigidly on the rider's lateral position, its look-at point
lagging 50 ms (a slight yaw into lane changes). The shipped footage is all first-person; the numbers were
chosen with `python -m spokester_train.data.condition_gap`."""
DEFAULT_CAMERA = "follow"
"""The camera preset of `SpokesterEnv` and `GameConfig` unless told otherwise."""


def camera_config(camera: str | CameraConfig) -> CameraConfig:
    """A camera rig from a preset name or a `CameraConfig`; an unknown name is a one-line error listing
    the presets."""
    if isinstance(camera, CameraConfig):
        return camera
    if not isinstance(camera, str):
        raise TypeError(f"camera={camera!r}: pass a preset name ({', '.join(CAMERA_PRESETS)}) or a CameraConfig")
    if camera not in CAMERA_PRESETS:
        raise ValueError(f"camera={camera!r}: choose one of {', '.join(CAMERA_PRESETS)} or pass a CameraConfig")
    return CAMERA_PRESETS[camera]


def camera_name(camera: CameraConfig) -> str | None:
    """The name of the preset equal to `camera`, or None for a custom rig."""
    return next((name for name, preset in CAMERA_PRESETS.items() if preset == camera), None)


@dataclass(frozen=True)
class GameConfig:
    """Rules of the Spokester game (the seed's play settings by default)."""

    # Road and bodies.
    lane_width: float = 2.5
    """Distance between lane centres, m; the lanes are centred on x = 0 (`lane_x`): x = -w, 0, +w for three."""
    num_lanes: int = 3
    """Number of lanes (>= 2), numbered 0 (left) to num_lanes - 1 (right); the rider starts in `start_lane`."""
    rider_half_extents: tuple[float, float, float] = (0.17, 0.65, 0.5)
    """Rider box (across, up, along), m."""
    car_half_extents: tuple[float, float, float] = (1.1, 0.55, 2.0)
    """Car body box (across, up, along), m."""
    roof_half_extents: tuple[float, float, float] = (0.7, 0.4, 1.0)
    """Car roof box (across, up, along), m, resting on the body."""
    building_half_extents: tuple[float, float, float] = (10.0, 30.0, 10.0)
    """Building box (across, up, along), m."""
    building_setback: float = 15.0
    """Gap between the road's edge and a building's street face, m."""
    building_spacing: float = 25.0
    """Distance between consecutive building centres along the road, m."""

    # Speed.
    start_speed: float = 5.0
    """Riding speed at reset, m/s."""
    acceleration: float = 0.2
    """Speed gain per second, m/s^2; the speed grows without bound until a crash."""

    # Lateral motion: spring-damper towards the target lane plus a decaying counter-steer kick.
    steer_stiffness: float = 30.0
    """Spring constant at zero speed, 1/s^2."""
    steer_stiffness_per_speed: float = 2.0
    """Extra stiffness per m/s of riding speed, 1/s^2 per m/s (turns get snappier as you go faster)."""
    steer_stiffness_max: float = 400.0
    """Cap on the stiffness, 1/s^2, so the integration stays stable at any speed."""
    steer_damping_ratio: float = 0.9
    """Damping ratio of the spring-damper (1 = critical)."""
    kick_strength: float = 1.5
    """Counter-steer kick at the start of a lane change, pointing away from the new lane, as a multiple of
    the spring's initial pull (> 1: the rider first drifts away, as a bicycle does when it leans in)."""
    kick_decay: float = 0.05
    """Time constant of the kick's exponential decay, s."""
    physics_substeps: int = 4
    """Integration substeps per frame for the lateral motion."""

    # Traffic.
    spawn_distance: float = 100.0
    """Cars appear this far ahead of the rider, m."""
    first_car_distance: float = 30.0
    """At reset the road is filled with cars from this distance up to `spawn_distance`, m."""
    spawn_gap: tuple[float, float] = (6.0, 16.0)
    """Riding distance between spawn attempts, m (uniform)."""
    same_lane_gap: float = 10.0
    """Minimum distance between a new car and the previous car of its lane, m."""
    car_speed_fraction: tuple[float, float] = (0.2, 0.5)
    """A new car's speed as a fraction of the rider's speed at that moment (uniform); always slower."""
    max_cars: int = 16
    """Size of the car pool (bodies are created once and reused); a spawn is skipped while it is full."""

    # The open lane.
    open_duration: tuple[float, float] = (3.0, 8.0)
    """How long one lane stays the open lane, s (uniform)."""
    open_overlap: float = 1.5
    """When the open lane moves to a neighbour, both stay open this long, s: time to change lanes."""
    open_margin: float = 0.4
    """Extra time kept clear before and after a car is passed in an open lane, s."""

    camera: CameraConfig = field(default_factory=CameraConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.num_lanes, int) or isinstance(self.num_lanes, bool) or self.num_lanes < 2:
            raise ValueError(f"GameConfig.num_lanes must be an integer >= 2, got {self.num_lanes!r}")
        if not isinstance(self.camera, CameraConfig):
            raise TypeError(f"GameConfig.camera must be a CameraConfig (see CAMERA_PRESETS), got {self.camera!r}")
        _check_fields(self)
        positive = ("lane_width", "start_speed", "spawn_distance", "building_spacing", "open_overlap", "kick_decay")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"GameConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("rider_half_extents", "car_half_extents", "roof_half_extents", "building_half_extents"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"GameConfig.{name} must be 3 numbers > 0, got {getattr(self, name)}")
        for name in ("acceleration", "steer_stiffness", "steer_stiffness_per_speed", "steer_damping_ratio", "max_cars"):
            if getattr(self, name) < 0:
                raise ValueError(f"GameConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.physics_substeps < 1:
            raise ValueError(f"GameConfig.physics_substeps must be >= 1, got {self.physics_substeps}")
        lo, hi = self.car_speed_fraction
        if not 0 <= lo <= hi < 1:
            raise ValueError(f"GameConfig.car_speed_fraction must satisfy 0 <= lo <= hi < 1, got {(lo, hi)}")
        for name in ("spawn_gap", "open_duration"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"GameConfig.{name} must satisfy 0 < lo <= hi, got {(lo, hi)}")

    def lane_x(self, lane: int) -> float:
        """The x of a lane's centre, m (lane 0 is the left one)."""
        return (lane - (self.num_lanes - 1) / 2) * self.lane_width

    @property
    def start_lane(self) -> int:
        """The lane the rider starts in: the middle one (of two middle lanes, the left one)."""
        return (self.num_lanes - 1) // 2

    @property
    def road_half_width(self) -> float:
        """Distance from the road's centre to its edge, m."""
        return self.num_lanes * self.lane_width / 2


SCENE_PRESETS: dict[str, dict] = {
    "city": {},
    "open": {"building_half_extents": (2.5, 5.0, 3.0), "building_setback": 6.0, "building_spacing": 18.0},
}
"""Named roadside scenes, as the `GameConfig` fields they change: "city" (the default, the seed's look: rows of
60 m walls 15 m from the road) and "open" (rows of boxes 10 m tall and 6 m wide, 6 m from the road and
18 m apart, with sky between and above them: the size and spacing of the trees and low buildings beside
the roads of the shipped footage, chosen with `python -m spokester_train.data.condition_gap`)."""
DEFAULT_SCENE = "city"
"""The scene preset of `SpokesterEnv` and `GameConfig` unless told otherwise."""


def with_scene(config: GameConfig, scene: str) -> GameConfig:
    """`config` with a scene preset's fields; an unknown name is a one-line error listing the presets."""
    if not isinstance(scene, str):
        raise TypeError(f"scene={scene!r}: pass a preset name ({', '.join(SCENE_PRESETS)})")
    if scene not in SCENE_PRESETS:
        raise ValueError(f"scene={scene!r}: choose one of {', '.join(SCENE_PRESETS)}")
    city = GameConfig()
    fields = {name: getattr(city, name) for changes in SCENE_PRESETS.values() for name in changes}
    return dataclasses.replace(config, **(fields | SCENE_PRESETS[scene]))


def scene_name(config: GameConfig) -> str | None:
    """The name of the scene preset whose fields `config` has, or None for a custom scene."""
    return next((name for name in SCENE_PRESETS if with_scene(config, name) == config), None)
