"""A reasoner node under load, over real rclpy + DDS: the harness shared by
``test/test_nodes_reasoner.py`` (issue 14's abuse tests and its slow soak) and ``bench/soak.py``.

- ``ScriptedReasoner``: answers track ``[5]`` at once (or after ``tokens`` "tokens" of ``delay_s``
  each, stopping between them when cancelled), so a soak measures the ROS layer (action server,
  goal policy, twin buffer, result publishing), not the LM.
- ``ReasonerRig``: a ``ReasonerNode`` with that reasoner on a MultiThreadedExecutor, and a twin fed
  into its ``TwinBuffer`` every 50 ms like a running camera + twin node.
- ``GoalProbe``: an action client on its own single-threaded executor; goals are sent from the
  thread that spins it (rclpy 9's ``send_goal_async`` from another thread can lose the goal
  response: issue 14, item 8).
- ``run_soak``: the node in a child process; N sequential goals, then K concurrent clients, with the
  child's RSS read after an idle settle (``gc.collect`` in the child, then a pause). ``soak_table``
  prints the result.

Every wait has a timeout, so a failure never hangs.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

#: how long a probe waits for a server, a goal response or a result [s]
WAIT_S = 20.0


def wait_for(pred, timeout: float, what: str) -> None:
    """Poll ``pred`` every 10 ms; AssertionError naming ``what`` after ``timeout`` [s]."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def small_twin(stamp_ns: int):
    """An 8x6 twin with one object (track 5, a mug, 1 m ahead) stamped ``stamp_ns`` [ns]."""
    from frs_ros.camera import CameraIntrinsics
    from frs_ros.masks import rle_encode
    from frs_ros.twin.types import DigitalTwin, TwinObject

    k = CameraIntrinsics(fx=10, fy=10, cx=4, cy=3, width=8, height=6)
    m = np.zeros((6, 8), bool)
    m[2:4, 2:4] = True
    obj = TwinObject(track_id=5, mask=rle_encode(m), box=(2, 2, 4, 4), area_px=4, label="mug", score=1.0,
                     centroid_m=np.array([0.0, 0.0, 1.0]))
    return DigitalTwin(stamp_ns=int(stamp_ns), frame_id="cam", intrinsics=k, objects=[obj])


def slow_tokens(n: int, delay_s: float, cancel, on_feedback):
    """Stream ``n`` placeholder "tokens", one per ``delay_s`` [s], with feedback, checking ``cancel``
    between tokens (a long-running reasoner to cancel or preempt, deterministically). Returns the
    ``cancelled`` ReasonerOutput when cancelled, else None."""
    from frs_ros.reasoning.base import Feedback, ReasonerOutput

    for i in range(n):
        if cancel is not None and cancel.is_set():
            return ReasonerOutput(text="<reason>" + "." * i, status="cancelled", error="cancelled between tokens",
                                  generated_tokens=i)
        if on_feedback is not None:
            on_feedback(Feedback("reasoning", "<reason>" + "." * i, i))
        time.sleep(delay_s)
    return None


class ScriptedReasoner:
    """Answers ``[5]``; with ``delay_s`` > 0 it first streams ``tokens`` "tokens", stopping between
    them when cancelled (something long-running to cancel, deterministically). ``calls`` counts."""

    def __init__(self):
        self.delay_s = 0.0
        self.tokens = 50
        self.calls = 0

    def reason(self, query, twin, twin_text, frame, tools, *, max_targets=0, cancel=None, on_feedback=None):
        from frs_ros.reasoning.base import ReasonerOutput
        from frs_ros.reasoning.rollout import parse_rollout

        self.calls += 1
        stopped = slow_tokens(self.tokens if self.delay_s > 0 else 0, self.delay_s, cancel, on_feedback)
        if stopped is not None:
            return stopped
        text = "<reason>a mug holds tea</reason><answer>5</answer>"
        return ReasonerOutput(text=text, rollout=parse_rollout(text), status="ok", generated_tokens=8)


class GoalProbe:
    """A client node on its own single-threaded executor, spun by one thread; ``call(fn)`` runs
    ``fn`` in that thread (where rclpy's ActionClient is safe to use) and returns its result.

    deep_qos: the client's goal/cancel/result services keep 1000 responses (as the demo's
    ``GoalClient``); False = rclpy's default (keep-last 10), like ``ros2 action send_goal``.
    """

    def __init__(self, context, name="probe", action="frs/reason_seg", deep_qos=True):
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor

        from frs_ros.action import ReasonSeg
        from frs_ros.nodes.reasoner_node import ACTION_SERVICE_QOS

        self.ReasonSeg = ReasonSeg
        self.node = rclpy.create_node(name, context=context)
        qos = dict(goal_service_qos_profile=ACTION_SERVICE_QOS, cancel_service_qos_profile=ACTION_SERVICE_QOS,
                   result_service_qos_profile=ACTION_SERVICE_QOS) if deep_qos else {}
        self.client = ActionClient(self.node, ReasonSeg, action, **qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        assert self.client.wait_for_server(timeout_sec=WAIT_S), "the ReasonSeg action server did not appear"

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shut down under us
            pass

    def call(self, fn, timeout=WAIT_S):
        task = self.executor.create_task(fn)
        wait_for(task.done, timeout, "the client thread")
        return task.result()

    def goal(self, query="the mug", **kw):
        return self.ReasonSeg.Goal(query=query, **kw)

    def send_many(self, goals, feedback=None, timeout=WAIT_S):
        """Send ``goals`` back to back from the spinning thread; returns their goal-response futures."""
        return self.call(lambda: [self.client.send_goal_async(g, feedback_callback=feedback) for g in goals], timeout)

    def results(self, handles, timeout=WAIT_S):
        return self.call(lambda: [h.get_result_async() for h in handles], timeout)

    def result_of(self, handle, timeout=WAIT_S):
        """The GetResult response of one goal, waiting up to ``timeout`` [s]. Asked a second time when
        the first response has not come after half of it: the server keeps a finished goal's result,
        so a response lost on the way (seen once in ~5 jazzy CI runs, under load) is answered again,
        while a goal that never ended still times out (the guarantee under test)."""
        rf = self.results([handle], timeout)[0]
        try:
            wait_for(rf.done, timeout / 2, "the result")
        except AssertionError:
            rf = self.results([handle], timeout)[0]
            wait_for(rf.done, timeout / 2, "the result (asked twice)")
        return rf.result()

    def run(self, goal, timeout=WAIT_S, feedback=None):
        """One goal to its end: (goal handle, GetResult response); each step waits up to ``timeout`` [s]."""
        fut = self.send_many([goal], feedback, timeout)[0]
        wait_for(fut.done, timeout, "the goal response")
        handle = fut.result()
        return handle, self.result_of(handle, timeout)

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.client.destroy()
        self.node.destroy_node()


class ReasonerRig:
    """A ReasonerNode with a ``ScriptedReasoner`` (``.reasoner``) on a MultiThreadedExecutor, and a
    camera-like twin feed (``feed``). ``overrides``: node parameters by name."""

    def __init__(self, context, overrides=None):
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter

        from frs_ros.nodes.reasoner_node import ReasonerNode
        from frs_ros.wire.sync import TwinBuffer
        from frs_ros.reasoning.api import ReasonSegEngine
        from frs_ros.reasoning.config import ReasonerConfig

        self.reasoner = ScriptedReasoner()
        self.buffer = TwinBuffer()
        params = {"reasoner.backend": "oracle", **(overrides or {})}
        self.node = ReasonerNode(twin_buffer=self.buffer, context=context,
                                 engine=ReasonSegEngine(ReasonerConfig(backend="oracle"), reasoner=self.reasoner),
                                 parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.executor = MultiThreadedExecutor(num_threads=8, context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        self._feeding = threading.Event()
        self._feeder = None

    def put_twin(self):
        from frs_ros.wire.sync import TwinSnapshot

        self.buffer.put(TwinSnapshot(twin=small_twin(time.time_ns()), frame=None, tracker=None))

    def feed(self, on=True, period_s=0.05):
        """Keep a fresh twin coming (a running camera + twin node), or stop it."""
        if on and self._feeder is None:
            self._feeding.clear()

            def loop():
                while not self._feeding.wait(period_s):
                    self.put_twin()

            self.put_twin()
            self._feeder = threading.Thread(target=loop, daemon=True)
            self._feeder.start()
        elif not on and self._feeder is not None:
            self._feeding.set()
            self._feeder.join(timeout=2.0)
            self._feeder = None

    def close(self):
        self.feed(False)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._thread.join(timeout=5.0)


# ---------------------------------------------------------------------------------------- soak
def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` [MB] (VmRSS of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def _serve(conn, domain_id: int) -> None:
    """Child process: a ``ReasonerRig`` with a live twin feed until the parent says stop; "gc"
    runs a collection and answers "ok" (the parent then reads the settled RSS)."""
    import gc

    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    rig = ReasonerRig(ctx)
    rig.feed(True)
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd == "gc":
            gc.collect()
            conn.send("ok")
        else:
            break
    rig.close()
    ctx.try_shutdown()


def _ms_pct(xs, q) -> float:
    return float(np.percentile(xs, q)) * 1e3


@dataclass
class SoakResult:
    """What ``run_soak`` measured. RSS [MB] of the node's process after an idle settle; latencies
    [ms] are goal round trips (send to result) seen by one client."""

    sequential: int
    clients: int
    goals_per_client: int
    rss_start_mb: float
    rss_after_sequential_mb: float
    #: settled RSS after each concurrent round
    rss_after_rounds_mb: list[float]
    #: RSS every ``sample_every`` sequential goals (not settled: the node is busy)
    rss_samples_mb: list[float]
    sample_every: int
    latencies_s: list[float] = field(repr=False)
    round_wall_s: list[float]
    #: terminal status of each concurrent goal ("ok", or "cancelled" when preempted)
    concurrent_statuses: list[str]
    wall_s: float

    @property
    def growth_pct(self) -> float:
        """Settled RSS growth from start to the end of the last round [%]."""
        return 100.0 * (self.rss_after_rounds_mb[-1] - self.rss_start_mb) / self.rss_start_mb

    @property
    def sequential_growth_pct(self) -> float:
        return 100.0 * (self.rss_after_sequential_mb - self.rss_start_mb) / self.rss_start_mb

    @property
    def last_half(self) -> list[float]:
        return self.rss_samples_mb[len(self.rss_samples_mb) // 2:]

    @property
    def last_half_slope_mb_per_1000(self) -> float:
        """Least-squares slope of RSS over the last half of the sequential goals [MB per 1,000 goals]."""
        ys = np.asarray(self.last_half)
        if len(ys) < 2:
            return float("nan")
        xs = np.arange(len(ys)) * self.sample_every
        return float(np.polyfit(xs, ys, 1)[0]) * 1000.0

    def latency_ms(self, part: str) -> tuple[float, float]:
        """(p50, p95) [ms] of the first or last 100 sequential goals (``part`` 'start' or 'end')."""
        n = min(100, len(self.latencies_s))
        xs = self.latencies_s[:n] if part == "start" else self.latencies_s[-n:]
        return _ms_pct(xs, 50), _ms_pct(xs, 95)


def run_soak(context, domain_id: int, sequential: int = 1000, clients: int = 10, goals_per_client: int = 20,
             rounds: int = 2, warmup: int = 50, sample_every: int = 50, settle_s: float = 2.0,
             goal_timeout_s: float = 60.0, client_goals: int = 100, log=lambda msg: None) -> SoakResult:
    """The reasoner node in a child process (spawned; the same ``domain_id``): ``warmup`` goals,
    ``sequential`` goals one after another from one client, then ``rounds`` of ``clients`` clients
    sending ``goals_per_client`` goals each at once. Raises AssertionError when a goal does not end
    or a sequential goal does not end ``ok`` (within ``goal_timeout_s`` for its response and again for
    its result: generous, a loaded 2-core machine stalls a niced run for seconds). ``context``: an
    initialised rclpy Context here.

    The sequential client is replaced by a fresh one every ``client_goals`` goals (untimed): rclpy
    9.1.2's ``ActionClient.send_goal_async`` registers two futures and completes one, and the
    executor walks every registered future each time the client has a message, so one long-lived
    client slows itself down goal after goal. Measured with one client for all 1,000 goals (load
    11-14): p50 per 100 goals 68, 98, 208, 196, 340, 364, 388, 369, 430, 412 ms, while the node's RSS
    stayed flat; this measures the node, not that client-side leak."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    conn, child_conn = mp.Pipe()
    server = mp.Process(target=_serve, args=(child_conn, domain_id), daemon=True)
    t0 = time.monotonic()
    server.start()
    probes: list[GoalProbe] = []

    def settle() -> float:
        conn.send("gc")
        if not (conn.poll(30.0) and conn.recv() == "ok"):
            raise AssertionError("the soak's node process did not answer a gc request within 30 s")
        time.sleep(settle_s)
        return rss_mb(server.pid)

    try:
        if not (conn.poll(60.0) and conn.recv() == "ready"):
            raise AssertionError("the soak's node process did not come up within 60 s")
        probe = GoalProbe(context, name="soak_probe")
        probes = [probe] + [GoalProbe(context, name=f"soak_client_{k}") for k in range(clients)]
        for i in range(warmup):  # discovery of the result/feedback paths, allocator pools
            probe.run(probe.goal(f"warm {i}"), timeout=goal_timeout_s)
        for k, p in enumerate(probes[1:]):
            p.run(p.goal(f"warm client {k}"), timeout=goal_timeout_s)
        rss0 = settle()
        log(f"settled RSS {rss0:.1f} MB; {sequential} sequential goals")
        lat, samples = [], []
        for i in range(sequential):
            if i and client_goals and i % client_goals == 0:
                probe.close()
                probe = probes[0] = GoalProbe(context, name=f"soak_probe_{i}")
                probe.run(probe.goal("warm"), timeout=goal_timeout_s)
            t = time.monotonic()
            _, res = probe.run(probe.goal(f"the mug {i}"), timeout=goal_timeout_s)
            lat.append(time.monotonic() - t)
            if res.result.status != "ok":
                raise AssertionError(f"sequential goal {i} ended {res.result.status!r}: {res.result.error}")
            if (i + 1) % sample_every == 0:
                samples.append(rss_mb(server.pid))
        rss1 = settle()
        log(f"settled RSS {rss1:.1f} MB; {rounds} x {clients} clients x {goals_per_client} goals")

        statuses: list[str] = []
        lock = threading.Lock()

        def client(p, k, r):
            for i in range(goals_per_client):
                _, res = p.run(p.goal(f"round {r} client {k} goal {i}"), timeout=goal_timeout_s)
                with lock:
                    statuses.append(res.result.status)

        round_wall, round_rss = [], []
        for r in range(rounds):  # preempt policy: one client's goal may preempt another's
            threads = [threading.Thread(target=client, args=(p, k, r)) for k, p in enumerate(probes[1:])]
            t = time.monotonic()
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=300.0)
            round_wall.append(time.monotonic() - t)
            round_rss.append(settle())
    finally:
        for p in probes:
            p.close()
        if server.is_alive():
            conn.send("stop")
            server.join(timeout=20.0)
        if server.is_alive():
            server.kill()
    return SoakResult(sequential=sequential, clients=clients, goals_per_client=goals_per_client, rss_start_mb=rss0,
                      rss_after_sequential_mb=rss1, rss_after_rounds_mb=round_rss, rss_samples_mb=samples,
                      sample_every=sample_every, latencies_s=lat, round_wall_s=round_wall,
                      concurrent_statuses=statuses, wall_s=time.monotonic() - t0)


def soak_table(r: SoakResult) -> str:
    """Markdown table of a soak: settled RSS and sequential-goal latency at start and end, the
    trend over the last half, the concurrent rounds."""
    (s50, s95), (e50, e95) = r.latency_ms("start"), r.latency_ms("end")
    n = min(100, len(r.latencies_s))
    half = r.last_half
    counts = {s: r.concurrent_statuses.count(s) for s in sorted(set(r.concurrent_statuses))}
    expected = r.clients * r.goals_per_client * len(r.round_wall_s)
    rows = [
        ("reasoner node RSS after idle settle, start", f"{r.rss_start_mb:.1f} MB"),
        (f"... after {r.sequential} sequential goals", f"{r.rss_after_sequential_mb:.1f} MB "
                                                     f"({r.sequential_growth_pct:+.2f} %)"),
        (f"... after {len(r.round_wall_s)} x {r.clients} concurrent clients x {r.goals_per_client} goals",
         f"{r.rss_after_rounds_mb[-1]:.1f} MB ({r.growth_pct:+.2f} %)"),
        (f"RSS over the last half ({len(half)} samples, every {r.sample_every} goals)",
         f"{min(half):.1f}-{max(half):.1f} MB, slope {r.last_half_slope_mb_per_1000:+.2f} MB per 1,000 goals"),
        (f"goal round trip, first {n} sequential goals, p50 / p95", f"{s50:.1f} / {s95:.1f} ms"),
        (f"goal round trip, last {n} sequential goals, p50 / p95", f"{e50:.1f} / {e95:.1f} ms"),
        (f"concurrent rounds: {expected} goals", f"{len(r.concurrent_statuses)} terminal {counts}, rounds took "
                                                 + ", ".join(f"{t:.1f} s" for t in r.round_wall_s)),
        ("wall time", f"{r.wall_s:.0f} s"),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join([f"| {'soak':<{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
                     + [f"| {a:<{w}} | {b} |" for a, b in rows])


def default_domain_id() -> int:
    """ROS_DOMAIN_ID from the environment, else 10 + pid % 200 (apart from other runs here)."""
    return int(os.environ.get("ROS_DOMAIN_ID") or 10 + os.getpid() % 200)
