"""Pure game logic: the rider's motion, the traffic and the open lane. No geometry, no rendering.

Everything is seeded through an injected `np.random.Generator`; a step depends only on the state and the
action. Time is the fixed frame period `dt` — never the wall clock.

The open lane. Because the riding speed depends on time alone (v = v0 + a t, whatever the player does),
the moment at which the rider will pass a newly spawned car is known when it spawns. The game keeps a
schedule of open lanes over future time — one lane at a time, two during each hand-over of length
`open_overlap` — and only spawns a car in a lane that is not open at any moment of its passing (with a
margin). Each hand-over moves the open lane to a neighbouring lane (one of the two, at random, away from
the road's edges). A rider who sits in the open lane, and moves to the next one during each hand-over,
never meets a car: every run is survivable by perfect play. Any number of lanes from two works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .config import GameConfig


@dataclass
class Rider:
    """Lateral state of the rider; its position along the road is `GameState.distance`."""

    x: float = 0.0
    """Lateral position, m (the centre of the road is 0)."""
    vx: float = 0.0
    target_lane: int = 0
    """The lane the rider is in or heading to (`GameConfig.start_lane` at reset)."""
    kick_dir: float = 0.0
    """Direction of the current counter-steer kick (-1, 0, +1)."""
    kick_age: float = 0.0
    """Time since the current kick started, s."""


@dataclass
class Traffic:
    """A fixed pool of cars, structure-of-arrays. Inactive slots are parked off-stage by the scene."""

    active: np.ndarray
    lane: np.ndarray
    y: np.ndarray
    """Car centre along the road, m (world coordinates)."""
    speed: np.ndarray

    @classmethod
    def empty(cls, capacity: int) -> Traffic:
        return cls(
            active=np.zeros(capacity, bool),
            lane=np.zeros(capacity, np.int64),
            y=np.zeros(capacity, np.float64),
            speed=np.zeros(capacity, np.float64),
        )


@dataclass
class GameState:
    """Everything that evolves; `copy()`-free by design — the env owns exactly one."""

    time: float = 0.0
    distance: float = 0.0
    """Rider position along the road = metres travelled since reset."""
    rider: Rider = field(default_factory=Rider)
    traffic: Traffic = field(default_factory=lambda: Traffic.empty(0))
    open_segments: list[tuple[float, float, int]] = field(default_factory=list)
    """Open-lane schedule: (start time, end time, lane); consecutive segments overlap."""
    next_spawn_distance: float = 0.0
    """Riding distance at which the next spawn attempt happens."""
    last_lane_spawn_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per lane (num_lanes,): where the lane's latest car spawned, m (-inf: none yet)."""
    last_lane_speed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per lane (num_lanes,): the speed of the lane's latest car, m/s."""


class Game:
    """The rules. `reset(rng)` starts a run; `step(action)` advances one frame of `dt` seconds."""

    def __init__(self, config: GameConfig, dt: float) -> None:
        self.config = config
        self.dt = dt
        self.state = self._start_state(open_segments=[])
        self.rng = np.random.default_rng(0)

    # --- kinematics of the road -------------------------------------------------------------------------

    def speed_at(self, time: float) -> float:
        """Riding speed at a time since reset, m/s."""
        return self.config.start_speed + self.config.acceleration * time

    def distance_at(self, time: float) -> float:
        """Metres travelled at a time since reset (exact integral of `speed_at`)."""
        return self.config.start_speed * time + 0.5 * self.config.acceleration * time * time

    @property
    def speed(self) -> float:
        return self.speed_at(self.state.time)

    def _time_to_close(self, gap: float, car_speed: float) -> float:
        """Time from now until the rider has gained `gap` metres on a car of constant speed, s."""
        rel = self.speed - car_speed
        a = self.config.acceleration
        if a == 0:
            return gap / rel
        return (math.sqrt(rel * rel + 2 * a * gap) - rel) / a

    # --- the open lane ----------------------------------------------------------------------------------

    def _extend_schedule(self, until: float) -> None:
        segs = self.state.open_segments
        cfg = self.config
        while segs[-1][1] < until + cfg.open_overlap:
            start = segs[-1][1] - cfg.open_overlap
            lane = segs[-1][2]
            neighbours = [n for n in (lane - 1, lane + 1) if 0 <= n < cfg.num_lanes]
            nxt = neighbours[0] if len(neighbours) == 1 else int(self.rng.choice(neighbours))
            segs.append((start, start + float(self.rng.uniform(*cfg.open_duration)), nxt))

    def open_lanes(self, time: float) -> set[int]:
        """The lanes kept free of cars at a time since reset."""
        self._extend_schedule(time)
        return {lane for start, end, lane in self.state.open_segments if start <= time < end}

    def open_lane_target(self, time: float) -> int:
        """The lane a perfect player should be heading to at `time`: the newest open lane."""
        self._extend_schedule(time)
        started = [seg for seg in self.state.open_segments if seg[0] <= time]
        return started[-1][2]

    def _lane_open_during(self, lane: int, t0: float, t1: float) -> bool:
        self._extend_schedule(t1)
        return any(ln == lane and s < t1 and e > t0 for s, e, ln in self.state.open_segments)

    # --- traffic ----------------------------------------------------------------------------------------

    def _try_spawn(self, ahead: float) -> None:
        """Try to place one car `ahead` metres in front of the rider."""
        cfg, st = self.config, self.state
        free = np.flatnonzero(~st.traffic.active)
        if free.size == 0:
            return
        y = st.distance + ahead
        speed = self.speed * float(self.rng.uniform(*cfg.car_speed_fraction))
        reach = cfg.car_half_extents[2] + cfg.rider_half_extents[2]
        allowed = []
        for lane in range(cfg.num_lanes):
            if y - st.last_lane_spawn_y[lane] < cfg.same_lane_gap:
                continue
            lane_speed = max(speed, st.last_lane_speed[lane])  # never catch up with the car ahead
            t_enter = st.time + self._time_to_close(ahead - reach, lane_speed) - cfg.open_margin
            t_exit = st.time + self._time_to_close(ahead + reach, lane_speed) + cfg.open_margin
            if not self._lane_open_during(lane, t_enter, t_exit):
                allowed.append((lane, lane_speed))
        if not allowed:
            return
        lane, lane_speed = allowed[int(self.rng.integers(len(allowed)))]
        slot = int(free[0])
        tr = st.traffic
        tr.active[slot], tr.lane[slot], tr.y[slot], tr.speed[slot] = True, lane, y, lane_speed
        st.last_lane_spawn_y[lane] = y
        st.last_lane_speed[lane] = lane_speed

    # --- the two entry points ---------------------------------------------------------------------------

    def _start_state(self, open_segments: list[tuple[float, float, int]]) -> GameState:
        """The state at time 0: the rider at rest in the middle lane's centre, no cars yet."""
        cfg = self.config
        return GameState(
            rider=Rider(x=cfg.lane_x(cfg.start_lane), target_lane=cfg.start_lane),
            traffic=Traffic.empty(cfg.max_cars),
            open_segments=open_segments,
            last_lane_spawn_y=np.full(cfg.num_lanes, -np.inf),
            last_lane_speed=np.zeros(cfg.num_lanes),
        )

    def reset(self, rng: np.random.Generator) -> None:
        """Start a run: rider in the middle lane, road pre-filled with traffic, a fresh open-lane schedule."""
        cfg = self.config
        self.rng = rng
        first = int(rng.integers(cfg.num_lanes))
        self.state = self._start_state([(-cfg.open_overlap, float(rng.uniform(*cfg.open_duration)), first)])
        ahead = cfg.first_car_distance
        while ahead < cfg.spawn_distance:
            self._try_spawn(ahead)
            ahead += float(rng.uniform(*cfg.spawn_gap))
        self.state.next_spawn_distance = ahead - cfg.spawn_distance

    def step(self, action: int) -> float:
        """Advance one frame; returns the metres travelled during it."""
        cfg, st, dt = self.config, self.state, self.dt
        rider = st.rider
        if action != 0:
            new = min(max(rider.target_lane + (-1 if action == 1 else 1), 0), cfg.num_lanes - 1)
            if new != rider.target_lane:
                rider.kick_dir = -1.0 if new > rider.target_lane else 1.0  # counter-steer: away from it
                rider.kick_age = 0.0
                rider.target_lane = new

        # Lateral spring-damper with the decaying kick, semi-implicit Euler in substeps.
        k = min(cfg.steer_stiffness + cfg.steer_stiffness_per_speed * self.speed, cfg.steer_stiffness_max)
        c = 2.0 * cfg.steer_damping_ratio * math.sqrt(k)
        target_x = cfg.lane_x(rider.target_lane)
        h = dt / cfg.physics_substeps
        kick_peak = cfg.kick_strength * k * cfg.lane_width
        for _ in range(cfg.physics_substeps):
            kick = rider.kick_dir * kick_peak * math.exp(-rider.kick_age / cfg.kick_decay)
            rider.vx += (k * (target_x - rider.x) - c * rider.vx + kick) * h
            rider.x += rider.vx * h
            rider.kick_age += h

        # Along the road: exact integrals of the constant-acceleration speed.
        before = st.distance
        st.time += dt
        st.distance = self.distance_at(st.time)
        travelled = st.distance - before
        tr = st.traffic
        tr.y[tr.active] += tr.speed[tr.active] * dt

        # Cars that fell behind the camera leave; new ones appear ahead every few metres.
        behind = st.distance - cfg.camera.behind - 2 * cfg.car_half_extents[2] - 5.0
        tr.active &= tr.y > behind
        if len(st.open_segments) > 8:  # forget hand-overs that are long past
            st.open_segments = [seg for seg in st.open_segments if seg[1] > st.time - 1.0]
        st.next_spawn_distance -= travelled
        while st.next_spawn_distance <= 0:
            self._try_spawn(cfg.spawn_distance + st.next_spawn_distance)
            st.next_spawn_distance += float(self.rng.uniform(*cfg.spawn_gap))
        return travelled

    def clearance(self) -> np.ndarray:
        """Free road ahead of the rider in each lane, m: from the rider's front to the nearest car's back
        (negative while a car is alongside; inf when the lane is empty up to the horizon)."""
        cfg, st = self.config, self.state
        tr = st.traffic
        front = st.distance + cfg.rider_half_extents[2]
        gaps = tr.y - cfg.car_half_extents[2] - front
        out = np.full(cfg.num_lanes, np.inf)
        alongside = cfg.car_half_extents[2] * 2 + cfg.rider_half_extents[2] * 2
        for lane in range(cfg.num_lanes):
            g = gaps[tr.active & (tr.lane == lane) & (gaps > -alongside)]
            if g.size:
                out[lane] = g.min()
        return out

    @property
    def lane(self) -> int:
        """The lane the rider is in or heading to."""
        return self.state.rider.target_lane
