"""Messages <-> core dataclasses: the only module (with the nodes) that knows ROS messages.

Readers (``*_from_msg``) are duck-typed: they accept rclpy messages and the ``rosbags``
library's deserialised messages alike (same field names), so the offline bag evaluation
uses exactly the code the nodes use. Builders (``*_to_msg``) return rclpy messages.

Image conventions (``frs_ros.camera``): colour is ``(H, W, 3)`` uint8 RGB; depth is
``(H, W)`` float32 metres with NaN where invalid (a 16UC1 ``0`` or a 32FC1 ``0``/NaN/inf
means "no measurement" and becomes NaN, never 0 m). Masks on the wire are mono8 0/255 with the
source image's header.

The own conversion is the primary path: the PyPI ``cv-bridge`` 1.13 maps 16UC1 to CV_8UC1.
``cv_bridge`` (when it imports) is only used for colour encodings this module does not know
(Bayer, YUV, ...), and its result is checked.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, PointStamped, Vector3
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from frs_ros.camera import CameraIntrinsics, Frame
from frs_ros.masks import RLE, rle_decode
from frs_ros.twin.types import DepthStats, DigitalTwin, TwinObject

from frs_ros.wire.image_codec import (  # noqa: F401 - re-exported: the readers live in the ROS-free codec
    _BRIDGE, _ENCODINGS, COLOR_ENCODINGS, DEPTH_ENCODINGS, ImageConversionError, color_from_msg, depth_from_msg,
    frame_from_msgs, image_to_array, instance_ids_from_msg, intrinsics_from_camera_info, mask_from_msg,
    overlay_rgb, stamp_to_ns,
)

try:
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose  # type: ignore

    HAVE_VISION_MSGS = True
except Exception:  # noqa: BLE001
    HAVE_VISION_MSGS = False


# ---------------------------------------------------------------------------------- time
def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time``."""
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"stamps must be >= 0 ns, got {ns}")
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=str(frame_id))


def copy_header(header: Any) -> Header:
    return Header(stamp=Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec)), frame_id=str(header.frame_id))


def array_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """Array -> ``sensor_msgs/Image`` in ``encoding`` (checked against the array's dtype/channels)."""
    if encoding not in _ENCODINGS:
        raise ImageConversionError(f"unsupported encoding '{encoding}'")
    dtype, ch = _ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.dtype != dtype or (arr.ndim == 2 and ch != 1) or (arr.ndim == 3 and arr.shape[2] != ch) or arr.ndim not in (2, 3):
        raise ImageConversionError(f"a '{encoding}' image needs {dtype} with {ch} channel(s), got {arr.shape} {arr.dtype}")
    arr = np.ascontiguousarray(arr.astype(dtype.newbyteorder("<"), copy=False))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * ch * dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def color_to_msg(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """``(H, W, 3)`` uint8 RGB -> rgb8 (or bgr8) Image."""
    if encoding == "bgr8":
        return array_to_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", header)
    return array_to_image(rgb, "rgb8", header)


def depth_to_msg(depth: np.ndarray, header: Header, encoding: str = "32FC1") -> Image:
    """``(H, W)`` float [m] (NaN invalid) -> 32FC1 [m] or 16UC1 [mm] (0 invalid) Image."""
    depth = np.asarray(depth, dtype=np.float32)
    if encoding == "32FC1":
        return array_to_image(depth, "32FC1", header)
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0.0)
        return array_to_image(np.clip(mm, 0, 65535).astype(np.uint16), "16UC1", header)
    raise ImageConversionError(f"depth encoding must be '16UC1' or '32FC1', got '{encoding}'")


def mask_to_msg(mask: np.ndarray, header: Header) -> Image:
    """``(H, W)`` bool mask -> mono8 Image, 0 background / 255 target."""
    return array_to_image(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), "mono8", header)


def instance_ids_to_msg(instance_map: np.ndarray, header: Header, encoding: str = "32SC1") -> Image:
    """``(H, W)`` integer id image -> 32SC1 (or mono16 when ids fit in 16 bits)."""
    ids = np.asarray(instance_map)
    if encoding == "mono16":
        if ids.size and (ids.min() < 0 or ids.max() > 65535):
            raise ImageConversionError("instance ids do not fit mono16; use 32SC1")
        return array_to_image(ids.astype(np.uint16), "mono16", header)
    return array_to_image(ids.astype(np.int32), "32SC1", header)


# ---------------------------------------------------------------------------- camera info
def intrinsics_to_camera_info(k: CameraIntrinsics, header: Header) -> CameraInfo:
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = int(k.width), int(k.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [float(k.fx), 0.0, float(k.cx), 0.0, float(k.fy), float(k.cy), 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(k.fx), 0.0, float(k.cx), 0.0, 0.0, float(k.fy), float(k.cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


# ----------------------------------------------------------------------------- twin/targets
def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def depth_stats_to_msg(d: DepthStats):
    from frs_ros.msg import DepthStats as DepthStatsMsg

    return DepthStatsMsg(mean=_f(d.mean), std=_f(d.std), min=_f(d.min), max=_f(d.max), median=_f(d.median),
                         valid_fraction=float(d.valid_fraction), source=str(d.source),
                         missing_reason=d.missing_reason or "")


def depth_stats_from_msg(m: Any) -> DepthStats:
    return DepthStats(mean=float(m.mean), std=float(m.std), min=float(m.min), max=float(m.max),
                      median=float(m.median), valid_fraction=float(m.valid_fraction), source=str(m.source),
                      missing_reason=str(m.missing_reason) or None)


def box_to_roi(box: Sequence[int]) -> RegionOfInterest:
    x0, y0, x1, y1 = (int(v) for v in box)
    return RegionOfInterest(x_offset=max(0, x0), y_offset=max(0, y0), width=max(0, x1 - x0),
                            height=max(0, y1 - y0), do_rectify=False)


def _vec3(v: Any) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=float).reshape(-1)
    return (float(a[0]), float(a[1]), float(a[2])) if a.size == 3 else (math.nan,) * 3


def twin_object_to_msg(o: TwinObject):
    from frs_ros.msg import TwinObject as TwinObjectMsg

    m = TwinObjectMsg()
    m.track_id = int(o.track_id)
    m.label = str(o.label)
    m.score = _f(o.score)
    m.alt_labels = [str(lab) for lab, _ in o.alt_labels]
    m.alt_scores = [_f(s) for _, s in o.alt_labels]
    m.box = box_to_roi(o.box)
    m.area_px = int(o.area_px)
    m.mask_height, m.mask_width = int(o.mask.size[0]), int(o.mask.size[1])
    m.mask_rle = [int(c) for c in o.mask.counts]
    m.depth = depth_stats_to_msg(o.depth)
    x, y, z = _vec3(o.centroid_m)
    m.centroid = Point(x=x, y=y, z=z)
    vx, vy, vz = _vec3(o.velocity_mps)
    m.velocity = Vector3(x=vx, y=vy, z=vz)
    m.visible = bool(o.visible)
    m.first_seen = ns_to_stamp(max(0, int(o.first_seen_ns)))
    m.last_seen = ns_to_stamp(max(0, int(o.last_seen_ns)))
    m.attributes_json = json.dumps(o.attributes, default=str, sort_keys=True)
    return m


def twin_object_from_msg(m: Any) -> TwinObject:
    """Inverse of ``twin_object_to_msg`` (history/motion extras are not on the wire)."""
    rle = RLE(size=(int(m.mask_height), int(m.mask_width)), counts=tuple(int(c) for c in m.mask_rle))
    if sum(rle.counts) != rle.size[0] * rle.size[1]:
        raise ValueError(f"track {m.track_id}: mask RLE sums to {sum(rle.counts)}, not {rle.size[0]}x{rle.size[1]}")
    b = m.box
    return TwinObject(
        track_id=int(m.track_id), mask=rle,
        box=(int(b.x_offset), int(b.y_offset), int(b.x_offset + b.width), int(b.y_offset + b.height)),
        area_px=int(m.area_px), label=str(m.label), score=float(m.score),
        alt_labels=[(str(a), float(s)) for a, s in zip(m.alt_labels, m.alt_scores)],
        depth=depth_stats_from_msg(m.depth),
        centroid_m=np.array([m.centroid.x, m.centroid.y, m.centroid.z], dtype=float),
        velocity_mps=np.array([m.velocity.x, m.velocity.y, m.velocity.z], dtype=float),
        first_seen_ns=stamp_to_ns(m.first_seen), last_seen_ns=stamp_to_ns(m.last_seen),
        visible=bool(m.visible), attributes=json.loads(m.attributes_json or "{}"),
    )


def twin_to_msg(twin: DigitalTwin):
    from frs_ros.msg import DigitalTwin as DigitalTwinMsg

    header = make_header(twin.stamp_ns, twin.frame_id)
    m = DigitalTwinMsg()
    m.header = header
    m.seq = int(twin.seq) & 0xFFFFFFFF
    m.depth_source = str(twin.depth_source)
    m.motion_frame = str(twin.motion_frame)
    m.start = ns_to_stamp(twin.start_ns)
    m.keyframe_stamp = ns_to_stamp(twin.keyframe_ns)
    m.camera_info = intrinsics_to_camera_info(twin.intrinsics, header)
    m.objects = [twin_object_to_msg(o) for o in twin.objects]
    return m


def twin_from_msg(m: Any) -> DigitalTwin:
    """``frs_ros/DigitalTwin`` -> core ``DigitalTwin`` (used when the reasoner runs in its own process)."""
    return DigitalTwin(
        stamp_ns=stamp_to_ns(m.header.stamp), frame_id=str(m.header.frame_id),
        intrinsics=intrinsics_from_camera_info(m.camera_info),
        objects=[twin_object_from_msg(o) for o in m.objects], seq=int(m.seq), depth_source=str(m.depth_source),
        motion_frame=str(m.motion_frame) or "camera", start_ns=stamp_to_ns(m.start),
        keyframe_ns=stamp_to_ns(m.keyframe_stamp),
    )


def instance_id_image(twin: DigitalTwin, visible_only: bool = True) -> np.ndarray:
    """``(H, W)`` int32 image of track ids (0 = no object) from the twin's masks; smaller objects win overlaps."""
    ids = np.zeros(twin.image_size, dtype=np.int32)
    for o in sorted(twin.objects, key=lambda o: o.area_px, reverse=True):  # small objects on top
        if visible_only and not o.visible:
            continue
        if tuple(o.mask.size) != tuple(ids.shape):
            continue
        ids[rle_decode(o.mask)] = int(o.track_id)
    return ids


def target_to_msg(t: Any, header: Header, centroid_header: Optional[Header] = None,
                  centroid_m: Optional[np.ndarray] = None):
    """Core ``Target`` -> ``frs_ros/Target``; mask as mono8 0/255 with the source header.

    centroid_header/centroid_m: the centroid after a tf2 transform (defaults: the optical frame).
    """
    from frs_ros.msg import Target as TargetMsg

    m = TargetMsg()
    m.header = header
    m.track_id = int(t.track_id)
    m.label = str(t.label)
    m.score = _f(t.score)
    m.mask = mask_to_msg(t.mask, header)
    m.box = box_to_roi(t.box)
    m.depth = depth_stats_to_msg(t.depth)
    x, y, z = _vec3(t.centroid_m if centroid_m is None else centroid_m)
    m.centroid = PointStamped(header=centroid_header or header, point=Point(x=x, y=y, z=z))
    return m


def targets_to_msg(targets: Iterable[Any], header: Header, query: str, goal_id: str,
                   centroids: Optional[list[tuple[Header, np.ndarray]]] = None):
    from frs_ros.msg import TargetArray

    m = TargetArray()
    m.header = header
    m.query = str(query)
    m.goal_id = str(goal_id)
    targets = list(targets)
    m.targets = [
        target_to_msg(t, header, *(centroids[i] if centroids else (None, None))) for i, t in enumerate(targets)
    ]
    return m


def detections_to_msg(targets: Iterable[Any], header: Header):
    """``vision_msgs/Detection2DArray`` of the targets, or ``None`` where vision_msgs is missing."""
    if not HAVE_VISION_MSGS:
        return None
    arr = Detection2DArray(header=header)
    for t in targets:
        d = Detection2D(header=header)
        x0, y0, x1, y1 = (float(v) for v in t.box)
        d.bbox.center.position.x = (x0 + x1) / 2.0
        d.bbox.center.position.y = (y0 + y1) / 2.0
        d.bbox.size_x, d.bbox.size_y = x1 - x0, y1 - y0
        d.id = str(t.track_id)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(t.label)
        hyp.hypothesis.score = float(t.score)
        c = np.asarray(t.centroid_m, dtype=float)
        if c.size == 3 and np.all(np.isfinite(c)):
            hyp.pose.pose.position = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
        d.results.append(hyp)
        arr.detections.append(d)
    return arr


# ------------------------------------------------------------------------------------ markers
def _marker(header: Header, ns: int | str, mid: int, mtype: int, xyz, scale, rgba, text: str = "",
            lifetime_s: float = 0.0) -> Marker:
    m = Marker(header=header, ns=str(ns), id=int(mid), type=mtype, action=Marker.ADD)
    m.pose.position = Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))
    m.pose.orientation.w = 1.0
    m.scale = Vector3(x=float(scale[0]), y=float(scale[1]), z=float(scale[2]))
    m.color = ColorRGBA(r=float(rgba[0]), g=float(rgba[1]), b=float(rgba[2]), a=float(rgba[3]))
    m.text = text
    sec = int(lifetime_s)
    m.lifetime = Duration(sec=sec, nanosec=int((lifetime_s - sec) * 1e9))
    return m


def _delete_all(header: Header, ns: str) -> Marker:
    return Marker(header=header, ns=ns, id=0, action=Marker.DELETEALL)


def track_color(track_id: int) -> tuple[float, float, float]:
    """A stable, distinct colour per track id (golden-ratio hue walk), RGB in [0, 1]."""
    import colorsys

    return colorsys.hsv_to_rgb((int(track_id) * 0.618033988749895) % 1.0, 0.75, 0.95)


def twin_markers(twin: DigitalTwin, header: Header) -> MarkerArray:
    """Delete-all, then a sphere and a "#id label" text per object with a finite 3-D centroid."""
    arr = MarkerArray()
    arr.markers.append(_delete_all(header, "frs_twin"))
    for o in twin.objects:
        c = np.asarray(o.centroid_m, dtype=float)
        if c.size != 3 or not np.all(np.isfinite(c)):
            continue
        r, g, b = track_color(o.track_id)
        alpha = 0.9 if o.visible else 0.3
        arr.markers.append(_marker(header, "frs_twin", 2 * o.track_id, Marker.SPHERE, c, (0.04, 0.04, 0.04), (r, g, b, alpha)))
        arr.markers.append(_marker(header, "frs_twin", 2 * o.track_id + 1, Marker.TEXT_VIEW_FACING,
                                   (c[0], c[1] - 0.05, c[2]), (0.0, 0.0, 0.03), (1.0, 1.0, 1.0, alpha),
                                   f"#{o.track_id} {o.label}"))
    return arr


def target_markers(targets: Iterable[Any], header: Header, centroids: Optional[list[np.ndarray]] = None) -> MarkerArray:
    """Delete-all, then a green sphere + "target #id label (z m)" text per target with a 3-D centroid."""
    arr = MarkerArray()
    arr.markers.append(_delete_all(header, "frs_target"))
    for i, t in enumerate(targets):
        c = np.asarray(t.centroid_m if centroids is None else centroids[i], dtype=float)
        if c.size != 3 or not np.all(np.isfinite(c)):
            continue
        arr.markers.append(_marker(header, "frs_target", 2 * i, Marker.SPHERE, c, (0.07, 0.07, 0.07), (0.1, 1.0, 0.2, 0.8)))
        arr.markers.append(_marker(header, "frs_target", 2 * i + 1, Marker.TEXT_VIEW_FACING, (c[0], c[1] - 0.08, c[2]),
                                   (0.0, 0.0, 0.04), (0.1, 1.0, 0.2, 1.0),
                                   f"target #{t.track_id} {t.label} ({c[2]:.2f} m)"))
    return arr


