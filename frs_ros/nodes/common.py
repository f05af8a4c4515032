"""What every frs_ros node shares: QoS profiles, topic names, the callback guard, status.

A node never dies on a bad message: callbacks are wrapped by ``NodeHealth.guard``, which catches
the exception at the callback boundary, counts it by kind, and logs it once per period
(throttled) with what to do. Each node publishes ``~/status`` (std_msgs/String, JSON:
``{"node", "state", "error", "counters"}``) once per second and on every state change, with
transient-local durability so a late ``ros2 topic echo`` sees the last state.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any, Callable, Optional

from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from std_msgs.msg import String

from frs_ros.nodes.sync import ThrottledReporter

# ---- topic names (relative: they follow the node namespace; see docs/ros.md)
FRAME_COLOR = "frs/frame/color"
FRAME_DEPTH = "frs/frame/depth"
FRAME_INFO = "frs/frame/camera_info"
SIM_INSTANCE_IDS = "frs/sim/instance_ids"
SIM_OBJECTS = "frs/sim/objects"
SIM_QUERIES = "frs/sim/queries"
TWIN = "frs/twin"
TWIN_INSTANCE_IDS = "frs/twin/instance_ids"
TWIN_MARKERS = "frs/twin/markers"
REASON_SEG = "frs/reason_seg"
TARGET_MASK = "frs/target/mask"
TARGET_OVERLAY = "frs/target/overlay"
TARGETS = "frs/targets"
TARGET_MARKERS = "frs/target/markers"
TARGET_DETECTIONS = "frs/target/detections"
TARGET_STOP = "frs/target/stop"

#: Reliable, keep-last: the pipeline's own hand-off topics (every set matters, little lag).
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
#: Latched: a late subscriber gets the last message (status, simulator queries).
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def camera_qos(reliability: str, depth: int) -> QoSProfile:
    """Subscription QoS for camera streams: sensor-data (best effort) or reliable."""
    if reliability == "best_effort":
        q = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("history", "reliability", "durability")},
                       depth=depth)
        return q
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


class NodeHealth:
    """State ('starting' | 'ok' | 'error'), problem counters and throttled logging of one node."""

    def __init__(self, node: Node, period_s: float = 10.0) -> None:
        self.node = node
        self.state = "starting"
        self.error = ""
        self.reporter = ThrottledReporter(period_s=period_s)
        self.extra: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pub = node.create_publisher(String, "~/status", LATCHED_QOS)
        self._timer = node.create_timer(1.0, self.publish)

    def set_state(self, state: str, error: str = "") -> None:
        with self._lock:
            changed = (state, error) != (self.state, self.error)
            self.state, self.error = state, error
        if changed:
            if state == "error":
                self.node.get_logger().error(error)
            self.publish()

    def problem(self, kind: str, message: str, level: str = "warning") -> None:
        """Count a problem; log it (with what to do) the first time and then once per period."""
        if self.reporter.report(kind):
            n = self.reporter.counts.get(kind, 1)
            text = f"{message} [{kind}: {n} so far; logged at most every {self.reporter.period_s:.0f} s]"
            getattr(self.node.get_logger(), level)(text)

    def guard(self, kind: str, hint: str = "") -> Callable:
        """Decorator for callbacks: exceptions are counted and logged (throttled), never raised."""

        def deco(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - the callback boundary
                    self.problem(f"{kind}:{type(exc).__name__}", f"{kind}: {exc}" + (f" — {hint}" if hint else ""))
                    return None

            return wrapper

        return deco

    def snapshot(self) -> dict:
        with self._lock:
            return {"node": self.node.get_name(), "state": self.state, "error": self.error,
                    "counters": {str(k): v for k, v in self.reporter.counts.items()}, **self.extra}

    def publish(self) -> None:
        try:
            self._pub.publish(String(data=json.dumps(self.snapshot(), default=str)))
        except Exception:  # noqa: BLE001 - shutting down
            pass


def node_kwargs(parameter_overrides: Optional[list] = None, context: Any = None, namespace: str = "") -> dict:
    """Keyword arguments for ``rclpy.node.Node`` shared by the frs nodes' constructors."""
    kw: dict[str, Any] = {"namespace": namespace or None}
    if parameter_overrides is not None:
        kw["parameter_overrides"] = parameter_overrides
    if context is not None:
        kw["context"] = context
    return {k: v for k, v in kw.items() if v is not None}


def run_node(node_factory: Callable[[], Node], args: Optional[list] = None) -> int:
    """``main()`` body: init, spin a MultiThreadedExecutor until Ctrl-C, shut down cleanly."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
