"""Camera-side domain types: pinhole intrinsics and one synchronised RGB-D frame.

Conventions (shared by every module):
- images are row-major ``(H, W)``; pixel ``(u, v)`` is column ``u``, row ``v``;
- colour is ``uint8`` RGB, shape ``(H, W, 3)``;
- depth is ``float32`` metres, shape ``(H, W)``; invalid pixels are ``NaN`` (never 0);
- 3-D points are in the camera *optical* frame (x right, y down, z forward) [m];
- stamps are integer nanoseconds (ROS ``builtin_interfaces/Time`` folded to ns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics without distortion (rectified images).

    fx, fy (float) [px]: focal lengths; cx, cy (float) [px]: principal point;
    width, height (int) [px]: image size the intrinsics belong to.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "CameraIntrinsics":
        """Square pixels, principal point at the image centre, horizontal FOV [deg]."""
        fx = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2.0)
        return cls(fx=fx, fy=fx, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0, width=width, height=height)

    @property
    def K(self) -> np.ndarray:
        """3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def deproject(self, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Pixels ``(u, v)`` [px] with depth ``z`` [m] -> points ``(..., 3)`` [m], optical frame."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        x = (u - self.cx) * z / self.fx
        y = (v - self.cy) * z / self.fy
        return np.stack([x, y, z], axis=-1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Points ``(..., 3)`` [m] in the optical frame -> pixels ``(..., 2)`` as (u, v) [px]."""
        p = np.asarray(points, dtype=np.float64)
        z = p[..., 2]
        return np.stack([self.fx * p[..., 0] / z + self.cx, self.fy * p[..., 1] / z + self.cy], axis=-1)


@dataclass
class Frame:
    """One synchronised camera frame, the unit every perception stage consumes.

    rgb: ``(H, W, 3)`` uint8 RGB.
    depth: ``(H, W)`` float32 [m], NaN where invalid; ``None`` for a colour-only camera.
    gt: simulator ground truth (``frs_ros.sim.types.SceneGroundTruth``) when the frame
        comes from the simulator; only the ``sim`` twin backend and evaluation may read it.
    """

    rgb: np.ndarray
    intrinsics: CameraIntrinsics
    stamp_ns: int = 0
    frame_id: str = "camera_color_optical_frame"
    seq: int = 0
    depth: Optional[np.ndarray] = None
    gt: Optional[Any] = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        h, w = self.rgb.shape[:2]
        if (w, h) != (self.intrinsics.width, self.intrinsics.height):
            raise ValueError(
                f"image is {w}x{h} but camera_info says {self.intrinsics.width}x{self.intrinsics.height}"
            )
        if self.depth is not None:
            if self.depth.shape != (h, w):
                raise ValueError(f"depth shape {self.depth.shape} does not match colour {(h, w)}")
            if self.depth.dtype != np.float32:
                raise ValueError(f"depth must be float32 metres, got {self.depth.dtype}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]
