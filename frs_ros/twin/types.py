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
    centroid_m: ``(3,)`` [m] optical frame, NaN where depth is missing.
    velocity_mps: ``(3,)`` [m/s] optical frame, from centroid history; NaN until known.
    visible: seen in the current frame; last_seen_ns/first_seen_ns: stamps [ns].
    attributes: refined facts from tools (e.g. {'color': 'red', 'shape': 'round'}).
    history: recent (stamp_ns, centroid) samples, for motion and the history() tool.
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
