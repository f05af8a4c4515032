"""`ros2 launch frs_ros bringup.launch.py` for real, as a user types it (test_launch.py only parses the file).

Needs ROS 2 `launch`, `launch_ros` and ros2cli: a distro install has them; in the PyPI-wheels venv they come
from the unmodified upstream sources in ``../shared/ros-launch/ros_launch_src.tar.gz``, which
``scripts/ros_launch_tools.sh`` installs once into a cache folder beside (not into) the venv. Without
either the tests skip and say why; ``FRS_REQUIRE_LAUNCH=1`` (set by ``.ci/run``) makes that a failure.

Each scenario starts ``ros2 launch`` (stdin /dev/null, so non-interactive: one SIGINT is forwarded to each
node), requires every node and the ReasonSeg action server within ``UP_WITHIN_S``, waits for a twin and an
active reasoner, sends one goal with ``ros2 action send_goal`` and requires status ``ok``, then sends one
SIGINT and requires exit code 0, every node "finished cleanly", no process left in the launch's process
group, and none of ``FORBIDDEN`` in the log (defects a-d of issue 13). Logs: pytest's tmp_path.

Reasoner: the defaults scenario runs config/frs.yaml's own student (loading it is part of the test) on a
fixed query (up to 3 goals until one is ``ok``: a learned student may write an unparsable rollout on some
frame). The namespace scenario is about namespaces, remapped topics and an outside camera, so it
passes ``params_file:=`` a copy of config/frs.yaml with the oracle reasoner, asked one of the episode's own
queries (from the camera's latched ``/robot1/frs/sim/queries``): deterministic, and ``ok`` only when frames,
twin and ground truth really crossed the remapped topics (else ``no_twin``/``error``).
``FRS_LAUNCH_TEST_PARAMS=<yaml>`` runs the defaults scenario with that ``params_file:=`` instead (a development
machine where the default student's weights are not there yet).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import TORCH_MISSING, torch_missing

pytestmark = [pytest.mark.launch, pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
#: every node and the action server must be discoverable this soon after `ros2 launch` starts [s]
UP_WITHIN_S = 30.0
#: a first twin and an active reasoner (the model loaded) this soon after start [s]; the nano student
#: loads in 2-20 s on 2 busy cores, a 135 M student (converted from GGUF on first use) takes longer
READY_WITHIN_S = 150.0
GOAL_TIMEOUT_S = 120.0
SHUTDOWN_WITHIN_S = 30.0
QUERY = "the thing I could pour hot tea into"
#: in no log: a failed twin update (a), the shutdown race (b), a second-SIGINT traceback (c), InvalidHandle (d)
FORBIDDEN = ("twin update failed", "Traceback", "KeyboardInterrupt", "context is invalid", "InvalidHandle",
             "process has died", "Failed to publish")
ALL_NODES = ("sim_camera_node", "camera_ingest_node", "digital_twin_node", "reasoner_node")
#: scenario B: a camera driver outside the launch file, on topics outside the namespace
CAM = {"color_topic": "/cam1/color/image_raw", "depth_topic": "/cam1/aligned_depth_to_color/image_raw",
       "camera_info_topic": "/cam1/color/camera_info"}


def _params_with_reasoner(tmp_path: Path, **reasoner: str) -> Path:
    """config/frs.yaml with these ``reasoner.*`` values, for ``params_file:=``."""
    doc = yaml.safe_load((ROOT / "config" / "frs.yaml").read_text())
    doc["/**/reasoner_node"]["ros__parameters"]["reasoner"].update(reasoner)
    out = tmp_path / "frs_reasoner.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _has_ros2_launch(env: dict) -> bool:
    if shutil.which("ros2", path=env.get("PATH")) is None:
        return False
    probe = subprocess.run(["python", "-c", "import launch_ros, ros2launch, ros2action"], env=env,
                           capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def launch_env(tmp_path_factory) -> dict:
    """Environment for `ros2 launch` / `ros2 action`: the installed ROS 2's, else the upstream sources
    installed by scripts/ros_launch_tools.sh (built once per tarball and venv, then reused)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
               ROS_LOG_DIR=str(tmp_path_factory.mktemp("roslog")))
    if _has_ros2_launch(env):
        return env
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "ros_launch_tools.sh")], env=env, capture_output=True,
                       text=True, timeout=900)
    if r.returncode == 3:
        why = ("no `ros2 launch` here and no upstream sources to install it from: " + r.stderr.strip()
               + " — on a ROS 2 install source its setup file first")
        if os.environ.get("FRS_REQUIRE_LAUNCH") == "1":
            pytest.fail("FRS_REQUIRE_LAUNCH=1 but " + why)
        pytest.skip(why)
    assert r.returncode == 0, f"scripts/ros_launch_tools.sh failed ({r.returncode}):\n{r.stderr[-3000:]}"
    folder = r.stdout.strip().splitlines()[-1]
    print(f"[launch] tools in {folder} ({time.monotonic() - t0:.1f} s)")
    dump = subprocess.run(["bash", "-c", f'. "{folder}/env.sh" && env -0'], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    env = dict(item.split("=", 1) for item in dump.stdout.split("\0") if "=" in item)
    assert _has_ros2_launch(env), f"`ros2 launch` is still not usable after sourcing {folder}/env.sh"
    return env


def _group_alive(pgid: int) -> list[str]:
    """Processes (not zombies) in process group ``pgid``: 'pid cmdline' each."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"{proc.name} {cmd[:200]}")
        except (OSError, ValueError):
            continue
    return out


def _default_sigint() -> None:
    """Child set-up: SIGINT at its default disposition, as under a terminal. A test run started as a
    background job inherits SIGINT ignored, and `ros2 launch` would then ignore the SIGINT we send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen, group: bool = False) -> tuple[int | None, float]:
    """One SIGINT (to the process, or to its whole group as a terminal's Ctrl-C does); exit code and seconds."""
    t0 = time.monotonic()
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=SHUTDOWN_WITHIN_S)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.monotonic() - t0


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class GraphProbe:
    """What `ros2 node list` / `ros2 action list` / `ros2 topic echo ~/status` show, in plain rclpy."""

    def __init__(self, context, ns: str, nodes: tuple[str, ...]) -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from frs_ros.action import ReasonSeg
        from frs_ros.nodes import common
        from frs_ros.wire.sim_wire import queries_from_json

        self.prefix = f"/{ns}" if ns else ""
        self.nodes = nodes
        self.node = rclpy.create_node("frs_launch_test_probe", context=context)
        self.action = f"{self.prefix}/{common.REASON_SEG}"
        self.client = ActionClient(self.node, ReasonSeg, self.action)
        self.status: dict[str, dict] = {}
        self.sim_queries: list = []
        self.node.create_subscription(String, f"{self.prefix}/{common.SIM_QUERIES}",
                                      lambda m: self.sim_queries.extend(queries_from_json(m.data)), common.LATCHED_QOS)
        for name in nodes:
            self.node.create_subscription(String, f"{self.prefix}/{name}/status",
                                          lambda m, name=name: self.status.__setitem__(name, json.loads(m.data)),
                                          common.LATCHED_QOS)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def missing(self) -> list[str]:
        names = {f"{ns.rstrip('/')}/{n}" for n, ns in self.node.get_node_names_and_namespaces()}
        return [n for n in self.nodes if f"{self.prefix}/{n}" not in names]

    def wait(self, pred, deadline: float) -> bool:
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
            if pred():
                return True
        return pred()

    def ready(self) -> bool:
        twin = self.status.get("digital_twin_node", {})
        reasoner = self.status.get("reasoner_node", {})
        return twin.get("twins", 0) >= 1 and reasoner.get("state") == "ok"

    def errors(self) -> dict[str, str]:
        """Nodes in state 'error' (a model that cannot load, bad parameters): node -> the reason."""
        return {n: s.get("error", "") for n, s in self.status.items() if s.get("state") == "error"}

    def close(self) -> None:
        self.executor.shutdown()
        self.client.destroy()
        self.node.destroy_node()


def _send_goal(env: dict, action: str, query: str, out: Path) -> tuple[str | None, str]:
    """`ros2 action send_goal` (max_targets 1: the CLI prints every mask pixel as YAML); (result status, output)."""
    goal = "{query: '%s', max_targets: 1, keep_tracking: false}" % query.replace("'", "''")
    with open(out, "w") as fh:
        subprocess.run(["ros2", "action", "send_goal", action, "frs_ros/action/ReasonSeg", goal], env=env,
                       stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, timeout=GOAL_TIMEOUT_S)
    text = out.read_text(errors="replace")
    result = text.split("Result:", 1)[1] if "Result:" in text else ""
    m = re.search(r"^\s*status: (\S+)", result, re.M)
    summary = "\n".join(line for line in text.splitlines()
                        if re.match(r"\s*(status|error):|Goal |Waiting|Result", line))
    return (m.group(1).strip("'\"") if m else None), summary


def _sim_query(probe: GraphProbe) -> str | None:
    """One of the episode's queries with a target (not temporal: those need the episode's events first; not
    an affordance where torch is missing: the oracle answers those through match(), whose MiniLM text
    embedder needs sentence-transformers and torch)."""
    skip = {"temporal", "affordance"} if torch_missing() else {"temporal"}
    return next((q.text for q in probe.sim_queries if q.target_ids and q.kind not in skip), None)


def _run_scenario(ros_context, env: dict, tmp_path: Path, name: str, args: list[str], ns: str,
                  nodes: tuple[str, ...], camera: list[str] | None = None, query=QUERY, tries_ok: int = 1) -> dict:
    """Launch, check, goal, SIGINT; returns the timings. ``camera``: a camera driver started beside the launch;
    ``query``: the goal's text, or a function of the GraphProbe that gives it; ``tries_ok``: goals sent until
    one ends 'ok'."""
    log = tmp_path / f"{name}.log"
    cam_log = tmp_path / f"{name}_camera.log"
    times: dict = {}
    t0 = time.monotonic()
    cam = None
    probe = GraphProbe(ros_context, ns, nodes)
    with open(log, "wb") as fh, open(cam_log, "wb") as cfh:
        if camera is not None:
            # its own process group: stopped with a group SIGINT, like Ctrl-C in its terminal
            cam = subprocess.Popen(camera, env=env, stdin=subprocess.DEVNULL, stdout=cfh, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_default_sigint)
        # its own session: no terminal, one SIGINT to `ros2 launch` only (it forwards one to each node)
        proc = subprocess.Popen(["ros2", "launch", "frs_ros", "bringup.launch.py", *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)
        try:
            up = probe.wait(lambda: not probe.missing() and probe.client.server_is_ready(), t0 + UP_WITHIN_S)
            times["up_s"] = time.monotonic() - t0
            assert up, (f"{name}: after {UP_WITHIN_S:.0f} s missing nodes {probe.missing()}, action server {probe.action} "
                        f"{'up' if probe.client.server_is_ready() else 'not up'}; log:\n{log.read_text()[-3000:]}")
            ready = probe.wait(lambda: probe.ready() or probe.errors(), t0 + READY_WITHIN_S) and not probe.errors()
            times["ready_s"] = time.monotonic() - t0
            assert not probe.errors(), f"{name}: nodes in state 'error': {probe.errors()}"
            assert ready, f"{name}: no twin or no active reasoner after {READY_WITHIN_S:.0f} s: {probe.status}"
            if callable(query):
                assert probe.wait(lambda: query(probe), time.monotonic() + 10.0), f"{name}: no query to ask"
                query = query(probe)
            t1 = time.monotonic()
            tries = []
            for i in range(tries_ok):
                status, summary = _send_goal(env, probe.action, query, tmp_path / f"{name}_goal{i}.txt")
                tries.append(f"try {i + 1}: {status}\n{summary}")
                if status == "ok":
                    break
            times["goal_s"] = time.monotonic() - t1
            assert status == "ok", f"{name}: no goal ended 'ok':\n" + "\n".join(tries)
            assert "Goal finished with status: SUCCEEDED" in summary, summary
            assert proc.poll() is None, f"{name}: ros2 launch ended early ({proc.returncode})"
            rc, times["shutdown_s"] = _stop(proc)
            assert rc == 0, f"{name}: ros2 launch exit code {rc} after one SIGINT; log:\n{log.read_text()[-3000:]}"
            if cam is not None:
                cam_rc, _ = _stop(cam, group=True)
                assert cam_rc == 0, f"{name}: the camera driver's exit code {cam_rc}:\n{cam_log.read_text()[-2000:]}"
            time.sleep(0.2)
            left = _group_alive(proc.pid) + (_group_alive(cam.pid) if cam is not None else [])
            assert not left, f"{name}: processes left after shutdown: {left}"
        finally:
            probe.close()
            for p in (proc, cam):
                if p is not None and p.poll() is None:
                    _kill_group(p)
    text = log.read_text(errors="replace") + cam_log.read_text(errors="replace")
    bad = [line for line in text.splitlines() if any(f in line for f in FORBIDDEN)]
    assert not bad, f"{name}: the log has {len(bad)} bad lines, e.g.:\n" + "\n".join(bad[:15])
    for node in nodes:
        if node != "sim_camera_node" or camera is None:
            assert re.search(rf"\[{node}-\d+\]: process has finished cleanly", text), f"{name}: {node} did not finish cleanly"
    times["total_s"] = time.monotonic() - t0
    print(f"[launch] {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    return {"log": text, **times}


def test_launch_defaults(ros_context, launch_env, tmp_path):
    """`ros2 launch frs_ros bringup.launch.py`: the simulated camera, the sim twin, the default student."""
    params = os.environ.get("FRS_LAUNCH_TEST_PARAMS")
    if not params and torch_missing():
        pytest.skip("config/frs.yaml's student " + TORCH_MISSING)  # the namespace scenario runs the oracle
    args = [f"params_file:={params}"] if params else []
    # A learned student can write a rollout that does not parse on some frame (status 'error', seen with
    # the nano student); the twin changes from frame to frame, so up to 3 goals, one of which must be 'ok'.
    _run_scenario(ros_context, launch_env, tmp_path, "defaults", args, "", ALL_NODES, tries_ok=3)


def test_launch_namespace_without_sim_camera(ros_context, launch_env, tmp_path):
    """`namespace:=robot1 use_sim_camera:=false` with the camera topics remapped: the camera is an outside
    driver (here sim_camera_node started by `ros2 run` under another name, on /cam1/*, with its ground
    truth and queries in /robot1), and the oracle answers one of its queries, so the goal's `ok` means
    frames really crossed the remapped topics."""
    camera = ["ros2", "run", "frs_ros", "sim_camera_node", "--ros-args", "-r", "__ns:=/robot1",
              "-r", "__node:=external_camera"] + [a for k, v in CAM.items() for a in ("-p", f"{k}:={v}")]
    params = _params_with_reasoner(tmp_path, backend="oracle")
    res = _run_scenario(ros_context, launch_env, tmp_path, "robot1_no_sim_camera",
                        ["namespace:=robot1", "use_sim_camera:=false", f"params_file:={params}"]
                        + [f"{k}:={v}" for k, v in CAM.items()],
                        "robot1", ALL_NODES[1:], camera=camera, query=_sim_query)
    assert "[sim_camera_node-" not in res["log"], "use_sim_camera:=false still started sim_camera_node"
    assert f"colour '{CAM['color_topic']}'" in res["log"], "camera_ingest_node did not take the remapped colour topic"
