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
import signal
import threading
from typing import Any, Callable, NoReturn, Optional

from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from std_msgs.msg import String

from frs_ros.wire.sync import ThrottledReporter

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
        """Decorator for callbacks: exceptions are counted and logged (throttled), never raised.

        ``InvalidHandle`` ("cannot use Destroyable because destruction was requested") is counted but
        logged at debug level only: a callback still running while its node is being destroyed (a
        camera message in flight at Ctrl-C; seen once in the jazzy launch test's log) loses that
        message on the way out, which is not a problem to report."""
        from rclpy.exceptions import InvalidHandle

        def deco(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except InvalidHandle as exc:
                    self.problem(f"{kind}:shutdown", f"{kind}: dropped while shutting down ({exc})", level="debug")
                    return None
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


class StopSignals:
    """SIGINT and SIGTERM as a *request* to stop, so that a process shuts down in a fixed order.

    rclpy's own handlers (``rclpy.init``'s default) shut the context down inside the signal handler,
    while node threads may still publish ("Failed to publish: publisher's context is invalid" from the
    twin worker), and they turn every further SIGINT into a ``KeyboardInterrupt`` wherever the main
    thread happens to be, e.g. inside ``destroy_node()`` (a second Ctrl-C, or a terminal's group
    signal on top of the one ``ros2 launch`` forwards). Here, with ``rclpy.init(signal_handler_options=
    SignalHandlerOptions.NO)``:

    - the first signal while the process is still starting (``spinning`` false: a model may be loading
      in a constructor) raises ``KeyboardInterrupt`` there, to abort the start;
    - the first signal while spinning only sets ``requested``; the main thread then stops spinning,
      finalizes and destroys the nodes and shuts the context down, in that order;
    - every later signal is ignored, and ``ignore()`` (called when the clean-up starts) ignores them at
      the OS level, so the clean-up always runs to its end and the exit code stays 0 even when a signal
      lands while the interpreter exits (CPython then resets Python handlers to the default, which
      kills with -2; an ignored signal stays ignored). Should the clean-up hang, launch escalates to
      SIGKILL after its own timeouts.

    Python runs signal handlers in the main thread only; ``install`` there (elsewhere it does nothing).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.spinning = False
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def ignore(self) -> None:
        """Ignore these signals from now on (the process is shutting down)."""
        self.spinning = self.requested = True
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        """Put the handlers back that ``install`` replaced (a caller that returns instead of exiting)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        first = not self.requested
        self.requested = True
        if first and not self.spinning:
            raise KeyboardInterrupt

    def wait(self, spinner: "Spinner", poll_s: float = 0.1) -> None:
        """Block the main thread until a stop signal came or ``spinner`` ended by itself [poll_s: s].

        (A short join in a loop: a signal interrupts it at once, and the handler takes no lock that the
        waiting thread could hold; an Event set from the handler could deadlock on its own lock.)
        """
        self.spinning = True
        while not self.requested and spinner.is_alive():
            spinner.join(poll_s)


class Spinner:
    """An executor spinning on its own thread until ``stop()``.

    ``stop()`` returns once the thread has left the executor, so nothing is destroyed under a spinning
    executor (destroying nodes or calling ``executor.shutdown()`` while another thread spins raises
    ``InvalidHandle: cannot use Destroyable because destruction was requested`` in that thread).
    """

    def __init__(self, executor: Any, name: str = "frs_executor") -> None:
        from rclpy.task import Future

        self.executor = executor
        self.error: Optional[BaseException] = None  # what ended the spin, other than stop() or a context shutdown
        self._stop = Future()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)

    def start(self) -> "Spinner":
        self._thread.start()
        return self

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin_until_future_complete(self._stop)
        except ExternalShutdownException:
            pass
        except BaseException as exc:  # noqa: BLE001 - printed by the thread's excepthook, kept for the caller
            self.error = exc
            raise

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: Optional[float] = None) -> None:
        self._thread.join(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Make the executor return from its spin and wait for that [s]; True when it has."""
        if not self._stop.done():
            self._stop.set_result(None)
        try:
            self.executor.wake()
        except Exception:  # noqa: BLE001 - an executor already shut down needs no wake-up
            pass
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()


def teardown(executor: Any, nodes: list, timeout_s: float = 10.0) -> None:
    """Take nodes down in order, with the context still valid; the executor must no longer spin.

    1. lifecycle nodes go through their shutdown transition (``on_shutdown``: worker threads stop,
       running goals are cancelled), so callbacks still running on executor threads end soon;
    2. the executor shuts down, waiting for those callbacks [timeout_s];
    3. the nodes are destroyed. The caller shuts the context down afterwards.
    """
    for node in nodes:
        if hasattr(node, "trigger_shutdown"):
            try:
                node.trigger_shutdown()
            except Exception:  # noqa: BLE001 - already finalized (or never configured): nothing to stop
                pass
    if executor is not None:
        try:
            executor.shutdown(timeout_sec=timeout_s)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    for node in nodes:
        node.destroy_node()


def exit_process(code: int) -> NoReturn:
    """End the process now, after an orderly shutdown, without the interpreter's finalization.

    Exit handlers run and logging and stdio are flushed; what is skipped is the teardown of every module.
    Measured on 2 cores at load 6-13: a process that has imported torch + transformers spent 7-14 s in
    that teardown (0.5 s with this), past ``ros2 launch``'s 5 s from SIGINT to SIGTERM, so launch
    escalated to SIGKILL ("process has died ... exit code -9") although the node had shut down cleanly.
    """
    import atexit
    import logging
    import os
    import sys

    try:
        atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit would run
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def run_node(node_factory: Callable[[], Node], args: Optional[list] = None) -> NoReturn:
    """``main()`` body of every frs node: init, spin a MultiThreadedExecutor until SIGINT/SIGTERM, then
    stop spinning, finalize and destroy the node, and shut the context down, in that order (see
    ``StopSignals``), and end the process (``exit_process``): exit code 0 after a requested stop, however
    many signals came; 1 when the executor died on its own (a callback raised: its traceback is printed
    by the executor thread). An exception while starting (bad parameters) propagates as usual."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = StopSignals().install()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = spinner = None
    try:
        node = node_factory()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        spinner = Spinner(executor, name=f"{node.get_name()}_executor").start()
        stop.wait(spinner)
    except KeyboardInterrupt:
        pass  # stopped while starting
    finally:
        stop.ignore()  # from here on every signal is ignored: the clean-up runs to its end
        if spinner is not None:
            spinner.stop()
        teardown(executor, [node] if node is not None else [])
        if rclpy.ok():
            rclpy.shutdown()
    exit_process(1 if spinner is not None and spinner.error is not None else 0)
