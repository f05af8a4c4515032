"""ROS-free image/camera_info decoding (duck-typed), shared by the nodes and the bag tools.

Accepts rclpy messages and the ``rosbags`` library's deserialised messages alike (same field
names): the offline bag evaluation decodes images with exactly the code the nodes use, without
importing ROS. See ``frs_ros.nodes.conversions`` for the conventions and the builders.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from frs_ros.camera import CameraIntrinsics, Frame

try:  # real ROS installs; not on PyPI (see ENVIRONMENT.md)
    from cv_bridge import CvBridge  # type: ignore

    _BRIDGE: Any = CvBridge()
except Exception:  # noqa: BLE001 - missing or broken cv_bridge: own conversion only
    _BRIDGE = None


class ImageConversionError(ValueError):
    """An image/camera_info message cannot be converted; the message says what to fix."""


# encoding -> (numpy dtype, channels)
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "32SC1": (np.dtype(np.int32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# -------------------------------------------------------------------------------- images
def image_to_array(msg: Any) -> np.ndarray:
    """Any supported ``sensor_msgs/Image`` -> ``(H, W)`` or ``(H, W, C)`` array in its own dtype.

    Handles row padding (``step`` > width * bytes per pixel) and big-endian data; raises
    ``ImageConversionError`` for an unknown encoding, a zero size, a ``step`` too small for the
    width, or a ``data`` length that is not ``step * height``.
    """
    enc = str(msg.encoding)
    if enc not in _ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding '{enc}'; publish one of {sorted(_ENCODINGS)} "
            "(colour: rgb8/bgr8/mono8, depth: 16UC1 [mm] or 32FC1 [m])"
        )
    dtype, ch = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"image has zero size ({w}x{h}); check the camera driver")
    row_bytes = w * ch * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} B is smaller than width*channels*bytes = {row_bytes} B for a "
            f"{w}x{h} '{enc}' image; the message header and data disagree"
        )
    buf = np.frombuffer(memoryview(msg.data).cast("B") if not isinstance(msg.data, np.ndarray) else msg.data,
                        dtype=np.uint8)
    if buf.size != step * h:
        raise ImageConversionError(
            f"image data is {buf.size} B but step*height = {step}*{h} = {step * h} B for a {w}x{h} "
            f"'{enc}' image; the message is truncated or its size fields are wrong"
        )
    rows = buf.reshape(h, step)[:, :row_bytes]
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    arr = np.ascontiguousarray(rows).view(dt).reshape((h, w, ch) if ch > 1 else (h, w))
    return arr.astype(dtype, copy=False) if dt != dtype else arr


def color_from_msg(msg: Any) -> np.ndarray:
    """Colour image message -> ``(H, W, 3)`` uint8 RGB (mono8 is replicated to grey RGB)."""
    enc = str(msg.encoding)
    if enc in DEPTH_ENCODINGS or enc == "32SC1":
        raise ImageConversionError(
            f"the colour topic carries a '{enc}' image (a depth/label encoding); point the colour "
            "topic at an rgb8/bgr8/mono8 stream"
        )
    if enc not in _ENCODINGS and _BRIDGE is not None:
        try:
            arr = np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as exc:  # noqa: BLE001
            raise ImageConversionError(f"cv_bridge could not convert a '{enc}' image to rgb8: {exc}") from exc
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageConversionError(f"cv_bridge returned {arr.shape} {arr.dtype} for '{enc}'; publish rgb8")
        return np.ascontiguousarray(arr)
    arr = image_to_array(msg)
    if enc == "rgb8":
        return arr
    if enc == "bgr8":
        return np.ascontiguousarray(arr[..., ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(arr[..., :3])
    if enc == "bgra8":
        return np.ascontiguousarray(arr[..., 2::-1])
    if enc in ("mono8", "8UC1"):
        return np.repeat(arr[..., None], 3, axis=2)
    raise ImageConversionError(f"'{enc}' is not a colour encoding; publish rgb8, bgr8 or mono8")


def depth_from_msg(msg: Any) -> np.ndarray:
    """Depth image message -> ``(H, W)`` float32 [m], NaN where invalid.

    16UC1/mono16: millimetres, ``0`` = no measurement. 32FC1: metres, ``0``/NaN/±inf = no
    measurement.
    """
    enc = str(msg.encoding)
    if enc not in DEPTH_ENCODINGS:
        raise ImageConversionError(
            f"unsupported depth encoding '{enc}'; publish 16UC1 (millimetres) or 32FC1 (metres), "
            "e.g. the camera driver's aligned depth topic"
        )
    arr = image_to_array(msg)
    if enc in ("16UC1", "mono16"):
        depth = arr.astype(np.float32) * np.float32(0.001)
        depth[arr == 0] = np.nan
        return depth
    depth = arr.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def mask_from_msg(msg: Any) -> np.ndarray:
    """mono8 mask Image -> ``(H, W)`` bool (non-zero = target)."""
    if str(msg.encoding) not in ("mono8", "8UC1"):
        raise ImageConversionError(f"a mask must be mono8, got '{msg.encoding}'")
    return image_to_array(msg) > 0


def instance_ids_from_msg(msg: Any) -> np.ndarray:
    if str(msg.encoding) not in ("32SC1", "mono16", "16UC1"):
        raise ImageConversionError(f"an instance-id image must be 32SC1 or mono16, got '{msg.encoding}'")
    return image_to_array(msg).astype(np.int32)


def intrinsics_from_camera_info(msg: Any) -> CameraIntrinsics:
    """``sensor_msgs/CameraInfo`` -> ``CameraIntrinsics`` (uses ``k``; rectified images assumed)."""
    k = [float(x) for x in msg.k]
    if len(k) != 9 or not all(math.isfinite(x) for x in k):
        raise ImageConversionError("camera_info.k must be 9 finite numbers; is the camera calibrated?")
    try:
        return CameraIntrinsics(fx=k[0], fy=k[4], cx=k[2], cy=k[5], width=int(msg.width), height=int(msg.height))
    except ValueError as exc:
        raise ImageConversionError(f"camera_info is not usable ({exc}); is the camera calibrated?") from exc


def frame_from_msgs(color: Any, depth: Any | None, info: Any, seq: int = 0) -> Frame:
    """A synchronised (colour, depth or None, camera_info) triple -> ``Frame``.

    The colour header gives stamp and frame id; sizes must agree (depth aligned to colour).
    """
    rgb = color_from_msg(color)
    intr = intrinsics_from_camera_info(info)
    h, w = rgb.shape[:2]
    if (intr.width, intr.height) != (w, h):
        raise ImageConversionError(
            f"colour image is {w}x{h} but camera_info says {intr.width}x{intr.height}; "
            "use the camera_info topic of the same stream"
        )
    d = None
    if depth is not None:
        d = depth_from_msg(depth)
        if d.shape != (h, w):
            raise ImageConversionError(
                f"depth image is {d.shape[1]}x{d.shape[0]} but colour is {w}x{h}; subscribe to the depth "
                "stream aligned to colour (e.g. aligned_depth_to_color)"
            )
    return Frame(rgb=rgb, intrinsics=intr, stamp_ns=stamp_to_ns(color.header.stamp),
                 frame_id=str(color.header.frame_id), seq=int(seq), depth=d)


# ------------------------------------------------------------------------------------ overlay
def overlay_rgb(rgb: np.ndarray, mask: np.ndarray, color=(0, 255, 0), alpha: float = 0.5) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB with ``mask`` tinted by ``color`` and a 1-px contour; a copy."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    m = np.asarray(mask, dtype=bool)
    if m.shape != out.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match image {out.shape[:2]}")
    col = np.asarray(color, dtype=np.float32)
    out[m] = (out[m].astype(np.float32) * (1.0 - alpha) + col * alpha).astype(np.uint8)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    out[m & ~inner] = np.asarray(color, dtype=np.uint8)
    return out
