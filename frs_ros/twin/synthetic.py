"""Hand-built RGB-D frames with ground truth (rectangles and discs on a depth plane).

Used by the twin's tests and examples where the exact answer must be computable by hand;
the full simulator (``frs_ros.sim``) is separate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics, Frame
from frs_ros.sim.types import SceneGroundTruth, SimObject


@dataclass(frozen=True)
class Shape2D:
    """One object drawn into a synthetic frame.

    kind: 'rect' (cx, cy = centre, w, h [px]) or 'disc' (radius = w / 2 [px]).
    depth_m: constant depth of its pixels [m]; rgb: its colour.
    """

    instance_id: int
    category: str
    kind: str
    cx: float
    cy: float
    w: float
    h: float
    depth_m: float
    rgb: tuple[int, int, int]
    color: str = ""


def make_frame(
    shapes: list[Shape2D],
    width: int = 64,
    height: int = 48,
    background_depth_m: float = 2.0,
    stamp_ns: int = 0,
    seq: int = 0,
    hfov_deg: float = 60.0,
    with_depth: bool = True,
    with_gt: bool = True,
) -> Frame:
    """Paint shapes back to front (by depth) over a grey background on a constant depth plane."""
    k = CameraIntrinsics.from_fov(width, height, hfov_deg)
    rgb = np.full((height, width, 3), 90, np.uint8)
    depth = np.full((height, width), background_depth_m, np.float32)
    imap = np.zeros((height, width), np.int32)
    vv, uu = np.mgrid[0:height, 0:width]
    for s in sorted(shapes, key=lambda s: -s.depth_m):
        if s.kind == "rect":
            m = (np.abs(uu - s.cx) <= s.w / 2 - 0.5) & (np.abs(vv - s.cy) <= s.h / 2 - 0.5)
        elif s.kind == "disc":
            m = (uu - s.cx) ** 2 + (vv - s.cy) ** 2 <= (s.w / 2) ** 2
        else:
            raise ValueError(f"shape kind must be 'rect' or 'disc', got {s.kind!r}")
        rgb[m] = s.rgb
        depth[m] = s.depth_m
        imap[m] = s.instance_id
    objects = {
        s.instance_id: SimObject(
            instance_id=s.instance_id, category=s.category, color=s.color, material="plastic",
            size_m=float(max(s.w, s.h) * s.depth_m / k.fx), position_m=np.zeros(3),
            visible_px=int((imap == s.instance_id).sum()),
        )
        for s in shapes
    }
    gt: Optional[SceneGroundTruth] = SceneGroundTruth(instance_map=imap, objects=objects) if with_gt else None
    return Frame(
        rgb=rgb, intrinsics=k, stamp_ns=stamp_ns, seq=seq,
        depth=depth if with_depth else None, gt=gt,
    )
