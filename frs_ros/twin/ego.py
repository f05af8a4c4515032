"""Camera ego-motion from the twin itself, so that a moving camera does not make every object "move".

Centroids are measured in the *current* camera optical frame. Motion (history, displacement,
velocity) is kept in a fixed *motion frame* instead:

- 'world': ``frame.extras['T_world_camera']`` (4x4, camera optical -> world) is given (tf2 on a
  robot, or a simulator that exports its camera pose): exact.
- 'anchor': no pose, but >= 3 tracked objects: the optical frame of the first frame, with the
  camera pose estimated by registering each object's current centroid to where it was first
  seen (in the anchor frame) — a rigid fit with RANSAC, so objects that really moved are
  outliers and the static majority defines the camera motion. Registering to first sightings
  (not frame to frame) keeps the estimate free of drift and makes a slowly moving object an
  outlier as soon as it has moved more than ``inlier_m``.
- 'camera': neither; the camera is assumed static (stated in the twin so nobody is misled).
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rigid transform (Kabsch, no scale) with ``dst ~ R @ src + t``; returns 4x4.

    src, dst: ``(N, 3)`` [m], N >= 3 (N < 3 gives a translation-only fit).
    """
    src = np.asarray(src, float)
    dst = np.asarray(dst, float)
    T = np.eye(4)
    cs, cd = src.mean(0), dst.mean(0)
    if len(src) >= 3:
        H = (src - cs).T @ (dst - cd)
        U, _, Vt = np.linalg.svd(H)
        d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
        R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    else:
        R = np.eye(3)
    T[:3, :3] = R
    T[:3, 3] = cd - R @ cs
    return T


def apply(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Transform points ``(..., 3)`` by a 4x4 ``T``."""
    p = np.asarray(p, float)
    return p @ T[:3, :3].T + T[:3, 3]


def ransac_rigid(src: np.ndarray, dst: np.ndarray, inlier_m: float = 0.05, max_trials: int = 300) -> tuple[Optional[np.ndarray], np.ndarray]:
    """Robust rigid fit ``dst ~ T src``: every 3-subset (up to ``max_trials``) proposes a fit, the
    one with most inliers (residual < ``inlier_m`` [m]) wins and is refit on its inliers.

    Returns ``(T 4x4 or None when fewer than 3 inliers, inlier mask (N,))``.
    """
    n = len(src)
    if n < 3:
        return None, np.zeros(n, bool)
    best_inl, best_err = None, np.inf
    for trial, idx in enumerate(itertools.combinations(range(n), 3)):
        if trial >= max_trials:
            break
        T = rigid_fit(src[list(idx)], dst[list(idx)])
        res = np.linalg.norm(apply(T, src) - dst, axis=1)
        inl = res < inlier_m
        err = float(res[inl].sum())
        if best_inl is None or inl.sum() > best_inl.sum() or (inl.sum() == best_inl.sum() and err < best_err):
            best_inl, best_err = inl, err
    if best_inl is None or best_inl.sum() < 3:
        return None, np.zeros(n, bool)
    return rigid_fit(src[best_inl], dst[best_inl]), best_inl
