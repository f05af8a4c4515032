"""The digital twin: one structured record per object instance, maintained across frames.

All lengths are metres, all stamps integer nanoseconds, centroids and velocities are
in the camera optical frame. Missing depth is NaN *with a reason*, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics
from frs_ros.masks import RLE


@dataclass
class DepthStats:
    """Depth statistics over an object's mask [m].

    source: 'sensor' (depth camera), 'depth_anything_v2_metric', 'depth_anything_v2_relative'
        (relative depth: values are unitless inverse-depth-like scores, NOT metres), or 'none'.
    missing_reason: why the statistics are NaN ('no depth image', 'no valid depth pixels
        under the mask', ...); ``None`` when they are valid.
    valid_fraction: fraction of mask pixels with valid depth.
    """

    mean: float = math.nan
    std: float = math.nan
    min: float = math.nan
    max: float = math.nan
    median: float = math.nan
    valid_fraction: float = 0.0
    source: str = "none"
    missing_reason: Optional[str] = "no depth image"

    @property
    def valid(self) -> bool:
        return self.missing_reason is None and not math.isnan(self.median)

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: dict) -> "DepthStats":
        return cls(**{k: (math.nan if v is None and k not in ("missing_reason",) else v) for k, v in d.items()})


@dataclass
class TwinObject:
    """One tracked object instance.

    track_id: stable across frames (never reused within a twin's life).
    mask: visible mask, RLE; box: (x0, y0, x1, y1) [px] inclusive-exclusive; area_px: mask area.
    label/score: voted open-vocabulary label; alt_labels: runner-up (label, score) pairs.
    centroid_m: ``(3,)`` [m] optical frame of the current camera, NaN where depth is missing.
    velocity_mps: ``(3,)`` [m/s] in the twin's ``motion_frame`` (the optical frame when the
        camera is static), from centroid history; NaN until known.
    visible: seen in the current frame; last_seen_ns/first_seen_ns: stamps [ns].
    attributes: refined facts from tools (e.g. {'color': 'red', 'shape': 'round'}).
    history: recent (stamp_ns, centroid) samples in the twin's ``motion_frame`` [m], for
        motion and the history() tool.
    """

    track_id: int
    mask: RLE
    box: tuple[int, int, int, int]
    area_px: int
    label: str
    score: float
    alt_labels: list[tuple[str, float]] = field(default_factory=list)
    depth: DepthStats = field(default_factory=DepthStats)
    centroid_m: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    velocity_mps: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    visible: bool = True
    attributes: dict = field(default_factory=dict)
    history: list[tuple[int, np.ndarray]] = field(default_factory=list)
    # Added by the tracker (issue 4): where the object was first seen [m, motion frame]
    # (the bounded ``history`` may have dropped that sample), closed intervals
    # (start_ns, end_ns) during which it was not visible, and frames it was seen in.
    first_centroid_m: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    gaps_ns: list[tuple[int, int]] = field(default_factory=list)
    seen_frames: int = 0
    # Added (issue 15): which frame each fact comes from. The mask, box, depth and centroid are of
    # the twin's frame (``DigitalTwin.stamp_ns``); keyframe_ns is the stamp of the keyframe whose
    # segmentation last set the mask (propagated from there), label_ns of the frame of the latest
    # label vote [ns]; 0 = none yet.
    keyframe_ns: int = 0
    label_ns: int = 0

    @property
    def displacement_m(self) -> float:
        """Straight-line distance [m] from where the object was first seen to where it was last
        seen (both in the motion frame, so camera motion does not count); NaN if unknown."""
        if not self.history:
            return math.nan
        d = np.asarray(self.history[-1][1], dtype=float) - np.asarray(self.first_centroid_m, dtype=float)
        return float(np.linalg.norm(d)) if np.all(np.isfinite(d)) else math.nan

    @property
    def speed_mps(self) -> float:
        """Norm of ``velocity_mps`` [m/s]; NaN until known."""
        v = np.asarray(self.velocity_mps, dtype=float)
        return float(np.linalg.norm(v)) if np.all(np.isfinite(v)) else math.nan

    def to_json(self) -> dict:
        """JSON-safe dict (NaN -> null, mask as RLE ``{"size", "counts"}``)."""
        return {
            "track_id": int(self.track_id),
            "mask": self.mask.to_json(),
            "box": [int(x) for x in self.box],
            "area_px": int(self.area_px),
            "label": self.label,
            "score": _num(self.score),
            "alt_labels": [[str(lab), _num(sc)] for lab, sc in self.alt_labels],
            "depth": self.depth.to_json(),
            "centroid_m": _vec(self.centroid_m),
            "velocity_mps": _vec(self.velocity_mps),
            "first_seen_ns": int(self.first_seen_ns),
            "last_seen_ns": int(self.last_seen_ns),
            "visible": bool(self.visible),
            "attributes": dict(self.attributes),
            "history": [[int(t), _vec(c)] for t, c in self.history],
            "first_centroid_m": _vec(self.first_centroid_m),
            "gaps_ns": [[int(a), int(b)] for a, b in self.gaps_ns],
            "seen_frames": int(self.seen_frames),
            "keyframe_ns": int(self.keyframe_ns),
            "label_ns": int(self.label_ns),
        }

    @classmethod
    def from_json(cls, d: dict) -> "TwinObject":
        return cls(
            track_id=int(d["track_id"]),
            mask=RLE.from_json(d["mask"]),
            box=tuple(int(x) for x in d["box"]),  # type: ignore[arg-type]
            area_px=int(d["area_px"]),
            label=str(d["label"]),
            score=_unnum(d["score"]),
            alt_labels=[(str(lab), _unnum(sc)) for lab, sc in d.get("alt_labels", [])],
            depth=DepthStats.from_json(d["depth"]),
            centroid_m=_unvec(d["centroid_m"]),
            velocity_mps=_unvec(d["velocity_mps"]),
            first_seen_ns=int(d["first_seen_ns"]),
            last_seen_ns=int(d["last_seen_ns"]),
            visible=bool(d["visible"]),
            attributes=dict(d.get("attributes", {})),
            history=[(int(t), _unvec(c)) for t, c in d.get("history", [])],
            first_centroid_m=_unvec(d.get("first_centroid_m", [None] * 3)),
            gaps_ns=[(int(a), int(b)) for a, b in d.get("gaps_ns", [])],
            seen_frames=int(d.get("seen_frames", 0)),
            keyframe_ns=int(d.get("keyframe_ns", 0)),
            label_ns=int(d.get("label_ns", 0)),
        )


@dataclass
class DigitalTwin:
    """The twin of the scene at one frame: stamp, camera, and the current objects.

    objects holds visible objects and recently-lost ones (``visible=False``) until they retire.
    image_size: (H, W) of the frame the masks belong to.
    """

    stamp_ns: int
    frame_id: str
    intrinsics: CameraIntrinsics
    objects: list[TwinObject] = field(default_factory=list)
    seq: int = 0
    depth_source: str = "none"

    # Added (issue 4): stamp [ns] of the first frame the tracker saw, so that
    # serialisation can say "appeared 2.1 s into the episode".
    start_ns: int = 0
    # Added (issue 4): the frame of motion quantities (history, velocity, displacement):
    # 'world' (camera pose given in frame.extras['T_world_camera']), 'anchor' (optical frame of
    # the first frame, camera motion estimated from static objects) or 'camera' (assumed static);
    # ego_inliers: objects that agreed on this frame's camera pose (-1: pose given).
    motion_frame: str = "camera"
    ego_inliers: int = 0
    # Added (issue 15): stamp [ns] of the last keyframe (segmentation + labels) merged into this
    # twin; with background keyframes it trails ``stamp_ns`` by the model latency. 0 = none yet.
    keyframe_ns: int = 0

    def get(self, track_id: int) -> TwinObject:
        for obj in self.objects:
            if obj.track_id == track_id:
                return obj
        raise KeyError(f"no object with track id {track_id} in the twin (ids: {self.ids()})")

    def ids(self) -> list[int]:
        return [o.track_id for o in self.objects]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.intrinsics.height, self.intrinsics.width


def _num(x: float):
    x = float(x)
    return None if math.isnan(x) else x


def _unnum(x) -> float:
    return math.nan if x is None else float(x)


def _vec(v) -> list:
    return [_num(x) for x in np.asarray(v, dtype=float).reshape(-1)]


def _unvec(v) -> np.ndarray:
    return np.array([_unnum(x) for x in v], dtype=float)


def twin_to_json(twin: DigitalTwin) -> dict:
    """The whole twin as a JSON-safe dict (masks as RLE, NaN as null). Inverse: ``twin_from_json``."""
    k = twin.intrinsics
    return {
        "stamp_ns": int(twin.stamp_ns),
        "frame_id": twin.frame_id,
        "seq": int(twin.seq),
        "depth_source": twin.depth_source,
        "start_ns": int(twin.start_ns),
        "motion_frame": twin.motion_frame,
        "ego_inliers": int(twin.ego_inliers),
        "keyframe_ns": int(twin.keyframe_ns),
        "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height},
        "objects": [o.to_json() for o in twin.objects],
    }


def twin_from_json(d: dict) -> DigitalTwin:
    """Inverse of ``twin_to_json``; raises ``KeyError``/``ValueError`` on malformed input."""
    k = d["intrinsics"]
    return DigitalTwin(
        stamp_ns=int(d["stamp_ns"]),
        frame_id=str(d["frame_id"]),
        intrinsics=CameraIntrinsics(
            fx=float(k["fx"]), fy=float(k["fy"]), cx=float(k["cx"]), cy=float(k["cy"]),
            width=int(k["width"]), height=int(k["height"]),
        ),
        objects=[TwinObject.from_json(o) for o in d.get("objects", [])],
        seq=int(d.get("seq", 0)),
        depth_source=str(d.get("depth_source", "none")),
        start_ns=int(d.get("start_ns", 0)),
        motion_frame=str(d.get("motion_frame", "camera")),
        ego_inliers=int(d.get("ego_inliers", 0)),
        keyframe_ns=int(d.get("keyframe_ns", 0)),
    )
