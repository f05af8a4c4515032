"""rosbag2 files (sqlite3 and mcap) without a ROS install, through the ``rosbags`` library.

- ``typestore()``: ROS 2 Kilted message types plus frs_ros's own (registered from the
  ``msg/*.msg`` text of this package), so our outputs (``frs_ros/msg/TargetArray``, ...) can be
  written and read back.
- ``BagWriter``: write rosbags messages (``write``) or already CDR-serialised bytes
  (``write_raw``: what ``rclpy.serialization.serialize_message`` or a raw subscription gives —
  the demo's recorder uses that, no conversion needed).
- ``read_messages``: iterate ``(topic, msgtype, stamp_ns, message)`` deserialised.
- ``read_frames``: synchronised ``Frame`` s from colour/depth/camera_info topics of a bag (the
  same decoding and synchroniser as the camera ingest node).
- ``write_sim_bag``: a simulated episode as a camera bag (the test and example input).

No ROS imports: the images are decoded by ``frs_ros.wire.image_codec`` (duck-typed).
"""

from __future__ import annotations

import functools
import glob
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from frs_ros.camera import Frame

STORAGES = ("mcap", "sqlite3")
#: the camera topics most drivers publish (RealSense-style names), used as defaults
DEFAULT_TOPICS = {
    "color": "/camera/color/image_raw",
    "depth": "/camera/aligned_depth_to_color/image_raw",
    "info": "/camera/color/camera_info",
}
#: the synchronised triple republished by the camera ingest node (identical stamps)
FRAME_TOPICS = {"color": "/frs/frame/color", "depth": "/frs/frame/depth", "info": "/frs/frame/camera_info"}
#: simulator ground truth as the sim camera publishes it (read back onto ``Frame.gt``)
SIM_TOPICS = {"ids": "/frs/sim/instance_ids", "objects": "/frs/sim/objects"}


class BagError(RuntimeError):
    """A bag cannot be read or written as asked; the message says what to change."""


def _msg_dir() -> Optional[str]:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory  # only where ROS is installed

        candidates.append(Path(get_package_share_directory("frs_ros")) / "msg")
    except Exception:  # noqa: BLE001
        pass
    for c in candidates:
        if c.is_dir() and list(c.glob("*.msg")):
            return str(c)
    return None


@functools.lru_cache(maxsize=1)
def typestore():
    """Kilted types + ``frs_ros/msg/*`` (from the package's ``.msg`` files)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    d = _msg_dir()
    if d is None:
        raise BagError("cannot find frs_ros's msg/*.msg files (source tree or share/frs_ros/msg)")
    types: dict = {}
    for path in sorted(glob.glob(os.path.join(d, "*.msg"))):
        name = f"frs_ros/msg/{Path(path).stem}"
        types.update(get_types_from_msg(Path(path).read_text(encoding="utf-8"), name))
    store.register(types)
    return store


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {STORAGES}, got {storage!r}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


class BagWriter:
    """A rosbag2 writer; ``path`` is the bag directory (must not exist)."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists; rosbag2 writes a new directory — remove it or pick another path")
        self.store = typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=_storage_plugin(storage))
        self._writer.open()
        self._conns: dict[tuple[str, str], Any] = {}
        self.count = 0

    def _conn(self, topic: str, msgtype: str):
        key = (topic, msgtype)
        if key not in self._conns:
            self._conns[key] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        return self._conns[key]

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg: Any) -> None:
        """Write a rosbags message object of type ``msgtype`` (e.g. ``sensor_msgs/msg/Image``)."""
        self.write_raw(topic, msgtype, stamp_ns, self.store.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None:
        """Write CDR bytes (``rclpy.serialization.serialize_message``) of type ``msgtype``."""
        self._writer.write(self._conn(topic, msgtype), int(stamp_ns), bytes(data))
        self.count += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_messages(path: str | Path, topics: Optional[Iterable[str]] = None) -> Iterator[tuple[str, str, int, Any]]:
    """``(topic, msgtype, log stamp [ns], message)`` in log order; ``topics`` filters."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}")
    store = typestore()
    with Reader(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in set(topics)]
        for conn, stamp, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, int(stamp), store.deserialize_cdr(raw, conn.msgtype)


def bag_topics(path: str | Path) -> dict[str, str]:
    """``{topic: msgtype}`` of a bag."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_frames(path: str | Path, color_topic: Optional[str] = None, depth_topic: Optional[str] = None,
                info_topic: Optional[str] = None, slop_s: float = 0.05) -> Iterator[Frame]:
    """Synchronised frames of a bag (depth optional: ``depth_topic=''``).

    Topics default to ``/frs/frame/*`` when the bag has them (the ingest node's synchronised
    output), else the RealSense-style camera topics. Undecodable sets are skipped.
    """
    from frs_ros.wire.image_codec import ImageConversionError, frame_from_msgs, stamp_to_ns
    from frs_ros.wire.sync import ApproximateTimeSync

    have = bag_topics(path)
    base = FRAME_TOPICS if FRAME_TOPICS["color"] in have else DEFAULT_TOPICS
    color_topic = color_topic or base["color"]
    info_topic = info_topic or base["info"]
    depth_topic = base["depth"] if depth_topic is None else depth_topic
    if depth_topic and depth_topic not in have:
        depth_topic = ""
    for t in (color_topic, info_topic):
        if t not in have:
            raise BagError(f"the bag has no topic {t}; it has {sorted(have)}")
    keys = {"color": color_topic, "info": info_topic}
    if depth_topic:
        keys["depth"] = depth_topic
    by_topic = {v: k for k, v in keys.items()}
    sync = ApproximateTimeSync(list(keys), int(slop_s * 1e9), queue_size=10)
    with_gt = all(t in have for t in SIM_TOPICS.values())
    gt = None
    if with_gt:
        from frs_ros.wire.image_codec import instance_ids_from_msg
        from frs_ros.wire.sim_wire import GroundTruthAssembler

        gt, assembled = GroundTruthAssembler(capacity=64), {}
    topics = list(keys.values()) + (list(SIM_TOPICS.values()) if with_gt else [])
    pending: list[Frame] = []
    seq = 0
    for topic, _type, _stamp, msg in read_messages(path, topics):
        if with_gt and topic == SIM_TOPICS["ids"]:
            done = gt.add_instance_map(stamp_to_ns(msg.header.stamp), instance_ids_from_msg(msg))
        elif with_gt and topic == SIM_TOPICS["objects"]:
            done = gt.add_objects(msg.data)
        else:
            done = None
            out = sync.add(by_topic[topic], stamp_to_ns(msg.header.stamp), msg)
            if out is not None:
                try:
                    pending.append(frame_from_msgs(out["color"], out.get("depth"), out["info"], seq=seq))
                    seq += 1
                except ImageConversionError:
                    pass
        if done is not None:
            assembled[done[0]] = done[1:]
        # a frame leaves once its ground truth is there (or when the bag has none)
        while pending and (not with_gt or pending[0].stamp_ns in assembled or len(pending) > 8):
            f = pending.pop(0)
            if with_gt:
                _attach(f, assembled.pop(f.stamp_ns, None))
                for old in [s for s in assembled if s < f.stamp_ns]:
                    assembled.pop(old)
            yield f
    for f in pending:
        if with_gt:
            _attach(f, assembled.pop(f.stamp_ns, None))
        yield f


def _attach(frame: Frame, item) -> None:
    """Ground truth (and the camera pose the simulator knows) onto a replayed frame."""
    if item is not None:
        frame.gt = item[0]
        frame.extras.update(item[1])


# ------------------------------------------------------------------------ rosbags message builders
def _header(store, stamp_ns: int, frame_id: str):
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=int(stamp_ns) // 1_000_000_000, nanosec=int(stamp_ns) % 1_000_000_000), frame_id=frame_id)


def image_msg(arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """A rosbags ``sensor_msgs/msg/Image`` of ``arr`` (little-endian, no padding)."""
    store = typestore()
    Image = store.types["sensor_msgs/msg/Image"]
    arr = np.ascontiguousarray(arr)
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    return Image(header=_header(store, stamp_ns, frame_id), height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                 is_bigendian=0, step=arr.shape[1] * ch * arr.dtype.itemsize,
                 data=np.frombuffer(arr.astype(arr.dtype.newbyteorder("<")).tobytes(), dtype=np.uint8))


def camera_info_msg(intrinsics, stamp_ns: int, frame_id: str):
    store = typestore()
    CameraInfo = store.types["sensor_msgs/msg/CameraInfo"]
    RegionOfInterest = store.types["sensor_msgs/msg/RegionOfInterest"]
    k = intrinsics
    return CameraInfo(
        header=_header(store, stamp_ns, frame_id), height=k.height, width=k.width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], dtype=float),
        r=np.eye(3).ravel(), p=np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], dtype=float),
        binning_x=0, binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def write_sim_bag(path: str | Path, frames: list[Frame], storage: str = "mcap", depth_encoding: str = "16UC1",
                  topics: Optional[dict[str, str]] = None, start_ns: int = 1_000_000_000,
                  period_ns: Optional[int] = None, ground_truth: bool = True) -> list[int]:
    """Write simulated frames as camera topics (colour rgb8, depth, camera_info); returns the stamps [ns].

    Stamps: ``start_ns + i * period_ns`` (default: the frames' own spacing, else 100 ms).
    ground_truth: also write ``/frs/sim/instance_ids`` + ``/frs/sim/objects`` (as the sim camera
    publishes them), so the ``sim`` twin backend can replay the bag.
    """
    from frs_ros.wire.sim_wire import objects_to_json

    String = typestore().types["std_msgs/msg/String"]
    topics = dict(DEFAULT_TOPICS, **(topics or {}))
    stamps = []
    with BagWriter(path, storage) as w:
        for i, f in enumerate(frames):
            if period_ns is None:
                step = (frames[1].stamp_ns - frames[0].stamp_ns) if len(frames) > 1 and frames[1].stamp_ns > frames[0].stamp_ns else 100_000_000
            else:
                step = period_ns
            stamp = int(start_ns + i * step)
            stamps.append(stamp)
            fid = f.frame_id
            if ground_truth and f.gt is not None:
                w.write(SIM_TOPICS["ids"], "sensor_msgs/msg/Image", stamp,
                        image_msg(f.gt.instance_map.astype(np.int32), "32SC1", stamp, fid))
                w.write(SIM_TOPICS["objects"], "std_msgs/msg/String", stamp,
                        String(data=objects_to_json(stamp, f.gt.objects, f.extras)))
            w.write(topics["info"], "sensor_msgs/msg/CameraInfo", stamp, camera_info_msg(f.intrinsics, stamp, fid))
            if f.depth is not None and topics.get("depth"):
                d = f.depth
                if depth_encoding == "16UC1":
                    mm = np.where(np.isfinite(d) & (d > 0), np.round(d * 1000.0), 0).clip(0, 65535).astype(np.uint16)
                    w.write(topics["depth"], "sensor_msgs/msg/Image", stamp, image_msg(mm, "16UC1", stamp, fid))
                elif depth_encoding == "32FC1":
                    w.write(topics["depth"], "sensor_msgs/msg/Image", stamp, image_msg(d.astype(np.float32), "32FC1", stamp, fid))
                else:
                    raise BagError(f"depth_encoding must be 16UC1 or 32FC1, got {depth_encoding!r}")
            w.write(topics["color"], "sensor_msgs/msg/Image", stamp, image_msg(f.rgb, "rgb8", stamp, fid))
    return stamps
