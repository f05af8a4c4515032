"""digital_twin_node: maintains the digital twin incrementally (``frs_ros.twin.Tracker``).

Input: the newest ``Frame`` — from the shared ``FrameBuffer`` in one process, else from
``frs/frame/{color,depth,camera_info}`` (identical stamps; depth optional). Stale frames are
skipped (latest frame wins), so a slow model lowers the twin rate, never adds lag. With
``twin.keyframes: background`` the heavy models (SAM-2 masks, OWLv2 labels) run on the tracker's own
keyframe thread and this worker only does the per-frame path (``twin.propagator``, e.g. ``flow``),
so the twin keeps the camera's rate; ``~/status`` reports ``twin_age_s`` (clock - camera stamp at
publish), ``keyframe_lag_s`` (twin stamp - the keyframe it rests on), ``keyframe_in_flight_s`` and
``keyframe_latency_s``, and ``frs/twin`` carries ``keyframe_stamp``.

Output: ``frs/twin`` (frs_ros/DigitalTwin), ``frs/twin/instance_ids`` (32SC1 or mono16 image of
track ids, the colour header), ``frs/twin/markers`` (visualization_msgs/MarkerArray), and in one
process the ``TwinBuffer`` the reasoner reads (twin + frame + tracker, for tools).

Simulated scenes: the ``sim`` backends read the simulator's ground truth, given in one process
by the shared ``StampStore``, else rebuilt from ``frs/sim/instance_ids`` + ``frs/sim/objects``.
That can arrive after its frame: frames wait for it in a queue (``GroundTruthWait``, up to
``GT_MAX_WAIT_S``) instead of failing; with no ground truth at all (a real camera, but a ``sim``
backend configured) the node says so and what to set, once per period.

Shutdown: the worker thread publishes, so it must stop while the context is still valid:
``on_shutdown``/``destroy_node`` stop it, and ``common.run_node`` runs them before the context goes.

A lifecycle node: ``autostart`` (default) configures and activates it at start. A model that cannot
load (no weights on this machine, bad path) makes ``on_configure`` return ERROR: the node goes back
to unconfigured, the reason is logged once with what to do and kept on ``~/status`` (state
``error``); the node stays up — fix the parameters and ``ros2 lifecycle set`` it to configure again.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from frs_ros.nodes import common, conversions as cv
from frs_ros.wire.ground_truth_wait import GroundTruthWait
from frs_ros.nodes.params import declare_node_params, read_node_params
from frs_ros.wire.params import DigitalTwinParams
from frs_ros.wire.geometry import transform_matrix
from frs_ros.nodes.inputs import FrameTopics, SimGroundTruthTopics
from frs_ros.wire.sync import FrameBuffer, StampStore, TwinBuffer, TwinSnapshot

#: how long a frame may wait for its simulator ground truth before it is dropped [s]; over topics it can
#: trail the frame by more than 0.3 s at start-up or under load (see ``GroundTruthWait``)
GT_MAX_WAIT_S = 2.0
#: how often the worker looks for ground truth while frames wait for it [s]
GT_POLL_S = 0.01


class DigitalTwinNode(LifecycleNode):
    """Frames in, digital twin out. A lifecycle node (yolo_ros style): the models load in
    ``on_configure`` (a failure returns ERROR and the node goes back to unconfigured, with the
    reason on ``~/status``), the worker runs while active, ``on_cleanup`` frees the models."""

    NAME = "digital_twin_node"

    def __init__(self, *, frame_buffer: Optional[FrameBuffer] = None, twin_buffer: Optional[TwinBuffer] = None,
                 ground_truth: Optional[StampStore] = None, parameter_overrides: Optional[list] = None,
                 context: Any = None, namespace: str = "") -> None:
        super().__init__(self.NAME, **common.node_kwargs(parameter_overrides, context, namespace))
        self.params = p = DigitalTwinParams.from_values(declare_node_params(self, self.NAME))
        self.health = common.NodeHealth(self)
        self.health.state = "unconfigured"
        self.twin_buffer = twin_buffer
        self.tracker = None
        self.twins = 0
        self.update_s = float("nan")  # wall time of the last Tracker.update [s]
        self._stop: Optional[threading.Event] = None
        self._worker: Optional[threading.Thread] = None
        self.gt_wait: Optional[GroundTruthWait] = None  # the worker's queue of frames waiting for ground truth
        self._pub_twin = self.create_publisher(common_twin_msg(), common.TWIN, common.RELIABLE_QOS)
        self._pub_ids = self.create_publisher(Image, common.TWIN_INSTANCE_IDS, common.RELIABLE_QOS)
        self._pub_markers = self.create_publisher(MarkerArray, common.TWIN_MARKERS, common.RELIABLE_QOS)

        # --- input frames: shared buffer (one process) or the republished frs/frame/* topics
        self.frame_buffer = frame_buffer if frame_buffer is not None else FrameBuffer()
        self._shared_frames = frame_buffer is not None
        if frame_buffer is None:
            self._frame_topics = FrameTopics(self, self.health, self.frame_buffer.put)

        # --- simulator ground truth (only the sim backends read it): shared, or from frs/sim/*
        self.ground_truth = ground_truth
        self._shared_gt = ground_truth is not None
        if ground_truth is None:
            self.ground_truth = StampStore(capacity=64)
            self._gt_topics = SimGroundTruthTopics(self, self.health, self.ground_truth)
        self.needs_gt = False

        # --- camera pose from tf2 (optional)
        self._tf_buffer = None
        if p.world_frame:
            try:
                import tf2_ros  # type: ignore

                self._tf_buffer = tf2_ros.Buffer()
                self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
            except ImportError:
                self.get_logger().warning(f"world_frame '{p.world_frame}' is set but tf2_ros is not installed: the "
                                          "camera motion is estimated from static objects (twin.ego_motion)")
        if p.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params = p = DigitalTwinParams.from_values(read_node_params(self, self.NAME))
        except ValueError as exc:
            self.health.set_state("error", f"invalid parameters: {exc}")
            return TransitionCallbackReturn.ERROR
        try:
            from frs_ros.twin.tracker import Tracker

            self.tracker = Tracker(p.twin)
        except Exception as exc:  # noqa: BLE001 - ModelLoadError and anything a backend raises
            self.health.set_state(
                "error", f"the digital twin could not load its models: {exc}. Fix the twin.* parameters "
                         f"(segmenter={p.twin.segmenter}, labeler={p.twin.labeler}, depth={p.twin.depth}), then "
                         f"`ros2 lifecycle set {self.get_fully_qualified_name()} configure` (or restart the node); "
                         "until then no twin is published.")
            return TransitionCallbackReturn.ERROR
        self.needs_gt = p.twin.segmenter == "sim" or p.twin.labeler == "sim"
        self.health.set_state("inactive")
        self.get_logger().info(
            f"digital twin configured: segmenter={p.twin.segmenter}, labeler={p.twin.labeler}, depth={p.twin.depth}; input "
            f"{'shared FrameBuffer' if self._shared_frames else 'frs/frame/* topics'}"
            f"{'; ground truth ' + ('shared' if self._shared_gt else 'from frs/sim/*') if self.needs_gt else ''}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, args=(self._stop,), name="frs_twin_worker", daemon=True)
        self._worker.start()
        self.health.set_state("ok")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self.health.set_state("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_tracker()  # frees the models
        self.health.set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._close_tracker()
        self.health.set_state("finalized")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._close_tracker()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured: fix the parameters and configure again

    def _close_tracker(self) -> None:
        """Stop the tracker's background keyframe thread (``twin.keyframes: background``), drop the models."""
        if self.tracker is not None:
            self.tracker.close()
        self.tracker = None

    def _stop_worker(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        self._stop = self._worker = None

    # ------------------------------------------------------------------ the worker
    def _run(self, stop: threading.Event) -> None:
        seen, _ = self.frame_buffer.latest()  # only frames that arrive while active
        min_period = 1.0 / self.params.max_rate_hz if self.params.max_rate_hz > 0 else 0.0
        last = 0.0
        waiting = self.gt_wait = GroundTruthWait(self.ground_truth, max_wait_s=GT_MAX_WAIT_S)
        while not stop.is_set():
            seen, frame = self.frame_buffer.wait_newer(seen, timeout_s=GT_POLL_S if len(waiting) else 0.5)
            frame = self._ready_frame(frame, waiting)
            if frame is None:
                continue
            wait = min_period - (time.monotonic() - last)
            if wait > 0:
                if stop.wait(wait):
                    break
                newest_seen, newest = self.frame_buffer.latest()  # the newest after the pause
                if newest_seen != seen:
                    seen = newest_seen
                    frame = self._ready_frame(newest, waiting) or frame
            last = time.monotonic()
            try:
                self.process(frame)
            except Exception as exc:  # noqa: BLE001 - the worker's callback boundary
                if stop.is_set() or not self.context.ok():
                    break  # shutting down: the publishers are going away
                self.health.problem(f"update:{type(exc).__name__}", f"the twin update failed on frame {frame.stamp_ns}: {exc}")

    def _ready_frame(self, frame: Any, waiting: GroundTruthWait) -> Any:
        """The frame to update with now: ``frame`` itself when it needs no ground truth (or has it), else
        the newest queued frame whose ground truth has arrived; None when there is none yet."""
        if frame is not None and (not self.needs_gt or frame.gt is not None):
            return frame
        if frame is not None:
            waiting.add(frame)
        if not len(waiting):
            return None
        ready = waiting.pop_ready()
        self.health.extra["ground_truth"] = {"matched": waiting.matched, "skipped": waiting.skipped,
                                             "expired": waiting.expired}
        if ready is None and waiting.expired and waiting.starved_s() > waiting.max_wait_s:
            p = self.params.twin
            self.health.problem(
                "no_ground_truth",
                f"no simulator ground truth came for {waiting.starved_s():.0f} s on {self._topic(common.SIM_INSTANCE_IDS)} + "
                f"{self._topic(common.SIM_OBJECTS)}, so the twin is not updated ({waiting.expired} frames dropped): "
                f"the 'sim' backends (twin.segmenter={p.segmenter}, twin.labeler={p.labeler}) need sim_camera_node with "
                "publish_ground_truth: true in this namespace. A real camera has no ground truth: set twin.segmenter "
                "to sam2 and twin.labeler to owlv2 or none.")
        return ready

    def _topic(self, name: str) -> str:
        try:
            return self.resolve_topic_name(name)
        except Exception:  # noqa: BLE001 - only for the message
            return name

    def _attach_ground_truth(self, frame: Any) -> None:
        """Attach ground truth that is already there (the worker has waited for it; see ``_ready_frame``)."""
        if not self.needs_gt or frame.gt is not None:
            return
        item = self.ground_truth.get(frame.stamp_ns)
        if item is not None:
            frame.gt = item[1]
            frame.extras.update(item[2] if len(item) > 2 else {})

    def _attach_camera_pose(self, frame: Any) -> None:
        if self._tf_buffer is None or "T_world_camera" in frame.extras:
            return
        try:
            from rclpy.duration import Duration
            from rclpy.time import Time

            tf = self._tf_buffer.lookup_transform(self.params.world_frame, frame.frame_id, Time(nanoseconds=frame.stamp_ns),
                                                  timeout=Duration(seconds=0.05))
            t, r = tf.transform.translation, tf.transform.rotation
            frame.extras["T_world_camera"] = transform_matrix(np.array([t.x, t.y, t.z]), np.array([r.x, r.y, r.z, r.w]))
        except Exception as exc:  # noqa: BLE001 - no transform yet: ego-motion estimate instead
            self.health.problem("tf2", f"no transform {self.params.world_frame} <- {frame.frame_id} ({exc}); "
                                       "the camera motion is estimated from static objects for now")

    def process(self, frame: Any):
        """Update the twin with one frame and publish it; returns the twin."""
        self._attach_ground_truth(frame)
        self._attach_camera_pose(frame)
        t0 = time.perf_counter()
        twin = self.tracker.update(frame)
        self.update_s = time.perf_counter() - t0
        header = cv.make_header(frame.stamp_ns, frame.frame_id)
        self._pub_twin.publish(cv.twin_to_msg(twin))
        self._pub_ids.publish(cv.instance_ids_to_msg(cv.instance_id_image(twin), header, self.params.instance_ids_encoding))
        if self.params.publish_markers:
            self._pub_markers.publish(cv.twin_markers(twin, header))
        if self.twin_buffer is not None:
            self.twin_buffer.put(TwinSnapshot(twin=twin, frame=frame, tracker=self.tracker))
        self.twins += 1
        self.health.extra.update(twins=self.twins, objects=len(twin.objects), update_s=round(self.update_s, 4),
                                 **self._freshness(twin))
        return twin

    def _freshness(self, twin: Any) -> dict:
        """``~/status`` fields: twin age at publish (node clock - camera stamp [s]) and the keyframe
        the twin rests on (its lag behind the twin [s], whether one is computing, its last latency)."""
        now_ns = self.get_clock().now().nanoseconds
        k = self.tracker.keyframe_status()
        lag = (twin.stamp_ns - twin.keyframe_ns) / 1e9 if twin.keyframe_ns else None
        out = {"twin_age_s": round((now_ns - twin.stamp_ns) / 1e9, 4),
               "keyframe_lag_s": None if lag is None else round(lag, 4),
               "keyframe_in_flight_s": round(k["in_flight_s"], 3) if k["in_flight"] else None,
               "keyframe_latency_s": None if k["latency_s"] != k["latency_s"] else round(k["latency_s"], 3)}
        if "depth_ns" in k:  # depth_runs: background: how old the depth under this twin is [s]
            out["depth_lag_s"] = round((twin.stamp_ns - k["depth_ns"]) / 1e9, 4) if k["depth_ns"] else None
        return out

    def destroy_node(self) -> None:
        self._stop_worker()
        self.frame_buffer.close()
        super().destroy_node()


def common_twin_msg():
    from frs_ros.msg import DigitalTwin

    return DigitalTwin


def main(args=None) -> int:
    return common.run_node(DigitalTwinNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
