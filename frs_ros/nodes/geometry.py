"""ROS-free geometry of the nodes: rigid transforms of target centroids (tf2 gives the transform)."""

from __future__ import annotations

import numpy as np


def apply_transform(translation: np.ndarray, quaternion_xyzw: np.ndarray, point: np.ndarray) -> np.ndarray:
    """``R(q) @ point + t`` [m]; NaN in, NaN out."""
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return rot @ np.asarray(point, dtype=float) + np.asarray(translation, dtype=float)
