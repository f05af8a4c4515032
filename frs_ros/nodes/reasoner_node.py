"""reasoner_node: the ``ReasonSeg`` action server (``frs/reason_seg``) over ``ReasonSegEngine``.

Per goal: check the query and the time budget -> apply the concurrent-goal policy -> wait for a
twin no older than ``max_twin_age_s`` (up to ``twin_wait_s``) -> ``engine.answer(query, twin,
frame)`` with streaming feedback (stage + rollout so far), cancellation between tokens (and
before each stage: a cancel that arrives right after acceptance is honoured) and a time budget
-> on ``ok`` publish
``frs/target/mask`` (mono8 0/255, the source image's header), ``frs/target/overlay`` (rgb8),
``frs/targets`` (frs_ros/TargetArray: depth stats + 3-D centroids), ``frs/target/markers``
(and ``frs/target/detections``, vision_msgs/Detection2DArray, where vision_msgs imports) ->
with ``keep_tracking`` keep republishing those from every new twin. Policies: ``goals.py``.

Centroids are in the camera optical frame, or in ``target_frame`` through tf2 where tf2_ros
imports (without tf2, or when a transform is missing, the optical frame is kept and that is
logged, throttled).

Twin input: the shared ``TwinBuffer`` in one process (the tracker comes along, so tools update
persistent tracks), else ``frs/twin`` + ``frs/frame/*`` (+ ``frs/sim/*`` for the oracle). The
twin's age (time since it was handed to this node) is on ``~/status`` as ``twin_age_s``.

The action's goal, cancel and result services have a deep request queue (``ACTION_SERVICE_QOS``),
so bursts of goals or cancels all get a response.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Empty
from visualization_msgs.msg import MarkerArray

from frs_ros.nodes import common, conversions as cv
from frs_ros.wire.geometry import apply_transform
from frs_ros.reasoning.outcome import Outcome, action_outcome, cancel_reason
from frs_ros.wire.goals import FeedbackThrottle, GoalArbiter, TrackingSession, check_goal_query, goal_budget_s, wait_for_twin
from frs_ros.nodes.inputs import FrameTopics, SimGroundTruthTopics
from frs_ros.nodes.params import declare_node_params, read_node_params
from frs_ros.wire.params import ReasonerParams, resolve_model_path, resolve_reasoner_paths
from frs_ros.sim.types import QueryBook
from frs_ros.wire.sync import StampStore, TwinBuffer, TwinSnapshot

try:  # real ROS installs only
    import tf2_ros  # type: ignore

    HAVE_TF2 = True
except Exception:  # noqa: BLE001
    HAVE_TF2 = False

#: seconds between two streamed feedback messages of the same stage (stage changes go at once)
FEEDBACK_PERIOD_S = 0.1
#: Goal, cancel and result services of the action server. rclpy's default (the services profile,
#: keep-last 10) silently dropped requests beyond 10 queued ones: of 20 goals sent back to back
#: only 10-11 got a goal response and the client waited forever (issue 14; a cancel storm lost
#: half its cancels the same way). 1000 queued requests cost < 1 MB (measured: +0.8 MB RSS
#: for 5 servers) and cover bursts far beyond what a robot's clients send.
ACTION_SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
#: how long the action server keeps a finished goal's result for late GetResult requests [s]. Set, not
#: left to rclpy: its default is 10 s in Kilted (rclpy 9.1.2) but 900 s in Jazzy (7.1.6), where every
#: goal of the last 15 min then stays in the server and in each status message (on Jazzy the soak's
#: sequential goal 656 of 1,000 got an empty result with the default).
RESULT_KEEP_S = 10
#: how long a client-cancelled goal waits for its action state to become CANCELING before it ends
#: (the cancel callback runs just before rclpy updates the state) [s]
CANCEL_STATE_WAIT_S = 1.0


class ReasonerNode(LifecycleNode):
    """ReasonSeg goals in, target masks / depth / 3-D positions out. A lifecycle node: the LM loads
    in ``on_configure`` (a failure returns ERROR, back to unconfigured, the reason on ``~/status``);
    goals are served while active (otherwise they end ``error`` saying so)."""

    NAME = "reasoner_node"

    def __init__(self, *, twin_buffer: Optional[TwinBuffer] = None, query_book: Optional[QueryBook] = None,
                 engine: Any = None, parameter_overrides: Optional[list] = None, context: Any = None,
                 namespace: str = "") -> None:
        super().__init__(self.NAME, **common.node_kwargs(parameter_overrides, context, namespace))
        self.params = p = ReasonerParams.from_values(declare_node_params(self, self.NAME))
        self.health = common.NodeHealth(self)
        self.health.state = "unconfigured"
        self.arbiter = GoalArbiter(p.goal_policy)
        self.tracking: Optional[TrackingSession] = None
        self._tracking_lock = threading.Lock()
        self.goals = {"ok": 0}
        self.active = False
        from frs_ros.msg import TargetArray

        q = common.RELIABLE_QOS
        self._pub_mask = self.create_publisher(Image, common.TARGET_MASK, q)
        self._pub_overlay = self.create_publisher(Image, common.TARGET_OVERLAY, q)
        self._pub_targets = self.create_publisher(TargetArray, common.TARGETS, q)
        self._pub_markers = self.create_publisher(MarkerArray, common.TARGET_MARKERS, q)
        self._pub_det = None
        if cv.HAVE_VISION_MSGS:
            from vision_msgs.msg import Detection2DArray  # type: ignore

            self._pub_det = self.create_publisher(Detection2DArray, common.TARGET_DETECTIONS, q)
        self.create_subscription(Empty, common.TARGET_STOP, self.health.guard("stop")(self._stop_cb), q)

        # --- twin input
        self.query_book = query_book if query_book is not None else QueryBook()
        self.twin_buffer = twin_buffer if twin_buffer is not None else TwinBuffer()
        if twin_buffer is None:
            from frs_ros.msg import DigitalTwin

            self._frames: StampStore = StampStore(capacity=32)
            self._frame_topics = FrameTopics(self, self.health, lambda f: self._frames.put(f.stamp_ns, f))
            self._gt = StampStore(capacity=64)  # simulator ground truth + queries, for the oracle
            self._gt_topics = SimGroundTruthTopics(self, self.health, self._gt, self.query_book)
            self.create_subscription(DigitalTwin, common.TWIN, self.health.guard("twin")(self._twin_cb), q)

        # --- tf2 (optional): set up at configure, when target_frame is read
        self._tf_buffer = None

        self._given_engine = engine
        self.engine = None
        self._group = ReentrantCallbackGroup()
        from frs_ros.action import ReasonSeg

        self._action_type = ReasonSeg
        self._server = ActionServer(self, ReasonSeg, common.REASON_SEG, execute_callback=self._execute_cb,
                                    goal_callback=self._goal_cb, cancel_callback=self._cancel_cb,
                                    callback_group=self._group, goal_service_qos_profile=ACTION_SERVICE_QOS,
                                    cancel_service_qos_profile=ACTION_SERVICE_QOS,
                                    result_service_qos_profile=ACTION_SERVICE_QOS,
                                    result_timeout=RESULT_KEEP_S)
        self._age_timer = self.create_timer(1.0, self._twin_age_cb)
        self._stop: Optional[threading.Event] = None
        self._tracker_thread: Optional[threading.Thread] = None
        if p.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params = p = ReasonerParams.from_values(read_node_params(self, self.NAME))
        except ValueError as exc:
            self.health.set_state("error", f"invalid parameters: {exc}")
            return TransitionCallbackReturn.ERROR
        self.arbiter = GoalArbiter(p.goal_policy)
        self._setup_tf(p.target_frame)
        self.engine = self._given_engine
        if self.engine is None:
            try:
                from frs_ros.reasoning.api import ReasonSegEngine, build_reasoner

                config = resolve_reasoner_paths(p.reasoner)
                self.engine = ReasonSegEngine(config, reasoner=build_reasoner(config, truth=self.query_book))
            except Exception as exc:  # noqa: BLE001 - ReasonerLoadError and friends
                self.health.set_state(
                    "error", f"the reasoner could not load (backend={p.reasoner.backend}, model={p.reasoner.model}): {exc}. "
                             "Set reasoner.model to a local model directory (or reasoner.backend: oracle on simulated scenes), "
                             f"then `ros2 lifecycle set {self.get_fully_qualified_name()} configure` (or restart); "
                             "goals end with status 'error' until then.")
                return TransitionCallbackReturn.ERROR
        self.health.set_state("inactive")
        runtime = self.engine.runtime
        if self.engine.runtime_warning:  # e.g. the native int8 kernel could not be built
            self.get_logger().warn(f"reasoner runtime {runtime}: {self.engine.runtime_warning}")
        self.get_logger().info(
            f"reasoner configured: backend={p.reasoner.backend}"
            f"{'' if p.reasoner.backend == 'oracle' else ', model=' + resolve_model_path(p.reasoner.model)}"
            f"{', runtime ' + runtime if runtime else ''}; "
            f"goal policy {p.goal_policy}; action '{self.resolve_action_name()}'")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop = threading.Event()
        self._tracker_thread = threading.Thread(target=self._tracking_loop, args=(self._stop,),
                                                name="frs_target_tracking", daemon=True)
        self._tracker_thread.start()
        self.active = True
        self.health.set_state("ok")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate("the reasoner was deactivated")
        self.health.set_state("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.engine = None  # frees the model
        self.health.set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate("the reasoner is shutting down")
        self.engine = None
        self.health.set_state("finalized")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate("the reasoner hit an error")
        self.engine = None
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured: fix the parameters and configure again

    def _deactivate(self, reason: str) -> None:
        self.active = False
        running = self.arbiter.active
        if running is not None:
            running.cancel.set()
        self.stop_tracking(reason)
        if self._stop is not None:
            self._stop.set()
        if self._tracker_thread is not None:
            self._tracker_thread.join(timeout=5.0)
        self._stop = self._tracker_thread = None

    def _setup_tf(self, target_frame: str) -> None:
        if not target_frame or self._tf_buffer is not None:
            return
        if HAVE_TF2:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        else:
            self.get_logger().warning(f"target_frame '{target_frame}' is set but tf2_ros is not installed: target "
                                      "centroids stay in the camera optical frame")

    def _twin_age_cb(self) -> None:
        age = self.twin_buffer.age_s()
        self.health.extra["twin_age_s"] = None if age is None else round(age, 2)
        self.health.extra["max_twin_age_s"] = self.params.max_twin_age_s

    def resolve_action_name(self) -> str:
        ns = self.get_namespace().rstrip("/")
        return f"{ns}/{common.REASON_SEG}"

    # ------------------------------------------------------------------ cross-process twin
    def _twin_cb(self, msg) -> None:
        twin = cv.twin_from_msg(msg)
        self.twin_buffer.put(TwinSnapshot(twin=twin, frame=self._frame_of(twin.stamp_ns), tracker=None))

    def _frame_of(self, stamp_ns: int):
        """Cross-process: the camera frame of a twin's stamp, with the simulator's ground truth
        attached once it has come (the oracle needs it); None while the frame has not come. The three
        arrive on separate topics in any order, so a goal looks again (``_complete``)."""
        frame = self._frames.get(stamp_ns)
        if frame is not None and frame.gt is None:
            item = self._gt.get(stamp_ns)
            if item is not None:
                frame.gt = item[1]
                frame.extras.update(item[2])
        return frame

    def _complete(self, snap: TwinSnapshot) -> TwinSnapshot:
        """``snap`` with its frame and ground truth looked up again when they were missing as the twin
        came (a twin that overtook its frame or the sim's ground truth: the oracle then failed
        'needs ... a frame with ground truth' in one jazzy launch test)."""
        if snap.tracker is not None or not hasattr(self, "_frames") or (snap.frame is not None and snap.frame.gt is not None):
            return snap
        frame = self._frame_of(snap.twin.stamp_ns)
        return snap if frame is None else TwinSnapshot(twin=snap.twin, frame=frame, tracker=None)

    # ------------------------------------------------------------------ action callbacks
    def _goal_cb(self, _goal_request) -> GoalResponse:
        return GoalResponse.ACCEPT  # every goal is accepted; its outcome is in result.status (goals.py)

    def _cancel_cb(self, goal_handle) -> CancelResponse:
        # remembered even when the goal is not running yet (a cancel right after acceptance)
        self.arbiter.request_cancel(_goal_id(goal_handle))
        return CancelResponse.ACCEPT

    def _stop_cb(self, _msg: Empty) -> None:
        self.stop_tracking("stop requested on frs/target/stop")

    def _execute_cb(self, goal_handle):
        try:
            return self._execute(goal_handle)
        except Exception as exc:  # noqa: BLE001 - the callback boundary: the goal ends 'error'
            self.health.problem(f"goal:{type(exc).__name__}", f"a ReasonSeg goal failed: {exc}", level="error")
            res = self._action_type.Result(status=Outcome.ERROR.value, error=f"internal error: {type(exc).__name__}: {exc}")
            try:
                goal_handle.abort()
            except Exception:  # noqa: BLE001 - already terminal
                pass
            return res
        finally:
            self.arbiter.finish(None, _goal_id(goal_handle))

    def _execute(self, goal_handle):
        t0 = time.monotonic()
        p = self.params
        goal = goal_handle.request
        gid = _goal_id(goal_handle)
        Result, Feedback = self._action_type.Result, self._action_type.Feedback
        stages: list[tuple[str, float]] = []

        def finish(status: Outcome, error: str = "", answer=None):
            if status is Outcome.OK and (goal_handle.is_cancel_requested or self.arbiter.cancel_requested(gid)):
                # the client cancelled before the goal ended: honour it (CANCELED), even with an answer
                status, error = Outcome.CANCELLED, cancel_reason(False)
            res = Result(status=status.value, error=error)
            if answer is not None:
                res.reasoning = answer.reasoning
                res.prompt_tokens = int(answer.prompt_tokens)
                res.cached_tokens = int(answer.cached_tokens)
                res.generated_tokens = int(answer.generated_tokens)
                for k, v in answer.timings_s.items():
                    if k != "total":
                        stages.append((k, float(v)))
            res.stage_names = [s for s, _ in stages]
            res.stage_latencies_s = [float(v) for _, v in stages]
            res.total_latency_s = float(time.monotonic() - t0)
            self.goals[status.value] = self.goals.get(status.value, 0) + 1
            self.health.extra["goals"] = dict(self.goals)
            if status is Outcome.OK:
                goal_handle.succeed()
            elif status is Outcome.CANCELLED and self._client_cancelled(goal_handle, gid):
                goal_handle.canceled()
            else:
                goal_handle.abort()
            if status is not Outcome.OK:
                self.get_logger().info(f"goal {gid[:8]} '{goal.query[:60]}': {status} — {error}")
            return res

        try:
            query = check_goal_query(goal.query, p.reasoner.max_query_chars)
            budget, note = goal_budget_s(goal.timeout_s, p.default_timeout_s)
        except ValueError as exc:  # InvalidQueryError, InvalidGoalError
            return finish(Outcome.REJECTED, str(exc))
        if note:
            self.get_logger().info(f"goal {gid[:8]}: {note}")
        engine = self.engine
        if engine is None or not self.active:
            why = self.health.error if self.health.state == "error" else (
                f"{self.get_fully_qualified_name()} is {self.health.state}, not active: "
                f"`ros2 lifecycle set {self.get_fully_qualified_name()} activate` (configure first if unconfigured)")
            return finish(Outcome.ERROR, why)
        if goal_handle.is_cancel_requested or self.arbiter.cancel_requested(gid):
            return finish(Outcome.CANCELLED, cancel_reason(False))  # cancelled at acceptance: never ran
        active, why = self.arbiter.admit(gid)
        if active is None:
            return finish(Outcome.REJECTED, why) if why else finish(Outcome.CANCELLED, cancel_reason(False))
        self.stop_tracking(f"replaced by goal {gid[:8]}")
        try:
            deadline = t0 + budget
            throttle = FeedbackThrottle(FEEDBACK_PERIOD_S)

            def send_feedback(stage_index: int, stage_name: str, so_far: str, tokens: int) -> None:
                if not throttle.allow(stage_name, time.monotonic()):
                    return
                goal_handle.publish_feedback(Feedback(stage=stage_index, stage_name=stage_name,
                                                      reasoning_so_far=so_far, generated_tokens=int(tokens)))

            # --- wait for a twin that is fresh enough
            send_feedback(Feedback.STAGE_WAITING_FOR_TWIN, "waiting_for_twin", "", 0)
            t_wait = time.monotonic()
            waited = wait_for_twin(
                self.twin_buffer, wait_s=p.twin_wait_s, max_age_s=p.max_twin_age_s, deadline=deadline, budget_s=budget,
                cancel=active.cancel,
                on_stale=lambda age: send_feedback(Feedback.STAGE_WAITING_FOR_TWIN, "waiting_for_fresh_twin", "", 0))
            stages.append(("wait_twin", time.monotonic() - t_wait))
            if active.cancel.is_set() or goal_handle.is_cancel_requested:
                return finish(Outcome.CANCELLED, cancel_reason(active.preempted))
            if waited.status is not Outcome.OK:
                return finish(waited.status, waited.error)
            snap = self._complete(waited.snapshot)

            # --- answer, with the time budget enforced through the cancel event (budget <= MAX_GOAL_TIMEOUT_S)
            timed_out = threading.Event()
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), lambda: (timed_out.set(), active.cancel.set()))
            timer.daemon = True
            timer.start()

            so_far = {"text": "", "tokens": 0}

            def on_feedback(fb) -> None:
                so_far.update(text=fb.reasoning_so_far, tokens=fb.generated_tokens)
                send_feedback(int(fb.stage_index), fb.stage, fb.reasoning_so_far, fb.generated_tokens)

            def on_model_wait(message: str) -> None:
                # detect() needs a model a background keyframe holds (TwinBackends.gate): say so
                self.get_logger().info(f"goal {gid[:8]}: {message}")
                send_feedback(Feedback.STAGE_RUNNING_TOOL, "waiting_for_model", so_far["text"], so_far["tokens"])

            tools = None
            if snap.tracker is not None:
                from frs_ros.twin.tools import run_tool

                tracker, frame = snap.tracker, snap.frame
                tools = lambda call: run_tool(call, tracker, frame, on_wait=on_model_wait)  # noqa: E731
            try:
                answer = engine.answer(query, snap.twin, snap.frame, max_targets=int(goal.max_targets),
                                       cancel=active.cancel, on_feedback=on_feedback, tool_executor=tools)
            finally:
                timer.cancel()
            status, error = action_outcome(answer.status, answer.error, cancel_set=active.cancel.is_set(),
                                           timed_out=timed_out.is_set(), preempted=active.preempted, budget_s=budget)
            if status is not Outcome.OK:
                return finish(status, error, answer)
            if goal_handle.is_cancel_requested or self.arbiter.cancel_requested(gid):
                return finish(Outcome.CANCELLED, cancel_reason(False), answer)  # answered, but the client no longer wants it
            send_feedback(Feedback.STAGE_ANSWERING, "answering", answer.reasoning, answer.generated_tokens)
            target_msgs = self.publish_targets(answer.targets, snap, query, gid)
            res = finish(Outcome.OK, "", answer)  # may still turn 'cancelled' (a cancel while publishing)
            if res.status != Outcome.OK:
                return res
            res.targets = target_msgs
            if goal.keep_tracking and p.allow_tracking and answer.targets:
                with self._tracking_lock:
                    if not active.preempted:  # no newer goal yet (it stops tracking after admit, under this lock)
                        self.tracking = TrackingSession(gid, query, [t.track_id for t in answer.targets],
                                                        p.tracking_lost_s, last_seen_ns=int(snap.twin.stamp_ns))
            self.get_logger().info(f"goal {gid[:8]} '{query[:60]}': ok, targets {answer.target_ids} "
                                   f"in {res.total_latency_s:.2f} s")
            return res
        finally:
            self.arbiter.finish(active, gid)

    def _client_cancelled(self, goal_handle, gid: str) -> bool:
        """True when the client cancelled this goal: its action state is (or, within
        ``CANCEL_STATE_WAIT_S``, becomes) CANCELING, so it can end CANCELED."""
        if goal_handle.is_cancel_requested:
            return True
        if not self.arbiter.cancel_requested(gid):
            return False
        deadline = time.monotonic() + CANCEL_STATE_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.002)
            if goal_handle.is_cancel_requested:
                return True
        return False

    # ------------------------------------------------------------------ outputs
    def _centroid(self, point: np.ndarray, header) -> tuple[Any, np.ndarray]:
        """(header, point) of a centroid in target_frame when tf2 can, else the optical frame."""
        if self._tf_buffer is None or not np.all(np.isfinite(point)):
            return header, point
        try:
            from rclpy.duration import Duration
            from rclpy.time import Time

            tf = self._tf_buffer.lookup_transform(self.params.target_frame, header.frame_id,
                                                  Time.from_msg(header.stamp), timeout=Duration(seconds=0.05))
            t, r = tf.transform.translation, tf.transform.rotation
            out = apply_transform(np.array([t.x, t.y, t.z]), np.array([r.x, r.y, r.z, r.w]), point)
            return cv.Header(stamp=header.stamp, frame_id=self.params.target_frame), out
        except Exception as exc:  # noqa: BLE001 - missing transform: keep the optical frame
            self.health.problem("tf2", f"no transform {header.frame_id} -> {self.params.target_frame} ({exc}); "
                                       "centroids stay in the optical frame")
            return header, point

    def publish_targets(self, targets: list, snap: TwinSnapshot, query: str, goal_id: str) -> list:
        """Publish mask, overlay, targets, markers (+ detections) of ``targets`` on ``snap``'s frame."""
        twin, frame = snap.twin, snap.frame
        header = cv.make_header(twin.stamp_ns, frame.frame_id if frame is not None else twin.frame_id)
        mask = np.zeros(twin.image_size, dtype=bool)
        for t in targets:
            mask |= t.mask
        centroids = [self._centroid(np.asarray(t.centroid_m, dtype=float), header) for t in targets]
        arr = cv.targets_to_msg(targets, header, query, goal_id, centroids)
        self._pub_mask.publish(cv.mask_to_msg(mask, header))
        if frame is not None:
            self._pub_overlay.publish(cv.color_to_msg(cv.overlay_rgb(frame.rgb, mask, alpha=self.params.overlay_alpha), header))
        self._pub_targets.publish(arr)
        self._pub_markers.publish(cv.target_markers(targets, header))
        if self._pub_det is not None:
            self._pub_det.publish(cv.detections_to_msg(targets, header))
        return list(arr.targets)

    # ------------------------------------------------------------------ tracking
    def stop_tracking(self, reason: str) -> None:
        with self._tracking_lock:
            if self.tracking is not None:
                self.get_logger().info(f"stopped tracking {self.tracking.track_ids} ('{self.tracking.query[:40]}'): {reason}")
                self.tracking = None

    def _tracking_loop(self, stop: threading.Event) -> None:
        seen, _ = self.twin_buffer.latest()
        from frs_ros.reasoning.api import target_from_object

        while not stop.is_set():
            seen, snap = self.twin_buffer.wait_newer(seen, timeout_s=0.5)
            if snap is None:
                continue
            observe = getattr(getattr(self.engine, "reasoner", None), "observe", None)
            if observe is not None and snap.frame is not None:  # the oracle remembers track <-> sim ids per frame
                try:
                    observe(snap.twin, snap.frame)
                except Exception as exc:  # noqa: BLE001
                    self.health.problem("observe", f"reasoner.observe failed: {exc}")
            with self._tracking_lock:
                session = self.tracking
            if session is None or not self.params.allow_tracking:
                continue
            try:
                ids = session.visible_ids(snap.twin)
                if ids is None:
                    self.stop_tracking(session.stopped_reason)
                    continue
                targets = [target_from_object(snap.twin, i) for i in ids]
                with self._tracking_lock:  # nothing goes out once stop_tracking has returned
                    if self.tracking is not session:
                        continue
                    self.publish_targets(targets, snap, session.query, session.goal_id)
                self.health.extra["tracked_frames"] = self.health.extra.get("tracked_frames", 0) + 1
            except Exception as exc:  # noqa: BLE001
                self.health.problem(f"tracking:{type(exc).__name__}", f"tracking failed on a frame: {exc}")

    def destroy_node(self) -> None:
        self._deactivate("the node is shutting down")
        self.twin_buffer.close()
        if getattr(self, "_server", None) is not None:
            self._server.destroy()
        super().destroy_node()


def _goal_id(goal_handle) -> str:
    return bytes(bytearray(goal_handle.goal_id.uuid)).hex()


def main(args=None) -> int:
    return common.run_node(ReasonerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
