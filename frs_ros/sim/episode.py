"""Video episodes: smooth camera motion and object events on top of a sampled scene.

Events (each a dict in ``Scene.events``, frame indices are 0-based):
- ``moved``: ``{"type", "instance_id", "start", "end", "from_m", "to_m", "distance_m"}`` -- the
  object slides (eased) from ``from_m`` to ``to_m`` (world centres [m]) during [start, end].
- ``added``: ``{"type", "instance_id", "frame"}`` -- absent before ``frame``, present from it.
- ``removed``: ``{"type", "instance_id", "frame"}`` -- present before ``frame``, absent from it.
- ``occluded``: ``{"type", "instance_id", "occluder_id", "start", "end", "hidden_frames",
  "verified"}`` -- a carried occluder (role 'occluder', present only during [start, end])
  passes between the camera and the object; ``hidden_frames`` (filled after rendering) are the
  frames where the object showed < 30 % of its best visible area, ``verified`` is True when
  there is at least one such frame and the object is clearly visible again at the end.
"""

from __future__ import annotations

import numpy as np

from frs_ros.sim.render import CameraPose, rot_z
from frs_ros.sim.world import (
    LAYOUTS,
    Scene,
    SimConfig,
    WorldObject,
    free_spot,
    sample_object,
    scene_categories,
)

EVENT_TYPES = ("moved", "added", "removed", "occluded")
HIDDEN_FRACTION = 0.3


def camera_path(start: CameraPose, look_at: np.ndarray, n_frames: int, rng: np.random.Generator) -> list[CameraPose]:
    """A smooth orbit of +-4..12 deg around ``look_at`` with a small height bob and dolly.

    The camera eases in and out (smoothstep), so velocity is zero at both ends, as with a
    robot head or a hand-held sweep that starts and stops.
    """
    if n_frames == 1:
        return [start]
    amp = np.deg2rad(rng.uniform(4.0, 12.0)) * (1 if rng.random() < 0.5 else -1)
    bob = rng.uniform(0.0, 0.04)
    dolly = rng.uniform(-0.08, 0.08)
    rel = start.position - look_at
    poses = []
    for k in range(n_frames):
        s = k / (n_frames - 1)
        e = s * s * (3 - 2 * s)
        phi = amp * (2 * e - 1)
        p = look_at + (rot_z(phi) @ rel) * (1.0 + dolly * (e - 0.5))
        p = p + np.array([0.0, 0.0, bob * np.sin(2 * np.pi * s)])
        poses.append(CameraPose.look_at(p, look_at))
    return poses


def _occupied(scene: Scene, exclude: int = -1) -> list[tuple[np.ndarray, float]]:
    """Discs of every position any object takes during the episode (keyframes)."""
    out = []
    for o in scene.objects:
        if o.instance_id == exclude:
            continue
        for _, p in o.keyframes:
            out.append((p, o.footprint_radius))
    return out


def _in_depth(scene: Scene, obj: WorldObject, k: int, config: SimConfig) -> bool:
    z = scene.cameras[k].world_to_camera(obj.center_at(k))[2]
    return config.depth_range_m[0] <= z <= config.depth_range_m[1]


def add_events(scene: Scene, rng: np.random.Generator, config: SimConfig) -> None:
    """Give a scene a camera path and 1-3 object events (mutates ``scene``).

    Event types are sampled without replacement from ``EVENT_TYPES``; an event that cannot
    be placed (no free spot, no suitable occluder) is skipped, so an episode has >= 0 events.
    """
    n = scene.n_frames
    scene.cameras = camera_path(scene.cameras[0], scene.look_at, n, rng)
    if n < 8:
        return
    layout = LAYOUTS[scene.kind]
    half_fov = np.deg2rad(config.hfov_deg) / 2.0 - np.deg2rad(8.0)
    cam_xy = scene.cameras[0].position[:2]
    n_events = int(rng.integers(1, 4))
    types = list(rng.permutation(EVENT_TYPES)[:n_events])
    if "moved" in types and rng.random() < 0.35:
        types.append("moved")  # a second mover enables 'moved the most' queries
    busy: set[int] = set()

    def pick_static() -> WorldObject | None:
        cands = [o for o in scene.objects if o.role == "object" and o.instance_id not in busy and o.present == (0, None)]
        if not cands:
            return None
        return cands[int(rng.integers(len(cands)))]

    for etype in types:
        if etype == "moved":
            obj = pick_static()
            if obj is None or obj.size_m > 1.2:
                continue
            p0 = obj.keyframes[0][1]
            occ = _occupied(scene, exclude=obj.instance_id) + [(p0, obj.footprint_radius + 0.15)]
            p1 = free_spot(rng, obj.footprint_radius, occ, layout, cam_xy, half_fov)
            if p1 is None:
                continue
            start = int(rng.integers(2, max(3, n // 2 - 4)))
            end = min(start + int(rng.integers(6, 11)), n - 3)
            obj.keyframes = [(start, p0), (end, p1)]
            if not _in_depth(scene, obj, n - 1, config):
                obj.keyframes = [(0, p0)]
                continue
            busy.add(obj.instance_id)
            obj.events.append("moved")
            scene.events.append(
                {
                    "type": "moved",
                    "instance_id": obj.instance_id,
                    "start": start,
                    "end": end,
                    "from_m": obj.center_at(start).tolist(),
                    "to_m": obj.center_at(end).tolist(),
                    "distance_m": float(np.linalg.norm(p1 - p0)),
                }
            )
        elif etype == "added":
            cats = scene_categories(scene.kind, scene.split)
            pool = [o.category for o in scene.objects] + cats
            cat = pool[int(rng.integers(len(pool)))]
            obj = sample_object(rng, scene.next_id(), cat, np.zeros(3))
            p = free_spot(rng, obj.footprint_radius, _occupied(scene), layout, cam_xy, half_fov)
            if p is None:
                continue
            frame = int(rng.integers(n // 4, 2 * n // 3))
            obj.keyframes = [(0, p)]
            obj.present = (frame, None)
            if not _in_depth(scene, obj, frame, config):
                continue
            obj.events.append("added")
            scene.objects.append(obj)
            busy.add(obj.instance_id)
            scene.events.append({"type": "added", "instance_id": obj.instance_id, "frame": frame})
        elif etype == "removed":
            obj = pick_static()
            if obj is None:
                continue
            frame = int(rng.integers(n // 4, 2 * n // 3))
            obj.present = (0, frame)
            obj.events.append("removed")
            busy.add(obj.instance_id)
            scene.events.append({"type": "removed", "instance_id": obj.instance_id, "frame": frame})
        elif etype == "occluded":
            _add_occlusion(scene, rng, config, busy)


def _add_occlusion(scene: Scene, rng: np.random.Generator, config: SimConfig, busy: set[int]) -> None:
    """A carried occluder crosses the line of sight to one object, entering and leaving
    the view; it exists only while crossing (role 'occluder')."""
    target = None
    cands = [o for o in scene.objects if o.role == "object" and o.instance_id not in busy and o.present == (0, None)]
    rng.shuffle(cands)
    n = scene.n_frames
    cats = scene_categories(scene.kind, scene.split)
    for t in cands:
        need_h = 1.15 * t.dims_m[2]
        need_w = 1.2 * max(t.dims_m[0], t.dims_m[1])
        # Box-like, tall and wide enough categories can hide the target.
        occ_cats = [
            c
            for c in cats
            if c.shape in ("box", "bin", "backpack", "armchair")
            and c.size_range_m[1] * c.extent[2] >= need_h
            and c.size_range_m[1] * min(c.extent[0], c.extent[1]) >= 0.5 * need_w
        ]
        if occ_cats:
            target = t
            break
    if target is None:
        return
    cat = occ_cats[int(rng.integers(len(occ_cats)))]
    occ = sample_object(rng, scene.next_id(), cat, np.zeros(3))
    # Enlarge within the category's size range until it is tall enough.
    scale = min(cat.size_range_m[1], max(occ.size_m, need_h / cat.extent[2]))
    occ.dims_m = np.asarray(cat.extent) * scale
    cam_xy = scene.cameras[0].position[:2]
    t_xy = target.keyframes[0][1][:2]
    ray = t_xy - cam_xy
    dist = float(np.linalg.norm(ray))
    ray_u = ray / dist
    perp = np.array([-ray_u[1], ray_u[0]])
    gap = target.footprint_radius + occ.footprint_radius + 0.05
    start = int(rng.integers(3, max(4, n // 2 - 6)))
    end = min(start + int(rng.integers(10, 15)), n - 4)
    for _ in range(6):
        d_occ = dist - gap - rng.uniform(0.0, 0.25)
        if d_occ - occ.footprint_radius < 0.55:
            return
        mid = cam_xy + ray_u * d_occ
        half_len = d_occ * np.tan(np.deg2rad(config.hfov_deg) / 2.0) + occ.footprint_radius + 0.1
        sign = 1 if rng.random() < 0.5 else -1
        a = mid - sign * perp * half_len
        b = mid + sign * perp * half_len
        # The corridor swept by the occluder must not cut through another object.
        clear = True
        for o in scene.objects:
            if o.instance_id == target.instance_id:
                continue
            for _, p in o.keyframes:
                ab = b - a
                s = np.clip(np.dot(p[:2] - a, ab) / np.dot(ab, ab), 0.0, 1.0)
                if np.linalg.norm(p[:2] - (a + s * ab)) < o.footprint_radius + occ.footprint_radius + 0.02:
                    clear = False
        if clear:
            break
    else:
        return
    occ.keyframes = [(start, np.array([a[0], a[1], 0.0])), (end, np.array([b[0], b[1], 0.0]))]
    occ.present = (start, end + 1)
    occ.role = "occluder"
    occ.events.append("occluder")
    scene.objects.append(occ)
    target.events.append("occluded")
    busy.update({target.instance_id, occ.instance_id})
    scene.events.append(
        {
            "type": "occluded",
            "instance_id": target.instance_id,
            "occluder_id": occ.instance_id,
            "start": start,
            "end": end,
            "hidden_frames": [],
            "verified": False,
        }
    )


def verify_occlusions(scene: Scene, visible_px: dict[int, list[int]], config: SimConfig) -> None:
    """Fill ``hidden_frames``/``verified`` of occlusion events from rendered visibility.

    visible_px: instance id -> visible pixel count per frame (0 where absent).
    """
    for ev in scene.events:
        if ev["type"] != "occluded":
            continue
        vis = np.asarray(visible_px.get(ev["instance_id"], [0] * scene.n_frames))
        best = int(vis.max()) if vis.size else 0
        hidden = [k for k in range(ev["start"], ev["end"] + 1) if vis[k] < HIDDEN_FRACTION * best]
        ev["hidden_frames"] = hidden
        ev["verified"] = bool(hidden) and best >= config.min_visible_px and vis[-1] >= 0.6 * best
