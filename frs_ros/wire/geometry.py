"""ROS-free geometry of the nodes: rigid transforms of target centroids (tf2 gives the transform)."""

from __future__ import annotations

import numpy as np


def quaternion_matrix(quaternion_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation of a unit quaternion (x, y, z, w)."""
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def transform_matrix(translation: np.ndarray, quaternion_xyzw: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform [m] from a translation and a quaternion (a tf2 TransformStamped)."""
    T = np.eye(4)
    T[:3, :3] = quaternion_matrix(quaternion_xyzw)
    T[:3, 3] = np.asarray(translation, dtype=float)
    return T


def apply_transform(translation: np.ndarray, quaternion_xyzw: np.ndarray, point: np.ndarray) -> np.ndarray:
    """``R(q) @ point + t`` [m]; NaN in, NaN out."""
    return quaternion_matrix(quaternion_xyzw) @ np.asarray(point, dtype=float) + np.asarray(translation, dtype=float)
