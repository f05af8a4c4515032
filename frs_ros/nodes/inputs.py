"""Cross-process inputs shared by the twin and reasoner nodes.

``FrameTopics``: rebuilds ``Frame`` s from the camera ingest node's republished
``frs/frame/{color,depth,camera_info}`` (identical stamps; depth optional: once a depth message
has been seen, sets wait for it) and, when asked, simulator ground truth from
``frs/sim/instance_ids`` + ``frs/sim/objects`` (stored by stamp, attached by the consumer).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from frs_ros.nodes import common, conversions as cv
from frs_ros.sim.types import QueryBook
from frs_ros.wire.sim_wire import GroundTruthAssembler, queries_from_json
from frs_ros.wire.sync import ApproximateTimeSync, StampStore


class FrameTopics:
    """Subscribes ``frs/frame/*`` on ``node`` and calls ``on_frame(frame)`` per complete set."""

    def __init__(self, node: Node, health: common.NodeHealth, on_frame: Callable[[Any], None]) -> None:
        self.node, self.health, self.on_frame = node, health, on_frame
        self._sync3 = ApproximateTimeSync(("color", "depth", "info"), slop_ns=0)
        self._sync2 = ApproximateTimeSync(("color", "info"), slop_ns=0)
        self._depth_seen = False
        q = common.RELIABLE_QOS
        node.create_subscription(Image, common.FRAME_COLOR, health.guard("frame_color")(self._color_cb), q)
        node.create_subscription(Image, common.FRAME_DEPTH, health.guard("frame_depth")(self._depth_cb), q)
        node.create_subscription(CameraInfo, common.FRAME_INFO, health.guard("frame_info")(self._info_cb), q)

    def _color_cb(self, msg: Image) -> None:
        self._offer("color", msg)

    def _depth_cb(self, msg: Image) -> None:
        self._depth_seen = True
        self._offer("depth", msg)

    def _info_cb(self, msg: CameraInfo) -> None:
        self._offer("info", msg)

    def _offer(self, key: str, msg: Any) -> None:
        stamp = cv.stamp_to_ns(msg.header.stamp)
        out3 = self._sync3.add(key, stamp, msg)
        out2 = self._sync2.add(key, stamp, msg) if key != "depth" else None
        out = out3 if self._depth_seen else out2
        if out is None:
            return
        try:
            frame = cv.frame_from_msgs(out["color"], out.get("depth"), out["info"])
        except cv.ImageConversionError as exc:
            self.health.problem("bad_frame", f"dropped a frame from frs/frame/*: {exc}")
            return
        self.on_frame(frame)


class SimGroundTruthTopics:
    """Subscribes ``frs/sim/instance_ids`` + ``frs/sim/objects`` (and the latched ``frs/sim/queries``)
    and fills ``store`` (stamp -> (-1, SceneGroundTruth, pose extras)) and ``query_book``."""

    def __init__(self, node: Node, health: common.NodeHealth, store: StampStore,
                 query_book: Optional[QueryBook] = None) -> None:
        self.store, self.query_book = store, query_book
        self._assembler = GroundTruthAssembler()
        q = common.RELIABLE_QOS
        node.create_subscription(Image, common.SIM_INSTANCE_IDS, health.guard("sim_ids")(self._ids_cb), q)
        node.create_subscription(String, common.SIM_OBJECTS, health.guard("sim_objects")(self._objects_cb), q)
        if query_book is not None:
            node.create_subscription(String, common.SIM_QUERIES, health.guard("sim_queries")(self._queries_cb),
                                     common.LATCHED_QOS)

    def _ids_cb(self, msg: Image) -> None:
        done = self._assembler.add_instance_map(cv.stamp_to_ns(msg.header.stamp), cv.instance_ids_from_msg(msg))
        if done is not None:
            self.store.put(done[0], (-1, done[1], done[2]))

    def _objects_cb(self, msg: String) -> None:
        done = self._assembler.add_objects(msg.data)
        if done is not None:
            self.store.put(done[0], (-1, done[1], done[2]))

    def _queries_cb(self, msg: String) -> None:
        self.query_book.update(queries_from_json(msg.data))
