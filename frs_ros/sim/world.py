"""Procedural tabletop / indoor scenes and their per-frame ground truth.

A ``Scene`` is the full world state over time: static surroundings, objects with poses that
may change per frame (keyframes), presence intervals (objects added/removed mid-episode),
and a camera trajectory. ``render_frame(scene, k)`` turns frame ``k`` into a ``Frame`` whose
``gt`` holds the instance map (real occlusion) and every present object's ``SimObject``.

World frame: x right, y forward (away from the camera's start), z up [m]. The support plane
of the objects (table top or floor) is z = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics, Frame
from frs_ros.masks import mask_box
from frs_ros.sim.ontology import COLORS, Category, categories_for_split, check_split
from frs_ros.sim.render import (
    Background,
    CameraPose,
    RenderObject,
    SensorModel,
    build_parts,
    place_parts,
    prim_radius,
    render,
)
from frs_ros.sim.types import SceneGroundTruth, SimObject

_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


class SceneGenerationError(RuntimeError):
    """The sampler could not build a valid scene (e.g. impossible config ranges)."""


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings.

    width, height [px], hfov_deg [deg]: pinhole camera (default ~ RealSense D435 colour).
    n_objects: (min, max) objects per scene at the start (events may add one).
    depth_range_m: (near, far) allowed optical depth of object centres [m].
    min_visible_px: an object must show at least this many pixels to be a query target or a
        counted distractor-free referent (smaller ones are 'hard to see', see queries).
    tabletop_prob: probability of a tabletop scene (else a room scene on the floor).
    held_out_prob: in the test split, probability that a scene contains held-out categories.
    queries_per_image, queries_per_episode: how many queries to try to generate.
    fps: frame rate of episodes [Hz] (frame stamps).
    base_seed: mixed into every seed, to make a whole new but reproducible world.
    """

    width: int = 320
    height: int = 240
    hfov_deg: float = 69.0
    n_objects: tuple[int, int] = (3, 10)
    depth_range_m: tuple[float, float] = (0.5, 3.0)
    min_visible_px: int = 150
    tabletop_prob: float = 0.6
    held_out_prob: float = 0.7
    queries_per_image: int = 6
    queries_per_episode: int = 6
    fps: float = 30.0
    base_seed: int = 0
    sensor: SensorModel = field(default_factory=SensorModel)

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError(f"image must be at least 32x32, got {self.width}x{self.height}")
        if not (10.0 < self.hfov_deg < 150.0):
            raise ValueError(f"hfov_deg must be in (10, 150), got {self.hfov_deg}")
        lo, hi = self.n_objects
        if not (1 <= lo <= hi <= 20):
            raise ValueError(f"n_objects must satisfy 1 <= min <= max <= 20, got {self.n_objects}")
        near, far = self.depth_range_m
        if not (0.1 <= near < far):
            raise ValueError(f"depth_range_m must be 0.1 <= near < far, got {self.depth_range_m}")

    @property
    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.from_fov(self.width, self.height, self.hfov_deg)


def make_rng(config: SimConfig, split: str, stream: int, seed: int, *extra: int) -> np.random.Generator:
    """Independent reproducible stream per (base_seed, split, stream kind, seed, extra...)."""
    check_split(split)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([config.base_seed, _SPLIT_CODE[split], stream, seed, *extra]))


def _smoothstep(s: np.ndarray | float) -> np.ndarray | float:
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


@dataclass
class WorldObject:
    """An object over a whole episode.

    dims_m: ``(3,)`` full extents in its own frame (x, y, z) [m]; yaw [rad] about world z.
    keyframes: ``[(frame, base_position(3,))]`` sorted by frame; the base (bottom-centre)
        position is held before the first and after the last keyframe and eased (smoothstep)
        between consecutive ones, so a slide starts and stops smoothly.
    present: [first, last) frame interval in which the object exists (last None = to the end).
    """

    instance_id: int
    category: Category
    color: str
    material: str
    dims_m: np.ndarray
    yaw: float
    keyframes: list[tuple[int, np.ndarray]]
    present: tuple[int, Optional[int]] = (0, None)
    role: str = "object"
    events: list[str] = field(default_factory=list)
    visible_hint: Optional[int] = None  # visible px at the last frame before events [px]

    @property
    def size_m(self) -> float:
        return float(np.max(self.dims_m))

    @property
    def footprint_radius(self) -> float:
        return 0.5 * float(np.hypot(self.dims_m[0], self.dims_m[1]))

    def is_present(self, k: int) -> bool:
        first, last = self.present
        return k >= first and (last is None or k < last)

    def base_at(self, k: float) -> np.ndarray:
        kf = self.keyframes
        if k <= kf[0][0]:
            return kf[0][1].copy()
        for (k0, p0), (k1, p1) in zip(kf[:-1], kf[1:]):
            if k <= k1:
                s = _smoothstep((k - k0) / max(k1 - k0, 1e-9))
                return p0 + (p1 - p0) * s
        return kf[-1][1].copy()

    def center_at(self, k: float) -> np.ndarray:
        return self.base_at(k) + np.array([0.0, 0.0, self.dims_m[2] / 2.0])

    def render_object(self, k: int) -> RenderObject:
        base = self.base_at(k)
        prims = place_parts(build_parts(self.category.shape, self.dims_m, COLORS[self.color]), base, self.yaw)
        lo = np.min([p.center - prim_radius(p) for p in prims], axis=0)
        hi = np.max([p.center + prim_radius(p) for p in prims], axis=0)
        return RenderObject(
            instance_id=self.instance_id,
            primitives=tuple(prims),
            material=self.material,
            anchor=base,
            bounds_min=lo,
            bounds_max=hi,
        )


@dataclass
class Scene:
    """World state over an episode (n_frames = 1 for a still image)."""

    kind: str
    background: Background
    objects: list[WorldObject]
    cameras: list[CameraPose]
    light_dir: np.ndarray
    split: str
    seed: int
    look_at: np.ndarray = field(default_factory=lambda: np.zeros(3))
    events: list[dict] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.cameras)

    def next_id(self) -> int:
        return 1 + max((o.instance_id for o in self.objects), default=0)


# ----------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------
_FLOOR_COLORS = ((0.55, 0.42, 0.30), (0.62, 0.60, 0.56), (0.40, 0.30, 0.22), (0.72, 0.66, 0.55))
_WALL_COLORS = ((0.88, 0.86, 0.80), (0.80, 0.85, 0.88), (0.86, 0.82, 0.74), (0.78, 0.80, 0.76))
_TABLE_COLORS = ((0.55, 0.38, 0.22), (0.85, 0.85, 0.83), (0.35, 0.25, 0.17), (0.62, 0.55, 0.45))


@dataclass(frozen=True)
class _Layout:
    """Where objects may go for a scene kind: ground range from the camera [m] etc."""

    range_m: tuple[float, float]
    cam_height_m: tuple[float, float]
    xy_box: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max of the support [m]


_TABLETOP = _Layout(range_m=(0.5, 1.6), cam_height_m=(0.35, 0.6), xy_box=(-1.3, 1.3, 0.3, 2.0))
_ROOM = _Layout(range_m=(0.9, 3.0), cam_height_m=(1.0, 1.45), xy_box=(-2.5, 2.5, 0.6, 3.2))
LAYOUTS = {"tabletop": _TABLETOP, "room": _ROOM}


def scene_categories(kind: str, split: str) -> list[Category]:
    """Categories allowed in a scene kind and split (tabletop: small things only; room:
    things large enough to be seen from 1-3 m)."""
    cats = categories_for_split(split)
    if kind == "tabletop":
        return [c for c in cats if c.small]
    return [c for c in cats if c.size_range_m[1] >= 0.15]


def sample_object(
    rng: np.random.Generator, instance_id: int, cat: Category, base: np.ndarray
) -> WorldObject:
    """An instance of ``cat`` with random size, colour, material and yaw at ``base``."""
    size = float(rng.uniform(*cat.size_range_m))
    dims = np.asarray(cat.extent, dtype=np.float64) * size
    return WorldObject(
        instance_id=instance_id,
        category=cat,
        color=str(rng.choice(cat.colors)),
        material=str(rng.choice(cat.materials)),
        dims_m=dims,
        yaw=float(rng.uniform(0.0, 2.0 * np.pi)),
        keyframes=[(0, np.asarray(base, dtype=np.float64))],
    )


def free_spot(
    rng: np.random.Generator,
    radius: float,
    occupied: list[tuple[np.ndarray, float]],
    layout: _Layout,
    cam_xy: np.ndarray,
    half_fov: float,
    tries: int = 60,
) -> Optional[np.ndarray]:
    """A base position (z = 0) in view and clear of ``occupied`` (centre, radius) discs."""
    x0, x1, y0, y1 = layout.xy_box
    for _ in range(tries):
        r = rng.uniform(*layout.range_m)
        bearing = rng.uniform(-half_fov, half_fov)
        p = np.array([cam_xy[0] + r * np.sin(bearing), cam_xy[1] + r * np.cos(bearing), 0.0])
        if not (x0 + radius <= p[0] <= x1 - radius and y0 + radius <= p[1] <= y1 - radius):
            continue
        if all(np.hypot(*(p[:2] - q[:2])) >= radius + rq + 0.02 for q, rq in occupied):
            return p
    return None


def sample_scene(rng: np.random.Generator, split: str, config: SimConfig, n_frames: int = 1) -> Scene:
    """A random static scene with a fixed camera (episode.py animates it).

    Objects are placed without overlap on the support plane, all object centres at optical
    depth within ``config.depth_range_m``. Raises ``SceneGenerationError`` if 50 attempts fail.
    """
    for _ in range(50):
        scene = _try_scene(rng, split, config, n_frames)
        if scene is not None:
            return scene
    raise SceneGenerationError(
        f"could not place {config.n_objects[0]} objects in depth range {config.depth_range_m} m; "
        "widen SimConfig.depth_range_m or lower n_objects"
    )


def _try_scene(rng: np.random.Generator, split: str, config: SimConfig, n_frames: int) -> Optional[Scene]:
    tabletop = rng.random() < config.tabletop_prob
    kind = "tabletop" if tabletop else "room"
    layout = _TABLETOP if tabletop else _ROOM
    cats = scene_categories(kind, split)
    cam_h = rng.uniform(*layout.cam_height_m)
    cam_pos = np.array([0.0, 0.0, cam_h])
    mid = 0.5 * (layout.range_m[0] + layout.range_m[1])
    target = np.array([rng.uniform(-0.1, 0.1), mid, 0.08 if tabletop else 0.3])
    cam = CameraPose.look_at(cam_pos, target)
    half_fov = np.deg2rad(config.hfov_deg) / 2.0 - np.deg2rad(6.0)

    # Category pool: fewer categories than objects so duplicates occur (comparative,
    # ordinal and 'all the X' queries need several instances of a category).
    n = int(rng.integers(config.n_objects[0], config.n_objects[1] + 1))
    n_pool = max(1, int(np.ceil(n * rng.uniform(0.45, 0.8))))
    pool_idx = rng.choice(len(cats), size=min(n_pool, len(cats)), replace=False)
    pool = [cats[i] for i in pool_idx]
    if split == "test" and rng.random() < config.held_out_prob:
        held = [c for c in cats if c.held_out]
        if held and not any(c.held_out for c in pool):
            pool[0] = held[int(rng.integers(len(held)))]

    objects: list[WorldObject] = []
    occupied: list[tuple[np.ndarray, float]] = []
    near, far = config.depth_range_m
    for i in range(n):
        cat = pool[i] if i < len(pool) else pool[int(rng.integers(len(pool)))]
        obj = sample_object(rng, len(objects) + 1, cat, np.zeros(3))
        spot = free_spot(rng, obj.footprint_radius, occupied, layout, cam_pos[:2], half_fov)
        if spot is None:
            continue
        obj.keyframes = [(0, spot)]
        z = cam.world_to_camera(obj.center_at(0))[2]
        if not (near <= z <= far):
            continue
        objects.append(obj)
        occupied.append((spot, obj.footprint_radius))
    if len(objects) < config.n_objects[0]:
        return None

    if tabletop:
        bg = Background(
            floor_z=-0.74,
            wall_y=float(layout.xy_box[3] + rng.uniform(0.3, 1.2)),
            floor_color=_FLOOR_COLORS[int(rng.integers(len(_FLOOR_COLORS)))],
            wall_color=_WALL_COLORS[int(rng.integers(len(_WALL_COLORS)))],
            table_min=np.array([layout.xy_box[0], layout.xy_box[2] - 0.1, -0.04]),
            table_max=np.array([layout.xy_box[1], layout.xy_box[3], 0.0]),
            table_color=_TABLE_COLORS[int(rng.integers(len(_TABLE_COLORS)))],
        )
    else:
        bg = Background(
            floor_z=0.0,
            wall_y=float(layout.xy_box[3] + rng.uniform(0.2, 1.0)),
            floor_color=_FLOOR_COLORS[int(rng.integers(len(_FLOOR_COLORS)))],
            wall_color=_WALL_COLORS[int(rng.integers(len(_WALL_COLORS)))],
        )
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.9, -0.2), 1.0])
    light /= np.linalg.norm(light)
    return Scene(
        kind=kind,
        background=bg,
        objects=objects,
        cameras=[cam] * n_frames,
        light_dir=light,
        split=split,
        seed=0,
        look_at=target,
    )


# ----------------------------------------------------------------------------------------
# Per-frame ground truth
# ----------------------------------------------------------------------------------------
def render_frame(scene: Scene, k: int, config: SimConfig, rng: np.random.Generator) -> Frame:
    """Render frame ``k`` of ``scene`` into a ``Frame`` with ``gt`` (``SceneGroundTruth``).

    ``gt.objects`` holds every object present at frame ``k`` (visible or not) with
    ``visible_px`` after occlusion; see ``docs/sim.md`` for the ``extras`` keys.
    """
    intr = config.intrinsics
    cam = scene.cameras[k]
    present = [o for o in scene.objects if o.is_present(k)]
    res = render(
        [o.render_object(k) for o in present],
        scene.background,
        cam,
        intr,
        scene.light_dir,
        config.sensor,
        rng,
    )
    counts = np.bincount(res.instance_map.ravel(), minlength=scene.next_id())
    dt = 1.0 / config.fps
    gt_objects: dict[int, SimObject] = {}
    for o in present:
        iid = o.instance_id
        vis = int(counts[iid]) if iid < len(counts) else 0
        mask = res.instance_map == iid if vis else None
        centre = o.center_at(k)
        cen_cam = cam.world_to_camera(centre)
        if mask is not None:
            vs, us = np.nonzero(mask)
            vis_centroid = (float(us.mean()), float(vs.mean()))
            box = mask_box(mask)
            median_depth = float(np.median(res.depth_clean[mask]))
        else:
            vis_centroid, box, median_depth = None, None, None
        sil = res.silhouette_px.get(iid, 0)
        prev = o.center_at(k - 1) if k > 0 else centre
        extras = {
            "centroid_cam_m": cen_cam,
            "dims_m": o.dims_m.copy(),
            "yaw_rad": o.yaw,
            "shape": o.category.shape,
            "supercategory": o.category.supercategory,
            "held_out": o.category.held_out,
            "silhouette_px": int(sil),
            "occluded_fraction": (1.0 - vis / sil) if sil > 0 else 1.0,
            "visible_centroid_px": vis_centroid,
            "box_px": box,
            "median_depth_m": median_depth,
            "velocity_mps": (centre - prev) / dt,
            "present_since": o.present[0],
            "present_until": o.present[1],
            "role": o.role,
            "events": list(o.events),
        }
        gt_objects[iid] = SimObject(
            instance_id=iid,
            category=o.category.name,
            color=o.color,
            material=o.material,
            size_m=o.size_m,
            position_m=centre,
            visible_px=vis,
            extras=extras,
        )
    gt = SceneGroundTruth(
        instance_map=res.instance_map,
        objects=gt_objects,
        camera_pose=cam.matrix(),
        frame_index=k,
        scene_kind=scene.kind,
    )
    return Frame(
        rgb=res.rgb,
        intrinsics=intr,
        stamp_ns=int(round(k * 1e9 / config.fps)),
        frame_id="camera_color_optical_frame",
        seq=k,
        depth=res.depth,
        gt=gt,
        extras={"sim_seed": scene.seed, "sim_split": scene.split},
    )


def depth_to_16uc1_mm(depth_m: np.ndarray) -> np.ndarray:
    """Float metres ``(H, W)`` (NaN invalid) -> uint16 millimetres, 0 = invalid (like a
    real 16UC1 depth camera). Depths beyond 65.535 m are also written as 0."""
    d = np.asarray(depth_m, dtype=np.float64)
    mm = np.round(d * 1000.0)
    bad = ~np.isfinite(mm) | (mm <= 0) | (mm > 65535)
    return np.where(bad, 0, mm).astype(np.uint16)


def depth_from_16uc1_mm(depth_mm: np.ndarray) -> np.ndarray:
    """Inverse of ``depth_to_16uc1_mm``: uint16 mm -> float32 metres, 0 -> NaN."""
    d = np.asarray(depth_mm)
    if d.dtype != np.uint16:
        raise ValueError(f"16UC1 depth must be uint16, got {d.dtype}")
    out = d.astype(np.float32) / np.float32(1000.0)
    out[d == 0] = np.nan
    return out
