"""File helpers shared by the dataset readers/writers: images, depth PNGs, intrinsics, JSON.

Depth extension format: 16-bit single-channel PNG, millimetres, 0 = invalid
(the RealSense / TUM convention). Reading gives float32 metres with NaN for 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from frs_ros.camera import CameraIntrinsics
from frs_ros.data.types import DatasetFormatError

#: Largest depth a 16-bit millimetre PNG can hold [m].
MAX_DEPTH_M = 65.535


def read_json(path: Path) -> Any:
    """Parse JSON; falls back to cp1252 like LISA's ReasonSeg reader (a few files need it)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        try:
            return json.loads(path.read_text(encoding="cp1252"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError(f"{path}: missing or not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write ``(H, W, 3)`` uint8 RGB; format from the suffix (``.jpg`` lossy, ``.png`` exact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"{path}: could not write image")


def depth_to_png_mm(depth_m: np.ndarray) -> np.ndarray:
    """``(H, W)`` float [m], NaN invalid -> uint16 [mm], 0 invalid.

    Raises ``ValueError`` for depths a 16-bit mm PNG cannot hold (< 0.5 mm, which
    would read back as invalid, or > 65.535 m) instead of silently dropping them.
    """
    d = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(d)
    mm = np.zeros(d.shape, dtype=np.uint16)
    if valid.any():
        v = np.rint(d[valid] * 1000.0)
        if v.min() < 1 or v.max() > 65535:
            raise ValueError(
                f"depth range [{d[valid].min():.4f}, {d[valid].max():.4f}] m does not fit a 16-bit mm PNG "
                f"(0.0005 .. {MAX_DEPTH_M} m); set far/near pixels to NaN first"
            )
        mm[valid] = v.astype(np.uint16)
    return mm


def write_depth_png(path: Path, depth_m: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), depth_to_png_mm(depth_m)):
        raise OSError(f"{path}: could not write depth PNG")


def read_depth_png(path: Path) -> np.ndarray:
    """16-bit mm PNG -> ``(H, W)`` float32 [m], NaN where the PNG holds 0."""
    mm = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mm is None:
        raise DatasetFormatError(f"{path}: missing or not a readable depth PNG")
    if mm.dtype != np.uint16 or mm.ndim != 2:
        raise DatasetFormatError(f"{path}: depth PNG must be single-channel 16-bit, got {mm.dtype} {mm.shape}")
    out = mm.astype(np.float32) / 1000.0
    out[mm == 0] = np.nan
    return out


def intrinsics_to_json(k: CameraIntrinsics) -> dict:
    return {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height}


def intrinsics_from_json(d: Optional[dict], where: str) -> Optional[CameraIntrinsics]:
    if d is None:
        return None
    try:
        return CameraIntrinsics(
            fx=float(d["fx"]), fy=float(d["fy"]), cx=float(d["cx"]), cy=float(d["cy"]),
            width=int(d["width"]), height=int(d["height"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{where}: bad intrinsics {d!r:.120} ({exc})") from exc

