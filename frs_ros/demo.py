"""The frs_ros demo (``make demo`` / ``python -m frs_ros.demo``): the whole graph, live, on the sim camera.

1. brings up sim camera -> camera ingest -> digital twin -> reasoner in one process
   (``frs_ros.bringup``, config/frs.yaml), with the shipped student (SmolLM2-135M + LoRA) when
   ``models/smollm2_student`` exists, else the oracle teacher (printed);
2. plays a simulated episode with object events, and after it (so the event has happened) sends
   ReasonSeg goals through a real ``ActionClient`` over DDS: an affordance, a spatial, a
   temporal/video and a no-target query of that episode;
3. prints the reasoning, the answer (ids, labels, depth, 3-D centroids), the timings, and the IoU
   with the simulator's ground truth;
4. writes the overlays to ``out/demo/*.png`` and an mcap bag of the outputs (``out/demo/bag``:
   recorded by a subscriber from the serialised messages, through the rosbags writer).

The client is the pattern to copy (``GoalClient``): the ``ActionClient`` lives on a node of its own
with its own single-threaded executor, and the thread that sends the goals is the one that spins
that executor (``spin_until_future_complete``). Calling ``send_goal_async`` from one thread while
another thread spins the client's node can lose the goal response in this rclpy (9.x: the
response can be handled before the returned future is registered; the future then never
completes and the client waits forever). Its goal/cancel/result services keep up to 1000
responses (``ACTION_SERVICE_QOS``, as the server's): every client of an action receives every
client's responses and filters its own, so with rclpy's default (keep-last 10) a client among
several busy ones can miss its own response (measured: 1 in ~200 goals with 10 concurrent
clients in another process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

DEMO_KINDS = ("affordance", "spatial", "temporal", "none")
#: topics the demo records (outputs + the twin); --record-inputs adds the frames and ground truth
OUTPUT_TOPICS = {
    "/frs/targets": "frs_ros/msg/TargetArray",
    "/frs/target/mask": "sensor_msgs/msg/Image",
    "/frs/target/overlay": "sensor_msgs/msg/Image",
    "/frs/target/markers": "visualization_msgs/msg/MarkerArray",
    "/frs/twin": "frs_ros/msg/DigitalTwin",
    "/frs/twin/markers": "visualization_msgs/msg/MarkerArray",
    "/frs/twin/instance_ids": "sensor_msgs/msg/Image",
}
INPUT_TOPICS = {
    "/frs/frame/color": "sensor_msgs/msg/Image",
    "/frs/frame/depth": "sensor_msgs/msg/Image",
    "/frs/frame/camera_info": "sensor_msgs/msg/CameraInfo",
    "/frs/sim/instance_ids": "sensor_msgs/msg/Image",
    "/frs/sim/objects": "std_msgs/msg/String",
}


STUDENT = "models/smollm2_student"


def default_reasoner(root: Optional[Path] = None) -> tuple[dict, str]:
    """``(reasoner_node overrides, description)``: the shipped student (SmolLM2-135M + its LoRA
    adapter, the ROS defaults) if its adapter is there, else the oracle."""
    from frs_ros.wire.params import resolve_model_path

    path = resolve_model_path(STUDENT)
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        return ({"reasoner.backend": "hf", "reasoner.model": "smollm2-135m", "reasoner.adapter": path},
                f"SmolLM2-135M student ({path})")
    return {"reasoner.backend": "oracle"}, f"oracle teacher ({STUDENT} is not there)"


class Recorder:
    """Subscribes to topics as serialised bytes (no deserialisation) and writes them to an mcap bag."""

    def __init__(self, node, topics: dict[str, str], bag_path: Path) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from frs_ros.data.bags import BagWriter

        self.writer = BagWriter(bag_path, "mcap")
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.overlays: list[tuple[float, bytes]] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msgtype in topics.items():
            cls = _msg_class(msgtype)
            node.create_subscription(cls, topic, self._make_cb(topic, msgtype), qos, raw=True)

    def _make_cb(self, topic: str, msgtype: str):
        def cb(data: bytes) -> None:
            with self._lock:
                if self.writer is None:
                    return
                self.writer.write_raw(topic, msgtype, time.time_ns(), data)
                self.counts[topic] = self.counts.get(topic, 0) + 1
                if topic == "/frs/target/overlay":
                    self.overlays.append((time.monotonic(), bytes(data)))

        return cb

    def close(self) -> None:
        with self._lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None


class GoalClient:
    """A ReasonSeg ``ActionClient`` used only from the thread that calls its methods.

    The client node is on its own ``SingleThreadedExecutor``; every method sends and then spins
    that executor in the calling thread until the answer is there, so goal responses, feedback
    and results are handled in the sending thread (see the module docstring for why).
    """

    def __init__(self, context, action_name: str, node_name: str = "frs_demo_client") -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor

        from frs_ros.action import ReasonSeg
        from frs_ros.nodes.reasoner_node import ACTION_SERVICE_QOS as qos

        self.ReasonSeg = ReasonSeg
        self.node = rclpy.create_node(node_name, context=context)
        self.client = ActionClient(self.node, ReasonSeg, action_name, goal_service_qos_profile=qos,
                                   cancel_service_qos_profile=qos, result_service_qos_profile=qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def wait_for_server(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.client.server_is_ready():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return False

    def _spin_until(self, future, timeout_s: float, what: str):
        self.executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise RuntimeError(f"no {what} within {timeout_s:g} s")
        return future.result()

    def run(self, goal, timeout_s: float = 120.0, feedback_callback=None):
        """Send ``goal`` and wait for its end; returns the ``GetResult`` response (``.status``, ``.result``)."""
        handle = self._spin_until(self.client.send_goal_async(goal, feedback_callback=feedback_callback), 10.0,
                                  "goal response")
        if not handle.accepted:
            raise RuntimeError("the goal was not accepted")
        return self._spin_until(handle.get_result_async(), timeout_s, "result")

    def spin(self, seconds: float) -> None:
        """Handle this client's callbacks for ``seconds`` (e.g. late feedback)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.05, end - time.monotonic())))

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.client.destroy()
        self.node.destroy_node()


def _msg_class(msgtype: str):
    import importlib

    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def pick_queries(queries: list, kinds=DEMO_KINDS) -> list:
    """One query per demo kind (in order), where the episode has one."""
    out = []
    for kind in kinds:
        q = next((q for q in queries if q.kind == kind), None)
        if q is not None:
            out.append(q)
    return out


def run_demo(out_dir: Path, seed: int = 0, n_frames: int = 20, rate_hz: float = 10.0, width: int = 320, height: int = 240,
             reasoner: Optional[dict] = None, record_inputs: bool = False, timeout_s: float = 120.0) -> dict:
    """Run the demo; returns a summary dict (also printed)."""
    import rclpy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from frs_ros.bringup import build_graph
    from frs_ros.nodes import common
    from frs_ros.nodes.conversions import color_from_msg, mask_from_msg, stamp_to_ns

    t_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    bag_path = out_dir / "bag"
    if bag_path.exists():
        shutil.rmtree(bag_path)
    if reasoner is None:
        reasoner, which = default_reasoner()
    else:
        which = f"{reasoner.get('reasoner.backend')} ({reasoner.get('reasoner.model', '')})"
        if "reasoner.model" in reasoner and "reasoner.adapter" not in reasoner:
            # another model: the shipped student's adapter (the ROS default) does not fit it
            reasoner = {**reasoner, "reasoner.adapter": ""}
    print(f"[demo] reasoner: {which}")
    sim = {"seed": seed, "n_frames": n_frames, "rate_hz": rate_hz, "width": width, "height": height, "loop": False}
    graph = build_graph(overrides={"sim_camera_node": sim, "reasoner_node": reasoner})
    cam = graph.nodes["sim_camera_node"]
    if cam.sample is None:
        graph.shutdown()
        raise RuntimeError(f"the simulated camera failed: {cam.health.error}")
    print(f"[demo] graph up in {time.monotonic() - t_start:.1f} s; episode seed {seed}: {len(cam.sample.frames)} frames "
          f"{width}x{height}, events: {[(e['type'], e.get('frame', e.get('end'))) for e in cam.sample.events]}")
    from frs_ros.action import ReasonSeg

    # the recorder's subscriptions spin with the graph; the action client spins in this thread
    recorder_node = rclpy.create_node("frs_demo_recorder", context=graph.context)
    recorder = Recorder(recorder_node, dict(OUTPUT_TOPICS, **(INPUT_TOPICS if record_inputs else {})), bag_path)
    graph.executor.add_node(recorder_node)
    graph.start()
    client = GoalClient(graph.context, common.REASON_SEG)
    summary: dict[str, Any] = {"reasoner": which, "goals": []}
    try:
        if not client.wait_for_server(15.0):
            raise RuntimeError("the ReasonSeg action server did not come up")
        reasoner_node = graph.nodes["reasoner_node"]
        if reasoner_node.health.state != "ok":
            raise RuntimeError(f"the reasoner is in state {reasoner_node.health.state}: {reasoner_node.health.error}")
        # let the episode play to its end, so that its events (moved/added/removed) have happened
        last = len(cam.sample.frames) - 1
        if not _wait(lambda: cam.index >= last and graph.nodes["digital_twin_node"].twins > last, n_frames / rate_hz + 30):
            raise RuntimeError("the episode did not play through (is the twin node in error? see ~/status)")
        twin = graph.twin_buffer.latest()[1].twin
        print(f"[demo] twin after the episode: {len(twin.objects)} objects: "
              + ", ".join(f"#{o.track_id} {o.label}{'' if o.visible else ' (lost)'}" for o in twin.objects))
        queries = pick_queries(cam.sample.queries)
        missing = [k for k in DEMO_KINDS if k not in {q.kind for q in queries}]
        if missing:
            print(f"[demo] note: episode seed {seed} has no {missing} query; try --seed")
        for i, q in enumerate(queries):
            t_goal = time.monotonic()
            feedback: list = []
            try:
                r = client.run(ReasonSeg.Goal(query=q.text, keep_tracking=False), timeout_s,
                               feedback_callback=lambda fb: feedback.append(fb.feedback)).result
            except RuntimeError as exc:
                raise RuntimeError(f"{exc} for '{q.text}'") from exc
            wall = time.monotonic() - t_goal
            print(f"\n[demo] goal {i + 1} ({q.kind}): \"{q.text}\"")
            print(f"  status: {r.status}{(' — ' + r.error) if r.error else ''}; feedback messages: {len(feedback)}")
            print(f"  reasoning: {r.reasoning}")
            if r.status == "ok" and not r.targets:
                print("  answer: no target (empty mask)")
            for t in r.targets:
                c = t.centroid.point
                print(f"  target #{t.track_id} {t.label}: box {t.box.width}x{t.box.height}px at ({t.box.x_offset},{t.box.y_offset}), "
                      f"depth median {t.depth.median:.2f} m, centroid ({c.x:.2f}, {c.y:.2f}, {c.z:.2f}) m in {t.centroid.header.frame_id}")
            stages = ", ".join(f"{n} {v * 1000:.1f} ms" for n, v in zip(r.stage_names, r.stage_latencies_s))
            print(f"  timings: {stages}; total {r.total_latency_s * 1000:.1f} ms (client round trip {wall * 1000:.1f} ms); "
                  f"tokens: prompt {r.prompt_tokens} (cached {r.cached_tokens}), generated {r.generated_tokens}")
            iou = None
            if r.status == "ok":
                # the overlay and mask of this answer: the first ones published after the goal was sent
                _wait(lambda: any(t >= t_goal for t, _ in recorder.overlays), 3.0)
                ov = next((d for t, d in recorder.overlays if t >= t_goal), None)
                if ov is not None:
                    msg = deserialize_message(ov, Image)
                    rgb = color_from_msg(msg)
                    png = out_dir / f"{i + 1:02d}_{q.kind}.png"
                    _write_png(png, rgb)
                    print(f"  overlay: {png}")
                    # the frame this answer was given on, by the stamp the camera published it with
                    # (the shared StampStore keeps 64 frames: at 10 Hz a goal slower than ~6 s
                    # outlives its frame's entry there)
                    k = cam.frame_index_of(stamp_to_ns(msg.header.stamp))
                    gt_frame = cam.sample.frames[k].gt if k is not None else None
                    gt = gt_frame.union_mask(q.target_ids) if gt_frame is not None else None
                    if gt is None:
                        print("  IoU: not scored — the answer's frame is not one the simulated camera published")
                    if gt is not None and q.target_ids and not gt.any():
                        print("  IoU: not scored — the target is not visible in this frame (the answer is where it was last seen)")
                    elif gt is not None:
                        pred = np.zeros(gt.shape, bool)
                        for t in r.targets:
                            pred |= mask_from_msg(t.mask)
                        u = np.logical_or(pred, gt).sum()
                        iou = 1.0 if u == 0 else float(np.logical_and(pred, gt).sum() / u)
                        print(f"  IoU with the simulator's ground truth: {iou:.3f}")
            summary["goals"].append({"kind": q.kind, "query": q.text, "status": r.status, "targets": [t.track_id for t in r.targets],
                                     "iou": iou, "latency_s": r.total_latency_s})
    finally:
        time.sleep(0.3)  # the last messages reach the recorder
        recorder.close()
        client.close()
        graph.executor.remove_node(recorder_node)
        graph.shutdown()
        recorder_node.destroy_node()
    summary["bag"] = str(bag_path)
    summary["recorded"] = dict(recorder.counts)
    summary["wall_s"] = time.monotonic() - t_start
    print(f"\n[demo] bag: {bag_path} ({sum(recorder.counts.values())} messages on {len(recorder.counts)} topics)")
    print(f"[demo] done in {summary['wall_s']:.1f} s")
    return summary


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="frs_ros.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/demo", help="output directory (overlays, bag)")
    ap.add_argument("--seed", type=int, default=0, help="simulated episode seed")
    ap.add_argument("--frames", type=int, default=20, help="episode length [frames] (>= 8 for events)")
    ap.add_argument("--rate", type=float, default=10.0, help="camera rate [Hz]")
    ap.add_argument("--size", default="320x240", help="image size WxH")
    ap.add_argument("--reasoner", choices=("auto", "oracle", "hf"), default="auto",
                    help=f"auto: the shipped student if {STUDENT} exists, else the oracle")
    ap.add_argument("--model", default="", help="model for --reasoner hf (default: the shipped student)")
    ap.add_argument("--record-inputs", action="store_true", help="also record /frs/frame/* and /frs/sim/* (replayable by frs-bag-eval)")
    opts = ap.parse_args(argv)
    w, h = (int(x) for x in opts.size.lower().split("x"))
    reasoner = None
    if opts.reasoner == "oracle":
        reasoner = {"reasoner.backend": "oracle"}
    elif opts.reasoner == "hf":
        reasoner = (default_reasoner()[0] if not opts.model else
                    {"reasoner.backend": "hf", "reasoner.model": opts.model, "reasoner.adapter": ""})
    try:
        summary = run_demo(Path(opts.out), opts.seed, opts.frames, opts.rate, w, h, reasoner, opts.record_inputs)
    except RuntimeError as exc:
        print(f"[demo] failed: {exc}", file=sys.stderr)
        return 1
    bad = [g for g in summary["goals"] if g["status"] != "ok"]
    return 0 if summary["goals"] and not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
