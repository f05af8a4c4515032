"""Two-tier twin timing at real size (random weights): the per-frame path while SAM-2 + OWLv2
keyframes run in the background, and query latency with and without a keyframe in flight.

    python bench/twin_rate.py --sizes 320x240,640x480 --seconds 20 --md bench/results/twin_rate.md
    python bench/twin_rate.py --depth-only --sizes 320x240,640x480 --seconds 20   # colour-only camera
    python bench/twin_rate.py --video-rows --sizes 640x480   # keyframe vs SAM-2 video refresh, one each

A simulated camera produces sim val frames at ``--fps``; the twin loop takes the newest frame
when it is free (latest frame wins, as digital_twin_node does), so "twin age at publish" is
capture -> twin ready, queueing included. Keyframes: SAM-2 hiera-tiny automatic masks +
OWLv2-base labels, real-size random weights (``bench/models.py``), on a ``BackgroundKeyframes``
worker thread; the per-frame path is the ``flow`` propagator + depth statistics. Query: the shipped
SmolLM2 student through ``ReasonSegEngine`` (or ``--reasoner oracle``) answering on the freshest
twin. Speed rows for SAM-2 at a smaller input / fewer grid points are marked untested for quality
(random weights cannot tell). Benchmarks are not tests; numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pct(xs, q) -> float:
    return float(np.percentile(xs, q)) if len(xs) else math.nan


def sam2_variant(base: Path, root: Path, input_px: int) -> Path:
    """A copy of the saved SAM-2 whose model input side is ``input_px`` (weights reused: the
    image-size-dependent buffers are re-derived from the config)."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    out = root / f"{base.name}-in{input_px}"
    if (out / ".complete").exists():
        return out
    d = json.loads((base / "config.json").read_text())
    s = int(input_px)
    d["image_size"] = s
    d["vision_config"]["backbone_config"]["image_size"] = [s, s]
    d["vision_config"]["backbone_feature_sizes"] = [[s // 4] * 2, [s // 8] * 2, [s // 16] * 2]
    d["prompt_encoder_config"]["image_size"] = s
    d["memory_attention_rope_feat_sizes"] = [s // 16, s // 16]
    for k in ("transformers_version", "architectures", "dtype", "model_type"):
        d.pop(k, None)
    torch.manual_seed(0)
    m = Sam2VideoModel(Sam2VideoConfig(**d))
    m.save_pretrained(out)
    pre = json.loads((base / "preprocessor_config.json").read_text())
    pre["size"] = {"height": s, "width": s}
    (out / "preprocessor_config.json").write_text(json.dumps(pre))
    (out / ".complete").write_text("1")
    return out


class Camera:
    """Frames of a sim episode, stamped with their capture time, at ``fps``, newest wins."""

    def __init__(self, frames, fps: float) -> None:
        self.frames, self.period = frames, 1.0 / fps
        self.t0 = time.monotonic()

    def newest(self, after: int) -> tuple[int, object, float]:
        """(index, frame, capture time) of the newest frame with index > ``after`` (waits for it)."""
        while True:
            k = int((time.monotonic() - self.t0) / self.period)
            if k > after:
                # a new Frame per capture (arrays shared): the tracker keeps keyframe frames, so
                # re-stamping a replayed frame in place would change a keyframe's stamp under it
                f = dataclasses.replace(self.frames[k % len(self.frames)], stamp_ns=int(k * self.period * 1e9), seq=k)
                return k, f, self.t0 + k * self.period
            time.sleep(max(0.0, self.t0 + (after + 1) * self.period - time.monotonic()))


def run_twin(frames, backends, cfg, seconds: float, fps: float, engine=None, queries=(), query_twin=None,
             drain_s: float = 0.0) -> dict:
    """Feed the camera for ``seconds``; per-frame update times, twin ages, keyframe latencies; with
    an engine, one query every ~2 s, tagged with/without a keyframe in flight. ``query_twin``
    (twin, frame): ask on this fixed twin instead of the freshest one, so that query cost depends
    only on what else runs (a twin with no landed keyframe yet is empty, and an empty prompt is cheaper).
    drain_s: after ``seconds``, keep the camera running up to this long until the keyframe in flight
    lands (its latency is measured, and no orphaned model thread slows the next phase down)."""
    from frs_ros.twin.tracker import Tracker

    tr = Tracker(cfg, backends=backends)
    cam = Camera(frames, fps)
    upd, age, upd_kf, latencies, lags, depth_lag = [], [], [], [], [], []
    q_with, q_without = [], []
    stop = threading.Event()
    latest = {}

    def ask():
        i = 0
        while not stop.is_set():
            if stop.wait(2.0):
                break
            twin, frame = query_twin if query_twin is not None else tr.snapshot()
            if twin is None or not queries:
                continue
            in_flight = tr.keyframe_status()["in_flight"]
            t = time.perf_counter()
            engine.answer(queries[i % len(queries)], twin, frame)
            (q_with if in_flight else q_without).append(time.perf_counter() - t)
            i += 1

    asker = threading.Thread(target=ask, daemon=True) if engine is not None else None
    if asker:
        asker.start()
    k = -1
    t_end = time.monotonic() + seconds
    n = 0
    t_start = time.monotonic()
    last_key = 0
    while time.monotonic() < t_end or (time.monotonic() < t_end + drain_s and tr.keyframe_status()["in_flight"]):
        if time.monotonic() >= t_end:
            tr.hold_keyframes()  # draining: let the one in flight land, start no other
        k, f, cap = cam.newest(k)
        in_flight = tr.keyframe_status()["in_flight"]
        t = time.perf_counter()
        tr.update(f)
        dt = time.perf_counter() - t
        (upd_kf if in_flight else upd).append(dt)
        age.append(time.monotonic() - cap)
        n += 1
        st = tr.keyframe_status()
        if st.get("depth_ns"):  # depth_runs: background: how old the depth under this twin is
            depth_lag.append(1e3 * (f.stamp_ns - st["depth_ns"]) / 1e9)
        if st["keyframe_ns"] != last_key and not math.isnan(st["latency_s"]):
            last_key = st["keyframe_ns"]
            latencies.append(st["latency_s"])
            lags.append(st["lag_frames"])
    wall = time.monotonic() - t_start
    stop.set()
    if asker:
        asker.join(timeout=120)
    latest.update(tr.keyframe_status())
    tr.close()
    return {
        "n": n, "fps": n / wall, "update_ms_p50": 1e3 * pct(upd + upd_kf, 50), "update_ms_p95": 1e3 * pct(upd + upd_kf, 95),
        "update_in_flight_n": len(upd_kf), "age_ms_p50": 1e3 * pct(age, 50), "age_ms_p95": 1e3 * pct(age, 95),
        "keyframe_latency_s": latencies, "keyframe_lag_frames": lags, "in_flight_s_at_end": latest["in_flight_s"],
        "query_s_with": q_with, "query_s_without": q_without, "keyframes": tr.stats["keyframes"],
        "submitted": tr.stats["keyframes_submitted"], "depth_calls": tr.stats["depth_calls"],
        "depth_lag_ms_p50": pct(depth_lag, 50), "depth_lag_ms_p95": pct(depth_lag, 95),
        "depth_frames": len(depth_lag),
    }


def cheap_path_cpu(frames, propagator: str = "flow", **over) -> dict:
    """CPU time [ms] of ``Tracker.update`` on the per-frame path alone (sim keyframe on frame 0
    only, then ``propagator``; no background thread, so the process CPU time is this path's):
    robust to a loaded machine, unlike wall time. Frame 0 (the keyframe) is left out. ``over``:
    other ``TwinConfig`` values. ``objects``: tracks at the end (``discover`` adds the objects
    that came into view, which no keyframe confirms here)."""
    from frs_ros.twin.config import TwinConfig
    from frs_ros.twin.tracker import Tracker

    tr = Tracker(TwinConfig(propagator=propagator, keyframe_interval=10_000, coverage_drop=1e-6, **over))
    cpu, wall = [], []
    for i, f in enumerate(frames):
        c, w = time.process_time(), time.perf_counter()
        tr.update(f)
        if i > 0:
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
    objs = len(tr.latest().objects)
    return {"n": len(cpu), "cpu_ms_p50": 1e3 * pct(cpu, 50), "cpu_ms_p95": 1e3 * pct(cpu, 95),
            "wall_ms_p50": 1e3 * pct(wall, 50), "objects": objs, "fps_cpu_bound": 1.0 / max(1e-9, pct(cpu, 50))}


def time_video_refresh(backends, frames, n_tracks: int = 4) -> dict:
    """Wall time [s] of the worker's video refresh (``keyframe_video``) in this thread: seeding the
    segmenter's video session with ``n_tracks`` masks (the sim ground truth's largest objects of
    ``frames[0]``, standing in for the merged tracks) plus propagating them to ``frames[1]``, then
    one more propagation (``frames[2]``: a later refresh carries the session on)."""
    imap = frames[0].gt.instance_map  # the bench builds the seed from ground truth; the tracker never does
    ids, counts = np.unique(imap[imap > 0], return_counts=True)
    seed = {int(i): imap == i for i in ids[np.argsort(-counts)][:n_tracks]}
    seg = backends.segmenter
    t = time.perf_counter()
    seg.set_tracks(frames[0], seed)
    seg.propagate(frames[1])
    first = time.perf_counter() - t
    t = time.perf_counter()
    seg.propagate(frames[2])
    return {"seed_and_propagate_s": first, "propagate_s": time.perf_counter() - t, "tracks": len(seed)}


def time_keyframe(backends, frame, repeats: int = 1) -> float:
    """Median wall time [s] of one keyframe (segment + label) in this thread, nothing else running."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        masks = backends.segmenter.segment(frame)
        if backends.labeler is not None and masks:
            backends.labeler.label(frame, masks)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="320x240,640x480")
    ap.add_argument("--seconds", type=float, default=20.0, help="camera time per size [s]")
    ap.add_argument("--fps", type=float, default=30.0, help="camera frame rate [Hz]")
    ap.add_argument("--model-dir", default="/tmp/frs_bench_models")
    ap.add_argument("--quick", action="store_true", help="miniature models (smoke run of this script)")
    ap.add_argument("--reasoner", default="none", help="none | oracle | student (the shipped SmolLM2 student)")
    ap.add_argument("--sam2-speed-rows", default="512:8,1024:8",
                    help="SAM-2 speed rows 'input_px:points_per_side,...' (untested for mask quality)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the keyframe models")
    ap.add_argument("--drain", type=float, default=300.0,
                    help="after each keyframe phase, run on up to this long until the keyframe in flight lands [s]")
    ap.add_argument("--rounds", type=int, default=1, help="A/B rounds per size (A: no keyframe thread, B: keyframes)")
    ap.add_argument("--cheap-only", action="store_true",
                    help="only the per-frame path's CPU time per update (sim keyframe once, then flow), all sizes")
    ap.add_argument("--video-rows", action="store_true",
                    help="only the keyframe worker's jobs at real size, in this thread: one automatic-mask keyframe "
                         "(SAM-2 masks + OWLv2 labels) against a video refresh (keyframe_video: SAM-2 video propagation "
                         "of 4 tracks, seeded, then carried on), at each size")
    ap.add_argument("--depth-only", action="store_true",
                    help="only depth from colour: a colour-only camera, DepthAnything V2 (real size, random weights) "
                         "inline in update vs on the background depth worker (depth_runs), sim keyframes, flow")
    ap.add_argument("--json", default="")
    ap.add_argument("--md", default="")
    a = ap.parse_args(argv)

    import torch

    from models import save_vision_model

    from frs_ros.sim import SimConfig, generate_episode
    from frs_ros.twin.backends import build_twin_backends
    from frs_ros.twin.config import TwinConfig

    if a.cheap_only:
        from frs_ros.sim import SimConfig, generate_episode

        print("| size | propagator | updates | CPU per update p50 / p95 [ms] | wall p50 [ms] | objects | FPS if CPU-bound |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for size in [x for x in a.sizes.split(",") if x]:
            w, h = (int(x) for x in size.split("x"))
            frames = generate_episode(10_000, split="val", n_frames=30, config=SimConfig(width=w, height=h)).frames
            for name, prop, over in (("flow", "flow", {}), ("flow, discover off", "flow", {"discover": False}),
                                     ("hold", "hold", {})):
                r = cheap_path_cpu(frames, prop, **over)
                print(f"| {size} | {name} | {r['n']} | {r['cpu_ms_p50']:.1f} / {r['cpu_ms_p95']:.1f} | "
                      f"{r['wall_ms_p50']:.1f} | {r['objects']} | {r['fps_cpu_bound']:.0f} |", flush=True)
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        return 0
    torch.set_num_threads(a.threads)
    root = Path(a.model_dir)
    if a.depth_only:
        return depth_rows(a, root)
    if a.video_rows:
        return video_rows(a, root)
    paths = {k: save_vision_model(k, root, quick=a.quick)[0] for k in ("sam2", "owlv2")}
    base = dict(segmenter="sam2", labeler="owlv2", sam2_model=str(paths["sam2"]), owlv2_model=str(paths["owlv2"]),
                propagator="flow", keyframes="background", num_threads=a.threads, keyframe_interval=10)
    engine, queries = None, ()
    if a.reasoner != "none":
        from frs_ros.reasoning.api import ReasonSegEngine
        from frs_ros.reasoning.config import ReasonerConfig

        if a.reasoner == "oracle":
            rc = ReasonerConfig(backend="oracle")
        else:  # the shipped default: config/frs.yaml's reasoner section (lean-int8 SmolLM2 student)
            from frs_ros.wire.params import ReasonerParams, load_params_file, resolve_reasoner_paths, resolve_values

            rv = load_params_file(str(ROOT / "config" / "frs.yaml"))["reasoner_node"]
            rc = resolve_reasoner_paths(ReasonerParams.from_values(resolve_values("reasoner_node", rv)).reasoner)
        engine = ReasonSegEngine(rc)
        queries = ("the object nearest to the camera", "the leftmost object", "the biggest object")
    out = {"machine": {"cpus": os.cpu_count(), "load1": os.getloadavg()[0]}, "sizes": {}, "speed_rows": [], "ab": []}
    for size in [x for x in a.sizes.split(",") if x]:
        w, h = (int(x) for x in size.split("x"))
        frames = generate_episode(10_000, split="val", n_frames=30, config=SimConfig(width=w, height=h)).frames
        qt = None
        if engine is not None:
            from frs_ros.twin.tracker import Tracker

            t0 = Tracker(TwinConfig())
            qt = (t0.update(frames[0]), frames[0])  # the scene's exact twin (sim backends), asked in every phase
        cfg = TwinConfig(**base)
        be = build_twin_backends(cfg)
        # A/B rounds: (A) the same per-frame path with no keyframe thread (sim keyframe on frame 0
        # only), (B) real-size SAM-2 + OWLv2 keyframes in the background; queries on the same twin
        for rnd in range(a.rounds):
            for phase in ("A", "B"):
                if phase == "A":
                    pc = TwinConfig(propagator="flow", keyframe_interval=10_000, coverage_drop=1e-6)
                    r = run_twin(frames, build_twin_backends(pc), pc, a.seconds, a.fps, engine, queries, qt)
                else:
                    print(f"[{size}] round {rnd}: {a.seconds:.0f} s of camera time, keyframes in the background", flush=True)
                    r = run_twin(frames, be, cfg, a.seconds, a.fps, engine, queries, qt, drain_s=a.drain)
                r.update(size=size, phase=phase, round=rnd, load1=os.getloadavg()[0])
                out["ab"].append(r)
                print(json.dumps(r), flush=True)
                if phase == "B" and rnd == 0:
                    out["sizes"][size] = r
        del be
    f = generate_episode(10_000, split="val", n_frames=2, config=SimConfig(width=640, height=480)).frames[0]
    for row in a.sam2_speed_rows.split(","):
        if not row or a.quick:
            continue
        px, pps = (int(x) for x in row.split(":"))
        p = sam2_variant(Path(paths["sam2"]), root, px) if px != 1024 else Path(paths["sam2"])
        cfg = TwinConfig(**dict(base, sam2_model=str(p), points_per_side=pps))
        be = build_twin_backends(cfg)
        s = time_keyframe(be, f)
        out["speed_rows"].append({"input_px": px, "points_per_side": pps, "keyframe_s": s, "load1": os.getloadavg()[0]})
        print(json.dumps(out["speed_rows"][-1]), flush=True)
        del be
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    md = table(out, a)
    print(md)
    if a.md:
        Path(a.md).write_text(md)
    return 0


def video_rows(a, root: Path) -> int:
    """``--video-rows``: what a background keyframe job costs at real size (random weights), by kind."""
    from models import save_vision_model

    from frs_ros.sim import SimConfig, generate_episode
    from frs_ros.twin.backends import build_twin_backends
    from frs_ros.twin.config import TwinConfig

    paths = {k: save_vision_model(k, root, quick=a.quick)[0] for k in ("sam2", "owlv2")}
    cfg = TwinConfig(segmenter="sam2", labeler="owlv2", sam2_model=str(paths["sam2"]), owlv2_model=str(paths["owlv2"]),
                     propagator="flow", keyframes="background", keyframe_video=2, num_threads=a.threads)
    be = build_twin_backends(cfg)
    print("| size | automatic-mask keyframe (SAM-2 masks + OWLv2 labels) [s] | video refresh, seeded (4 tracks) [s] | "
          "video refresh, carried on [s] |")
    print("| --- | --- | --- | --- |")
    for size in [x for x in a.sizes.split(",") if x]:
        w, h = (int(x) for x in size.split("x"))
        frames = generate_episode(10_000, split="val", n_frames=3, config=SimConfig(width=w, height=h)).frames
        k = time_keyframe(be, frames[0])
        r = time_video_refresh(be, frames)
        print(f"| {size} | {k:.1f} | {r['seed_and_propagate_s']:.1f} | {r['propagate_s']:.1f} |", flush=True)
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; torch threads {a.threads}; "
          f"points_per_side {cfg.points_per_side})")
    return 0


def depth_rows(a, root: Path) -> int:
    """``--depth-only``: the per-frame path of a colour-only camera with DepthAnything V2 inline in
    ``update`` and on the background depth worker, each for ``--seconds`` of camera time per size."""
    from models import save_vision_model

    from frs_ros.sim import SimConfig, generate_episode
    from frs_ros.twin.backends import build_twin_backends
    from frs_ros.twin.config import TwinConfig

    dpath = save_vision_model("depth", root, quick=a.quick)[0]
    print("| size | depth_runs | twins | tracking FPS | update p50 / p95 [ms] | twin age p50 / p95 [ms] | "
          "depth estimates | depth lag behind the twin p50 / p95 [ms] |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in [x for x in a.sizes.split(",") if x]:
        w, h = (int(x) for x in size.split("x"))
        frames = [dataclasses.replace(f, depth=None) for f in  # a colour-only camera
                  generate_episode(10_000, split="val", n_frames=30, config=SimConfig(width=w, height=h)).frames]
        for runs in ("inline", "background"):
            cfg = TwinConfig(propagator="flow", depth="depth_anything_v2", depth_model=str(dpath), depth_runs=runs,
                             num_threads=a.threads)
            r = run_twin(frames, build_twin_backends(cfg), cfg, a.seconds, a.fps)
            lag = (f"{r['depth_lag_ms_p50']:.0f} / {r['depth_lag_ms_p95']:.0f}" if r["depth_frames"]
                   else "0 (each frame's own)")
            print(f"| {size} | {runs} | {r['n']} | {r['fps']:.1f} | {r['update_ms_p50']:.1f} / {r['update_ms_p95']:.1f} | "
                  f"{r['age_ms_p50']:.0f} / {r['age_ms_p95']:.0f} | {r['depth_calls']} | {lag} |", flush=True)
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; torch threads {a.threads})")
    return 0


def table(out: dict, a) -> str:
    lines = ["| size | twins | tracking FPS | update p50 / p95 [ms] | twin age p50 / p95 [ms] | keyframe latency [s] "
             "(lag [frames]) | query with / without keyframe in flight [s] |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for size, r in out["sizes"].items():
        kl = ", ".join(f"{x:.1f} ({n})" for x, n in zip(r["keyframe_latency_s"], r["keyframe_lag_frames"])) or \
            f"none landed (one in flight for {r['in_flight_s_at_end']:.0f} s)"
        qw = f"{np.median(r['query_s_with']):.2f} (n={len(r['query_s_with'])})" if r["query_s_with"] else "-"
        qo = f"{np.median(r['query_s_without']):.2f} (n={len(r['query_s_without'])})" if r["query_s_without"] else "-"
        lines.append(f"| {size} | {r['n']} | {r['fps']:.1f} | {r['update_ms_p50']:.1f} / {r['update_ms_p95']:.1f} | "
                     f"{r['age_ms_p50']:.1f} / {r['age_ms_p95']:.1f} | {kl} | {qw} / {qo} |")
    if out["ab"]:
        lines += ["", "| size | round | phase | tracking FPS | update p50 / p95 [ms] | age p95 [ms] | query p50 [s] (n) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in out["ab"]:
            qs = r["query_s_with"] + r["query_s_without"]
            q = f"{np.median(qs):.2f} ({len(qs)})" if qs else "-"
            what = "no keyframe thread" if r["phase"] == "A" else "SAM-2 + OWLv2 keyframe in flight"
            lines.append(f"| {r['size']} | {r['round']} | {what} | {r['fps']:.1f} | {r['update_ms_p50']:.1f} / "
                         f"{r['update_ms_p95']:.1f} | {r['age_ms_p95']:.1f} | {q} |")
    if out["speed_rows"]:
        lines += ["", "| SAM-2 input [px] | points per side | keyframe (masks + OWLv2 labels) [s] | mask quality |",
                  "| --- | --- | --- | --- |"]
        for r in out["speed_rows"]:
            lines.append(f"| {r['input_px']} | {r['points_per_side']} | {r['keyframe_s']:.1f} | untested (random weights) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    # a keyframe may still be computing on the worker thread: leave without tearing torch down under it
    os._exit(rc)
