"""Per-object depth statistics, 3-D centroids and velocities (pure numpy, no models).

Centroid choice: we deproject *every valid pixel* of the mask with its own depth and take
the **median per axis** (x, y, z). The median is robust to the depth edges that bleed
background into a mask's rim (a mean would be dragged backwards by a few far pixels) and,
unlike "centre pixel at median depth", it follows the object's real extent when the mask
is concave or partly occluded.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics
from frs_ros.twin.types import DepthStats

#: DepthStats.source values whose numbers are metres (others are unitless scores).
METRIC_SOURCES = ("sensor", "depth_anything_v2_metric")


def depth_stats(depth: Optional[np.ndarray], mask: np.ndarray, source: str) -> DepthStats:
    """Statistics of ``depth`` under ``mask``.

    depth: ``(H, W)`` float32 [m] (or relative units when ``source`` says so), NaN invalid;
        ``None`` when the frame has no depth at all.
    mask: ``(H, W)`` bool.
    source: recorded in the result ('sensor', 'depth_anything_v2_metric', ...).
    Returns NaN statistics with a ``missing_reason`` (never 0) when there is no depth image,
    the mask is empty, or no mask pixel has a valid (finite, > 0) depth.
    """
    if depth is None:
        return DepthStats(source="none", missing_reason="no depth image")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != depth.shape:
        raise ValueError(f"mask shape {mask.shape} does not match depth shape {depth.shape}")
    n = int(mask.sum())
    if n == 0:
        return DepthStats(source=source, missing_reason="empty mask")
    values = depth[mask].astype(np.float64)
    # 0 and negatives are invalid too: some drivers encode "no return" as 0.
    valid = np.isfinite(values) & (values > 0)
    values = values[valid]
    if values.size == 0:
        return DepthStats(source=source, valid_fraction=0.0, missing_reason="no valid depth pixels under the mask")
    return DepthStats(
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        median=float(np.median(values)),
        valid_fraction=float(values.size / n),
        source=source,
        missing_reason=None,
    )


def mask_centroid_m(depth: Optional[np.ndarray], mask: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """3-D centroid ``(3,)`` [m], optical frame: per-axis median of the deprojected valid mask pixels.

    NaN ``(3,)`` when depth is missing or no pixel under the mask is valid. ``depth`` must be metric.
    """
    if depth is None:
        return np.full(3, np.nan)
    vs, us = np.nonzero(mask)
    if vs.size == 0:
        return np.full(3, np.nan)
    z = depth[vs, us].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    if not ok.any():
        return np.full(3, np.nan)
    pts = intrinsics.deproject(us[ok], vs[ok], z[ok])
    return np.median(pts, axis=0)


def velocity_from_history(history: list[tuple[int, np.ndarray]], window_s: float = 1.0) -> np.ndarray:
    """Velocity ``(3,)`` [m/s] by a least-squares line through the finite centroid samples of the last
    ``window_s`` seconds (a fit, not a two-point difference, so mask jitter averages out).

    history: ``[(stamp_ns, centroid (3,) m), ...]`` in time order. NaN until two samples with
    distinct stamps exist.
    """
    samples = [(t, np.asarray(c, dtype=float)) for t, c in history if np.all(np.isfinite(c))]
    if len(samples) < 2:
        return np.full(3, np.nan)
    t_last = samples[-1][0]
    samples = [(t, c) for t, c in samples if (t_last - t) <= window_s * 1e9] or samples[-2:]
    if len(samples) < 2:
        samples = [(t, np.asarray(c, dtype=float)) for t, c in history if np.all(np.isfinite(c))][-2:]
    t = np.array([s[0] for s in samples], dtype=np.float64) * 1e-9
    c = np.stack([s[1] for s in samples])
    t = t - t.mean()
    denom = float((t**2).sum())
    if denom <= 0.0:
        return np.full(3, np.nan)
    return (t[:, None] * (c - c.mean(axis=0))).sum(axis=0) / denom


def metric_extent_m(box: tuple[int, int, int, int], median_depth_m: float, intrinsics: CameraIntrinsics) -> tuple[float, float]:
    """Approximate (width, height) [m] of a box seen at ``median_depth_m``: ``px * z / f``. NaN if depth unknown."""
    if not math.isfinite(median_depth_m):
        return math.nan, math.nan
    x0, y0, x1, y1 = box
    return (x1 - x0) * median_depth_m / intrinsics.fx, (y1 - y0) * median_depth_m / intrinsics.fy
