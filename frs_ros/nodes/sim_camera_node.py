"""sim_camera_node: the simulated world, published as an RGB-D camera driver would.

Publishes (stamps = the node clock at publish time, one stamp per frame for all topics):
- ``color_topic`` (sensor_msgs/Image rgb8), ``depth_topic`` (16UC1 [mm] or 32FC1 [m], aligned to
  colour; omitted when ''), ``camera_info_topic`` (sensor_msgs/CameraInfo) at ``rate_hz``;
- ground truth for the ``sim`` twin backend and the oracle reasoner: in one process through the
  shared ``StampStore``/``QueryBook`` given to the constructor; across processes (when
  ``publish_ground_truth``) on ``frs/sim/instance_ids`` (32SC1), ``frs/sim/objects`` (JSON) and,
  latched, ``frs/sim/queries`` (JSON of the episode's queries).

The episode (``frs_ros.sim.generate_episode(seed, split, n_frames)``) is generated once at start
and played frame by frame; at its end it loops (``loop``) or holds its last frame.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Optional

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from frs_ros.nodes import common, conversions as cv
from frs_ros.nodes.params import declare_node_params
from frs_ros.wire.params import SimCameraParams
from frs_ros.sim.types import QueryBook
from frs_ros.wire.sim_wire import objects_to_json, pose_extras, queries_to_json
from frs_ros.wire.sync import StampStore

FRAME_INDEX_CAPACITY = 100_000  # published stamps remembered by frame_index_of()


class SimCameraNode(Node):
    """Plays a simulated RGB-D episode as camera topics."""

    NAME = "sim_camera_node"

    def __init__(self, *, ground_truth: Optional[StampStore] = None, query_book: Optional[QueryBook] = None,
                 parameter_overrides: Optional[list] = None, context: Any = None, namespace: str = "") -> None:
        super().__init__(self.NAME, **common.node_kwargs(parameter_overrides, context, namespace))
        self.params = SimCameraParams.from_values(declare_node_params(self, self.NAME))
        self.health = common.NodeHealth(self)
        self.ground_truth = ground_truth
        self.query_book = query_book
        self.sample = None
        self.index = -1  # episode frame index last published
        self.published = 0
        self.last_stamp_ns = 0
        # stamp [ns] -> episode frame index of every published frame (ints only: ~100 B an entry),
        # so that an answer given many seconds later can still be scored against its frame's ground
        # truth after the shared StampStore (64 frames) has moved on; bounded to ~2.8 h at 10 Hz
        self._frame_of_stamp: "OrderedDict[int, int]" = OrderedDict()
        self._lock = threading.Lock()
        p = self.params
        qos = common.RELIABLE_QOS
        self._pub_color = self.create_publisher(Image, p.color_topic, qos)
        self._pub_depth = self.create_publisher(Image, p.depth_topic, qos) if p.depth_topic else None
        self._pub_info = self.create_publisher(CameraInfo, p.camera_info_topic, qos)
        self._pub_ids = self._pub_objs = None
        if p.publish_ground_truth:
            self._pub_ids = self.create_publisher(Image, common.SIM_INSTANCE_IDS, qos)
            self._pub_objs = self.create_publisher(String, common.SIM_OBJECTS, qos)
            self._pub_queries = self.create_publisher(String, common.SIM_QUERIES, common.LATCHED_QOS)
        try:
            from frs_ros.sim.generate import generate_episode
            from frs_ros.sim.world import SimConfig

            self.sample = generate_episode(p.seed, p.split, n_frames=p.n_frames,
                                           config=SimConfig(width=p.width, height=p.height))
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            self.health.set_state("error", f"could not generate the simulated episode (seed={p.seed}, split={p.split}, "
                                           f"{p.width}x{p.height}, {p.n_frames} frames): {exc}; check the sim_camera_node parameters")
            return
        if self.query_book is not None:
            self.query_book.update(self.sample.queries)
        if p.publish_ground_truth:
            self._pub_queries.publish(String(data=queries_to_json(self.sample.queries)))
        self.health.extra.update(episode_frames=len(self.sample.frames), queries=len(self.sample.queries))
        self.health.set_state("ok")
        self._timer = self.create_timer(1.0 / p.rate_hz, self.health.guard("publish_frame")(self._timer_cb))
        self.get_logger().info(
            f"simulated camera: seed {p.seed} ({self.sample.scene_kind}), {len(self.sample.frames)} frames "
            f"{p.width}x{p.height} at {p.rate_hz:g} Hz, {len(self.sample.queries)} queries, events {self.sample.events}")

    def _timer_cb(self) -> None:
        n = len(self.sample.frames)
        with self._lock:
            nxt = self.index + 1
            if nxt >= n:
                nxt = 0 if self.params.loop else n - 1
            self.index = nxt
        self.publish_frame(nxt)

    def publish_frame(self, k: int) -> int:
        """Publish episode frame ``k`` now; returns its stamp [ns]."""
        p = self.params
        frame = self.sample.frames[k]
        stamp_ns = self.get_clock().now().nanoseconds
        if stamp_ns <= self.last_stamp_ns:  # strictly increasing stamps, even with a coarse clock
            stamp_ns = self.last_stamp_ns + 1
        self.last_stamp_ns = stamp_ns
        with self._lock:
            self._frame_of_stamp[stamp_ns] = k
            if len(self._frame_of_stamp) > FRAME_INDEX_CAPACITY:
                self._frame_of_stamp.popitem(last=False)
        header = cv.make_header(stamp_ns, p.frame_id)
        if self.ground_truth is not None and frame.gt is not None:
            # before the image: the twin may look it up at once; the camera pose (if the sim knows it)
            # comes along, as tf2 would give it on a robot
            self.ground_truth.put(stamp_ns, (k, frame.gt, pose_extras(frame.extras)))
        if self._pub_ids is not None and frame.gt is not None:
            self._pub_ids.publish(cv.instance_ids_to_msg(frame.gt.instance_map, header))
            self._pub_objs.publish(String(data=objects_to_json(stamp_ns, frame.gt.objects, frame.extras)))
        self._pub_info.publish(cv.intrinsics_to_camera_info(frame.intrinsics, header))
        if self._pub_depth is not None and frame.depth is not None:
            self._pub_depth.publish(cv.depth_to_msg(frame.depth, header, p.depth_encoding))
        self._pub_color.publish(cv.color_to_msg(frame.rgb, header))
        self.published += 1
        self.health.extra["published"] = self.published
        return stamp_ns


    def frame_index_of(self, stamp_ns: int) -> Optional[int]:
        """The episode frame index published with ``stamp_ns`` [ns], or None if unknown/evicted."""
        with self._lock:
            return self._frame_of_stamp.get(int(stamp_ns))


def main(args=None) -> int:
    return common.run_node(SimCameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
