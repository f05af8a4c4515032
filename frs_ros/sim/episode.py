"""Video episodes: smooth camera motion and object events on top of a sampled scene.

Events (each a dict in ``Scene.events``, frame indices are 0-based):
- ``moved``: ``{"type", "instance_id", "start", "end", "from_m", "to_m", "distance_m"}`` -- the
  object slides (eased) from ``from_m`` to ``to_m`` (world centres [m]) during [start, end].
- ``added``: ``{"type", "instance_id", "frame"}`` -- absent before ``frame``, present from it.
- ``removed``: ``{"type", "instance_id", "frame"}`` -- present before ``frame``, absent from it.
- ``occluded``: ``{"type", "instance_id", "occluder_id", "start", "end", "hidden_frames",
  "also_hidden", "verified"}`` -- a carried occluder (role 'occluder', present only during
  [start, end]) crosses in front of the camera, pauses in front of the object, and leaves;
  ``hidden_frames`` (filled after rendering) are the frames where the object showed < 30 % of
  its best visible area; ``verified`` is True when it was hidden >= 3 consecutive frames and
  is clearly visible again at the end; ``also_hidden`` lists other objects hidden that long.
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
    render_frame,
    sample_object,
    scene_categories,
)

EVENT_TYPES = ("moved", "added", "removed", "occluded")
HIDDEN_FRACTION = 0.3
HIDDEN_MIN_FRAMES = 3  # 'hidden for a while' = at least this many consecutive frames


def camera_path(start: CameraPose, look_at: np.ndarray, n_frames: int, rng: np.random.Generator) -> list[CameraPose]:
    """A smooth orbit of +-4..12 deg (for 30 frames) around ``look_at`` with a small height
    bob and dolly.

    The camera eases in and out (smoothstep), so velocity is zero at both ends, as with a
    robot head or a hand-held sweep that starts and stops.
    """
    if n_frames == 1:
        return [start]
    # Sweep size scales with duration (a 30-frame clip = 1 s sweeps 8-24 deg in all) so the
    # camera speed stays that of a turning robot head, whatever the episode length.
    amp = np.deg2rad(rng.uniform(4.0, 12.0)) * min(1.0, n_frames / 30.0) * (1 if rng.random() < 0.5 else -1)
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


def _looks_visible(scene: Scene, obj: WorldObject, k: int, config: SimConfig) -> bool:
    """Visible area >= 3x the query visibility threshold, so event objects can be asked
    about: the rendered count at the last frame (``visible_hint``, set by ``add_events``) or,
    for objects not rendered yet, a projected-area estimate (before occlusion)."""
    hint = getattr(obj, "visible_hint", None)
    if hint is not None:
        return hint >= 3 * config.min_visible_px
    z = scene.cameras[k].world_to_camera(obj.center_at(k))[2]
    if z <= 0.1:
        return False
    f = config.intrinsics.fx
    area = 0.6 * (f * max(obj.dims_m[0], obj.dims_m[1]) / z) * (f * obj.dims_m[2] / z)
    return area >= 3 * config.min_visible_px


def add_events(scene: Scene, rng: np.random.Generator, config: SimConfig) -> None:
    """Give a scene a camera path and 1-3 object events (mutates ``scene``).

    Event types are sampled without replacement from ``EVENT_TYPES``; when a sampled event
    cannot be placed (no free spot, no suitable occluder) the remaining types are tried in
    turn, so an episode of >= 8 frames has at least one event unless none fits at all.
    """
    n = scene.n_frames
    scene.cameras = camera_path(scene.cameras[0], scene.look_at, n, rng)
    if n < 8:
        return
    # Which objects are actually visible (after occlusion) at the end: event objects are
    # chosen among those, so the events can be asked about. One extra render per episode.
    last = render_frame(scene, n - 1, config, np.random.default_rng(0))
    scene_visible = {iid: o.visible_px for iid, o in last.gt.objects.items()}
    for o in scene.objects:
        o.visible_hint = scene_visible.get(o.instance_id, 0)
    n_events = int(rng.integers(1, 4))
    order = [str(t) for t in rng.permutation(EVENT_TYPES)]
    wanted = order[:n_events]
    if "moved" in wanted and rng.random() < 0.35:
        wanted.append("moved")  # a second mover enables 'moved the most' queries
    busy: set[int] = set()
    for etype in wanted:
        _add_event(etype, scene, rng, config, busy)
    for etype in order[n_events:]:
        if scene.events:
            break
        _add_event(etype, scene, rng, config, busy)


def _pick_static(scene: Scene, rng: np.random.Generator, config: SimConfig, busy: set[int]) -> WorldObject | None:
    cands = [o for o in scene.objects if o.role == "object" and o.instance_id not in busy and o.present == (0, None)]
    good = [o for o in cands if _looks_visible(scene, o, scene.n_frames - 1, config)]
    pool = good or cands
    if not pool:
        return None
    return pool[int(rng.integers(len(pool)))]


def _add_event(etype: str, scene: Scene, rng: np.random.Generator, config: SimConfig, busy: set[int]) -> bool:
    """Add one event of ``etype``; False if it could not be placed."""
    n = scene.n_frames
    layout = LAYOUTS[scene.kind]
    half_fov = np.deg2rad(config.hfov_deg) / 2.0 - np.deg2rad(8.0)
    cam_xy = scene.cameras[0].position[:2]
    if etype == "moved":
        obj = _pick_static(scene, rng, config, busy)
        if obj is None or obj.size_m > 1.2:
            return False
        p0 = obj.keyframes[0][1]
        occ = _occupied(scene, exclude=obj.instance_id) + [(p0, obj.footprint_radius + 0.15)]
        p1 = free_spot(rng, obj.footprint_radius, occ, layout, cam_xy, half_fov)
        if p1 is None:
            return False
        start = int(rng.integers(2, max(3, n // 2 - 4)))
        end = min(start + int(rng.integers(6, 11)), n - 3)
        obj.keyframes = [(start, p0), (end, p1)]
        if not _in_depth(scene, obj, n - 1, config):
            obj.keyframes = [(0, p0)]
            return False
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
        return True
    if etype == "added":
        cats = scene_categories(scene.kind, scene.split)
        pool = [o.category for o in scene.objects if o.role == "object"] + cats
        for _ in range(4):
            cat = pool[int(rng.integers(len(pool)))]
            obj = sample_object(rng, scene.next_id(), cat, np.zeros(3))
            p = free_spot(rng, obj.footprint_radius, _occupied(scene), layout, cam_xy, half_fov)
            if p is None:
                continue
            frame = int(rng.integers(n // 4, 2 * n // 3))
            obj.keyframes = [(0, p)]
            obj.present = (frame, None)
            if not (_in_depth(scene, obj, frame, config) and _looks_visible(scene, obj, n - 1, config)):
                continue
            obj.events.append("added")
            scene.objects.append(obj)
            busy.add(obj.instance_id)
            scene.events.append({"type": "added", "instance_id": obj.instance_id, "frame": frame})
            return True
        return False
    if etype == "removed":
        obj = _pick_static(scene, rng, config, busy)
        if obj is None:
            return False
        frame = int(rng.integers(n // 4, 2 * n // 3))
        obj.present = (0, frame)
        obj.events.append("removed")
        busy.add(obj.instance_id)
        scene.events.append({"type": "removed", "instance_id": obj.instance_id, "frame": frame})
        return True
    if etype == "occluded":
        return _add_occlusion(scene, rng, config, busy)
    raise ValueError(f"unknown event type {etype!r}; valid: {EVENT_TYPES}")


def _add_occlusion(scene: Scene, rng: np.random.Generator, config: SimConfig, busy: set[int]) -> bool:
    """A carried object (role 'occluder') crosses the line of sight to one target object.

    It moves laterally at distance ``d`` in front of the camera, from beyond one image
    border to beyond the other, held at the height where the sight lines to the target
    pass (like an object carried past the robot), and exists only while crossing. ``d`` is
    as large as the occluder's size allows while still covering the target, so it hides
    little else; ``verify_occlusions`` later checks which objects were really hidden.
    """
    n = scene.n_frames
    cats = [c for c in scene_categories(scene.kind, scene.split) if c.shape in ("box", "ellipsoid", "backpack")]
    cands = [o for o in scene.objects if o.role == "object" and o.instance_id not in busy and o.present == (0, None)]
    cands = [o for o in cands if _looks_visible(scene, o, n - 1, config)]
    if not cats or not cands:
        return False
    rng.shuffle(cands)
    tan_half = np.tan(np.deg2rad(config.hfov_deg) / 2.0)
    # Timing: enter, pause in front of the target (someone stops), leave.
    start = int(rng.integers(2, max(3, n // 2 - 8)))
    end = min(start + int(rng.integers(12, 17)), n - 3)
    hold = max(HIDDEN_MIN_FRAMES + 1, (end - start) // 3)
    move = max(2, (end - start - hold) // 2)
    hold_frames = list(range(start + move, end - move + 1))
    if not hold_frames:
        return False
    for target in cands[:4]:
        t_xy = target.keyframes[0][1][:2]
        t_w = max(target.dims_m[0], target.dims_m[1])
        t_h = target.dims_m[2]
        dist = float(np.linalg.norm(t_xy - scene.cameras[hold_frames[0]].position[:2]))
        for _ in range(4):
            cat = cats[int(rng.integers(len(cats)))]
            occ = sample_object(rng, scene.next_id(), cat, np.zeros(3))
            s_w, s_h = occ.dims_m[1], occ.dims_m[2]  # yaw below turns local y across the sight line
            # Largest distance at which it still covers the target (+20 % margin).
            d = min(dist * min(s_w / (1.2 * t_w + 0.04), s_h / (1.2 * t_h + 0.04)), dist - 0.3)
            if d < 0.3:
                continue
            d = float(rng.uniform(max(0.3, 0.7 * d), d))
            # While holding, the occluder follows the (moving) camera's sight line to the
            # target centre; its height puts the sight lines' crossing in its middle.
            poses = []
            for k in hold_frames:
                cam = scene.cameras[k].position
                ray = t_xy - cam[:2]
                ray_u = ray / np.linalg.norm(ray)
                frac = d / float(np.linalg.norm(ray))
                z_mid = cam[2] - (cam[2] - 0.5 * t_h) * frac
                xy = cam[:2] + ray_u * d
                poses.append((k, np.array([xy[0], xy[1], max(z_mid - 0.5 * s_h, 0.0)]), ray_u))
            ray_u = poses[0][2]
            occ.yaw = float(np.arctan2(ray_u[1], ray_u[0]))  # broad side towards the camera
            perp = np.array([-ray_u[1], ray_u[0]])
            # Beyond the image border at both ends (the target may sit off the optical axis).
            half_len = 2.0 * d * tan_half + max(occ.dims_m) + 0.1
            sign = 1 if rng.random() < 0.5 else -1
            p_first, p_last = poses[0][1], poses[-1][1]
            a = p_first.copy()
            a[:2] -= sign * perp * half_len
            b = p_last.copy()
            b[:2] += sign * perp * half_len
            if not _corridor_clear(scene, a[:2], b[:2], occ.footprint_radius, target.instance_id, min(a[2], b[2])):
                continue
            occ.keyframes = [(start, a)] + [(k, p) for k, p, _ in poses] + [(end, b)]
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
                    "also_hidden": [],
                    "verified": False,
                }
            )
            return True
    return False


def _corridor_clear(scene: Scene, a: np.ndarray, b: np.ndarray, radius: float, skip: int, base_z: float = 0.0) -> bool:
    """No object (at any of its keyframes) reaching above ``base_z`` [m] within the swept
    disc path from a to b (xy)."""
    ab = b - a
    for o in scene.objects:
        if o.instance_id == skip:
            continue
        for _, p in o.keyframes:
            if p[2] + o.dims_m[2] <= base_z:
                continue  # the carried occluder passes above it
            s = np.clip(np.dot(p[:2] - a, ab) / np.dot(ab, ab), 0.0, 1.0)
            if np.linalg.norm(p[:2] - (a + s * ab)) < o.footprint_radius + radius + 0.02:
                return False
    return True


def _longest_run(frames: list[int]) -> int:
    best = run = 0
    prev = None
    for k in frames:
        run = run + 1 if prev is not None and k == prev + 1 else 1
        best = max(best, run)
        prev = k
    return best


def verify_occlusions(scene: Scene, visible_px: dict[int, list[int]], config: SimConfig) -> None:
    """Fill ``hidden_frames``, ``also_hidden`` and ``verified`` of occlusion events from
    rendered visibility.

    visible_px: instance id -> visible pixel count per frame (0 where absent).
    A frame hides an object when it shows < ``HIDDEN_FRACTION`` of its best visible area.
    ``also_hidden``: other objects present throughout that were also hidden for at least
    ``HIDDEN_MIN_FRAMES`` consecutive frames during the crossing (an 'object that was hidden
    for a while' query is only unambiguous when this is empty). ``verified``: the target was
    hidden that long and is clearly visible again at the end.
    """
    n = scene.n_frames
    for ev in scene.events:
        if ev["type"] != "occluded":
            continue

        def hidden_of(iid: int) -> list[int]:
            vis = np.asarray(visible_px.get(iid, [0] * n))
            best = int(vis.max()) if vis.size else 0
            if best < config.min_visible_px:
                return []
            return [k for k in range(ev["start"], ev["end"] + 1) if vis[k] < HIDDEN_FRACTION * best]

        vis = np.asarray(visible_px.get(ev["instance_id"], [0] * n))
        best = int(vis.max()) if vis.size else 0
        ev["hidden_frames"] = hidden_of(ev["instance_id"])
        ev["also_hidden"] = [
            o.instance_id
            for o in scene.objects
            if o.instance_id not in (ev["instance_id"], ev["occluder_id"])
            and o.present == (0, None)
            and _longest_run(hidden_of(o.instance_id)) >= HIDDEN_MIN_FRAMES
        ]
        ev["verified"] = bool(
            _longest_run(ev["hidden_frames"]) >= HIDDEN_MIN_FRAMES
            and best >= config.min_visible_px
            and vis[-1] >= 0.6 * best
        )
