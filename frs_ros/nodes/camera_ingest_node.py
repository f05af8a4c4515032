"""camera_ingest_node: camera topics -> synchronised, converted ``Frame`` s.

Subscribes ``color_topic``, ``depth_topic`` (optional: '' for a colour-only camera) and
``camera_info_topic`` with the configured QoS (sensor-data by default), synchronises them by
stamp (the tested ``frs_ros.wire.sync.ApproximateTimeSync``, latest frame wins; or, with
``use_message_filters=True`` where it imports, ``message_filters.ApproximateTimeSynchronizer``,
without the bad-set and clock-jump handling below), converts encodings
(``conversions.frame_from_msgs``) and hands the newest ``Frame`` on:
- in one process (``frs_bringup``): into the shared ``FrameBuffer`` the twin node reads;
- across processes (``republish``): the synchronised set on ``frs/frame/{color,depth,camera_info}``,
  all three with the colour stamp, reliable QoS (the twin node subscribes to these).

A bad message (encoding, size, data length, uncalibrated camera_info) is counted, logged
throttled with what to fix, and dropped; the node keeps going. A dropped set does not count as
accepted (``ApproximateTimeSync.reject``), so a bad set stamped in the future cannot make the
later ones look stale. Stamps that go back by more than ``clock_jump_s`` (a bag replay looping, a
simulator restarting at t=0, an NTP step) reset the synchroniser, with a warning that says so;
a jump forward is reported too. The stall warning says which of these it saw.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from frs_ros.nodes import common, conversions as cv
from frs_ros.nodes.params import declare_node_params
from frs_ros.wire.params import CameraIngestParams
from frs_ros.wire.sync import ApproximateTimeSync, ClockJump, FrameBuffer

try:  # real ROS installs
    import message_filters  # type: ignore

    HAVE_MESSAGE_FILTERS = True
except Exception:  # noqa: BLE001
    HAVE_MESSAGE_FILTERS = False


class CameraIngestNode(Node):
    """Synchronises and converts camera streams into ``Frame`` s."""

    NAME = "camera_ingest_node"

    def __init__(self, *, frame_buffer: Optional[FrameBuffer] = None, parameter_overrides: Optional[list] = None,
                 context: Any = None, namespace: str = "", use_message_filters: Optional[bool] = None) -> None:
        super().__init__(self.NAME, **common.node_kwargs(parameter_overrides, context, namespace))
        self.params = p = CameraIngestParams.from_values(declare_node_params(self, self.NAME))
        self.health = common.NodeHealth(self)
        self.frame_buffer = frame_buffer
        self.frames = 0
        self.received = {"color": 0, "depth": 0, "info": 0}
        self._last_frame_time: Optional[float] = None  # set at the first stall check (the executor runs then)
        self._problems_at_frame = (0, 0)  # (stale messages, bad sets) when the last frame was accepted
        self._seq = 0
        qos = common.camera_qos(p.qos_reliability, p.qos_depth)
        group = MutuallyExclusiveCallbackGroup()  # sets are assembled in order
        self._has_depth = bool(p.depth_topic)
        self._pubs = None
        if p.republish:
            self._pubs = {
                "color": self.create_publisher(Image, common.FRAME_COLOR, common.RELIABLE_QOS),
                "depth": self.create_publisher(Image, common.FRAME_DEPTH, common.RELIABLE_QOS) if self._has_depth else None,
                "info": self.create_publisher(CameraInfo, common.FRAME_INFO, common.RELIABLE_QOS),
            }
        # the built-in synchroniser by default: its handling of dropped sets and clock jumps is what the tests pin
        use_mf = bool(use_message_filters) and HAVE_MESSAGE_FILTERS
        topics = [("color", Image, p.color_topic)] + ([("depth", Image, p.depth_topic)] if self._has_depth else []) + \
                 [("info", CameraInfo, p.camera_info_topic)]
        self.sync_impl = "message_filters" if use_mf else "frs_ros.wire.sync"
        if use_mf:
            self._mf_subs = [message_filters.Subscriber(self, t, name, qos_profile=qos, callback_group=group)
                             for _, t, name in topics]
            for (key, _, _), sub in zip(topics, self._mf_subs):
                sub.registerCallback(self._count_cb(key))
            self._mf = message_filters.ApproximateTimeSynchronizer(self._mf_subs, p.sync_queue_size, p.sync_slop_s)
            self._mf.registerCallback(self.health.guard("synced", "check the camera topics")(self._mf_synced_cb))
        else:
            self._sync = ApproximateTimeSync([k for k, _, _ in topics], int(p.sync_slop_s * 1e9), p.sync_queue_size,
                                             jump_ns=int(p.clock_jump_s * 1e9), on_jump=self._jump_cb)
            self._subs = [self.create_subscription(t, name, self.health.guard(f"{key}_msg")(self._make_cb(key)), qos,
                                                   callback_group=group) for key, t, name in topics]
        self._stall_timer = self.create_timer(min(1.0, p.stall_warn_s / 2.0), self._stall_cb)
        self.health.set_state("ok")
        self.get_logger().info(
            f"camera ingest: colour '{p.color_topic}', depth '{p.depth_topic or '(none: colour-only)'}', "
            f"camera_info '{p.camera_info_topic}', QoS {p.qos_reliability}, slop {p.sync_slop_s:g} s, sync by {self.sync_impl}; "
            f"hand-off: {'shared FrameBuffer' if frame_buffer is not None else 'none'}"
            f"{' + republish on frs/frame/*' if p.republish else ''}")

    # ------------------------------------------------------------------ callbacks
    def _count_cb(self, key: str):
        def cb(_msg) -> None:
            self.received[key] += 1

        return cb

    def _make_cb(self, key: str):
        def cb(msg) -> None:
            self.received[key] += 1
            out = self._sync.add(key, cv.stamp_to_ns(msg.header.stamp), msg)
            if out is not None and not self._synced(out["color"], out.get("depth"), out["info"]):
                self._sync.reject()  # a dropped set must not count as the newest (its stamp may be far ahead)

        cb.__name__ = f"{key}_cb"
        return cb

    def _mf_synced_cb(self, *msgs) -> None:
        if self._has_depth:
            self._synced(msgs[0], msgs[1], msgs[2])
        else:
            self._synced(msgs[0], None, msgs[1])

    def _jump_cb(self, jump: ClockJump) -> None:
        self.health.extra["clock_jumps"] = self.health.extra.get("clock_jumps", 0) + 1
        if jump.direction == "backward":
            what = (f"camera stamps jumped back by {jump.size_s:.3f} s (from {jump.from_ns * 1e-9:.3f} to "
                    f"{jump.to_ns * 1e-9:.3f} s): a bag replay looping, a simulator restarting or an NTP step? The "
                    "synchroniser was reset and goes on from the new stamps")
        else:
            what = (f"camera stamps jumped forward by {jump.size_s:.3f} s (from {jump.from_ns * 1e-9:.3f} to "
                    f"{jump.to_ns * 1e-9:.3f} s); if the clock comes back, the synchroniser resets then")
        self.health.problem(f"clock_jump_{jump.direction}", what)

    def _synced(self, color: Image, depth: Optional[Image], info: CameraInfo) -> bool:
        """Convert and hand on one synchronised set; False when it was dropped (bad message)."""
        try:
            frame = cv.frame_from_msgs(color, depth, info, seq=self._seq)
        except cv.ImageConversionError as exc:
            self.health.problem("bad_frame", f"dropped a camera frame: {exc}")
            return False
        self._seq += 1
        self.frames += 1
        self._last_frame_time = time.monotonic()
        self._problems_at_frame = self._problem_counts()
        self.health.extra["frames"] = self.frames
        if self.frame_buffer is not None:
            self.frame_buffer.put(frame)
        if self._pubs is not None:
            stamp = color.header.stamp
            info.header.stamp = stamp
            self._pubs["info"].publish(info)
            if depth is not None and self._pubs["depth"] is not None:
                depth.header.stamp = stamp
                self._pubs["depth"].publish(depth)
            self._pubs["color"].publish(color)
        return True

    def _problem_counts(self) -> tuple[int, int]:
        sync = getattr(self, "_sync", None)
        return (sync.stale if sync is not None else 0), self.health.reporter.counts.get("bad_frame", 0)

    def _stall_cb(self) -> None:
        if self._last_frame_time is None:
            self._last_frame_time = time.monotonic()
        idle = time.monotonic() - self._last_frame_time
        if idle < self.params.stall_warn_s:
            return
        p = self.params
        r = self.received
        missing = [name for key, name in (("color", p.color_topic), ("depth", p.depth_topic), ("info", p.camera_info_topic))
                   if (key != "depth" or self._has_depth) and r[key] == 0]
        if missing:
            hint = f"nothing received on {missing}: check the topic names and QoS (qos_reliability={p.qos_reliability})"
        else:
            seen = []
            sync = getattr(self, "_sync", None)
            stale, bad = (a - b for a, b in zip(self._problem_counts(), self._problems_at_frame))
            if stale:
                last = sync.last_emitted_ns
                seen.append(f"{stale} message(s) were older than the last accepted set"
                            f"{'' if last is None else f' (stamp {last * 1e-9:.3f} s)'} and dropped as late (a clock that "
                            f"went back by less than clock_jump_s={p.clock_jump_s:g} s?)")
            if bad:
                seen.append(f"{bad} set(s) failed to convert (see the 'dropped a camera frame' warnings)")
            hint = (f"messages arrive (colour {r['color']}, depth {r['depth']}, camera_info {r['info']}) but no set "
                    f"was accepted: " + ("; ".join(seen) if seen else
                                        f"no colour/depth/camera_info stamps matched within sync_slop_s={p.sync_slop_s:g} s "
                                        "(compare the header stamps of the three topics)"))
        self.health.problem("no_frames", f"no synchronised frame for {idle:.0f} s; {hint}")


def main(args=None) -> int:
    return common.run_node(CameraIngestNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
