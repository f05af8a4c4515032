"""Measure the twin on simulator episodes: track-id consistency, depth-stat exactness, text size.

    python -m frs_ros.twin.report --episodes 10 --frames 30
    python -m frs_ros.twin.report --jf --episodes 10 --frames 30   # per-track mask J/F by propagator

Evaluation code: it reads ``frame.gt`` to *score* the twin, never to build it (the twin is
built by whichever backends the config names).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from typing import Optional

import numpy as np

from frs_ros.twin.config import TwinConfig
from frs_ros.twin.depth import depth_stats
from frs_ros.twin.serialize import token_report
from frs_ros.twin.tracker import Tracker
from frs_ros.twin.types import DigitalTwin

MOVED_M = 0.10  # "moved" for the agreement score [m] (the sim calls >= 0.15 m a move)


def episode_metrics(frames, config: Optional[TwinConfig] = None) -> tuple[dict, list[DigitalTwin]]:
    """Run a fresh ``Tracker`` over ``frames`` (with ``gt``) and score it.

    consistency: fraction of tracked sim ids that map to exactly one track id for the whole
        episode (an object's majority sim id under each visible track mask), and fraction of
        track ids that map to exactly one sim id.
    depth_exact: fraction of (frame, visible object) pairs whose DepthStats equal (to 1e-9 m)
        ``depth_stats(frame.depth, gt.mask(sim_id), 'sensor')`` computed from GT masks + depth.
    """
    tracker = Tracker(config or TwinConfig())
    sim_to_tracks: dict[int, set[int]] = {}
    track_to_sims: dict[int, set[int]] = {}
    n_depth = n_exact = 0
    twins = []
    for f in frames:
        twin = tracker.update(f)
        twins.append(twin)
        imap = f.gt.instance_map
        for o in twin.objects:
            if not o.visible:
                continue
            m = o.mask.decode()
            ids, counts = np.unique(imap[m], return_counts=True)
            sid = int(ids[np.argmax(counts)])
            sim_to_tracks.setdefault(sid, set()).add(o.track_id)
            track_to_sims.setdefault(o.track_id, set()).add(sid)
            ref = depth_stats(f.depth, imap == sid, "sensor")
            n_depth += 1
            a, b = o.depth, ref
            same = a.missing_reason == b.missing_reason and all(
                (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-9
                for x, y in ((a.mean, b.mean), (a.std, b.std), (a.min, b.min), (a.max, b.max), (a.median, b.median),
                             (a.valid_fraction, b.valid_fraction))
            )
            n_exact += int(same)
    # motion: twin displacement (motion frame) vs the simulator's world displacement between the
    # first and last frame the track saw the object
    first_pos: dict[int, np.ndarray] = {}
    last_pos: dict[int, np.ndarray] = {}
    for f, twin in zip(frames, twins):
        for o in twin.objects:
            if o.visible and len(track_to_sims.get(o.track_id, ())) == 1:
                sid = next(iter(track_to_sims[o.track_id]))
                if sid in f.gt.objects:
                    first_pos.setdefault(o.track_id, np.asarray(f.gt.objects[sid].position_m, float))
                    last_pos[o.track_id] = np.asarray(f.gt.objects[sid].position_m, float)
    disp_err, moved_ok = [], []
    final = {o.track_id: o for o in twins[-1].objects} if twins else {}
    for tid in first_pos:
        o = final.get(tid)
        if o is None or not math.isfinite(o.displacement_m):
            continue
        gt_d = float(np.linalg.norm(last_pos[tid] - first_pos[tid]))
        disp_err.append(abs(o.displacement_m - gt_d))
        moved_ok.append((o.displacement_m > MOVED_M) == (gt_d > MOVED_M))
    sims_ok = sum(len(v) == 1 for v in sim_to_tracks.values())
    tracks_ok = sum(len(v) == 1 for v in track_to_sims.values())
    return {
        "sim_ids": len(sim_to_tracks),
        "sim_id_consistency": sims_ok / max(1, len(sim_to_tracks)),
        "track_id_purity": tracks_ok / max(1, len(track_to_sims)),
        "depth_pairs": n_depth,
        "depth_exact": n_exact / max(1, n_depth),
        "displacement_abs_err_m": float(np.mean(disp_err)) if disp_err else math.nan,
        "moved_agreement": float(np.mean(moved_ok)) if moved_ok else math.nan,
        "keyframes": tracker.stats["keyframes"],
        "frames": tracker.stats["frames"],
    }, twins


def track_jf(frames, twins: list[DigitalTwin], min_area_px: int = 30) -> dict:
    """J and F of the twin's per-track masks against the simulator's instance masks.

    Each track is given the sim id under most of its visible mask pixels over the episode; each
    sim id takes the one track with the most such pixels. Then for every (frame, sim object) with
    at least ``min_area_px`` visible GT pixels: J = IoU and F = boundary F (DAVIS, ``frs_ros.metrics``)
    of that track's mask in that frame (empty when the track is not visible or does not exist
    yet: a missed object scores 0). Returns means over those pairs and their count.
    """
    from frs_ros.metrics import f_boundary, j_region

    overlap: dict[tuple[int, int], int] = {}  # (track, sim) -> pixels
    decoded = []
    for f, twin in zip(frames, twins):
        masks = {o.track_id: o.mask.decode() for o in twin.objects if o.visible}
        decoded.append(masks)
        imap = f.gt.instance_map
        for tid, m in masks.items():
            ids, counts = np.unique(imap[m], return_counts=True)
            for i, c in zip(ids.tolist(), counts.tolist()):
                if i > 0:
                    overlap[(tid, i)] = overlap.get((tid, i), 0) + c
    best_sim: dict[int, tuple[int, int]] = {}
    for (tid, sid), c in overlap.items():
        if c > best_sim.get(tid, (0, 0))[1]:
            best_sim[tid] = (sid, c)
    track_of: dict[int, tuple[int, int]] = {}
    for tid, (sid, c) in best_sim.items():
        if c > track_of.get(sid, (0, 0))[1]:
            track_of[sid] = (tid, c)
    js, fs = [], []
    for f, masks in zip(frames, decoded):
        imap = f.gt.instance_map
        ids, counts = np.unique(imap[imap > 0], return_counts=True)
        for sid, c in zip(ids.tolist(), counts.tolist()):
            if c < min_area_px:
                continue
            g = imap == sid
            tid = track_of.get(sid, (None, 0))[0]
            p = masks.get(tid) if tid is not None else None
            if p is None:
                p = np.zeros_like(g)
            js.append(j_region(p, g))
            fs.append(f_boundary(p, g))
    return {"J": float(np.mean(js)) if js else math.nan, "F": float(np.mean(fs)) if fs else math.nan, "pairs": len(js)}


#: a video refresh's latency as a share of an automatic-mask keyframe's: SAM-2 video propagation of 4
#: tracks 22.1 s against SAM-2 automatic masks + OWLv2 labels 56.9 s (640x480, real size, random
#: weights, 1 torch thread: ``python bench/twin_rate.py --video-rows --sizes 640x480``)
VIDEO_REFRESH_COST = 22.1 / 56.9


def propagation_rows(fps: float, latencies_s: tuple[float, ...]) -> list[tuple[str, dict, int]]:
    """The compared configurations: (name, TwinConfig overrides, keyframe delay [frames], 0 = inline;
    a pair (segmentation, video refresh) delay for the ``keyframe_video`` rows)."""
    rows = [("(a) sim segmentation every frame", dict(propagator="segmenter", keyframe_interval=1), 0),
            # what flow costs beyond spacing: exact (sim id) propagation, objects found only at keyframes
            ("(a') sim keyframes every 10, exact sim-id propagation between", dict(propagator="segmenter",
                                                                                 keyframe_interval=10), 0)]
    for n in (5, 10, 30):
        rows.append((f"(b) sim keyframes every {n}, flow between", dict(propagator="flow", keyframe_interval=n), 0))
    for n in (5, 10, 30):
        rows.append((f"(c) sim keyframes every {n}, hold last mask", dict(propagator="hold", keyframe_interval=n), 0))
    for lat in latencies_s:
        d = max(1, int(math.ceil(lat * fps)))
        rows.append((f"(d) keyframes every 10, landing {lat:g} s late ({d} frames), flow", dict(
            propagator="flow", keyframe_interval=10, keyframes="background"), d))
    for lat in latencies_s:
        d, dv = max(1, int(math.ceil(lat * fps))), max(1, int(math.ceil(lat * fps * VIDEO_REFRESH_COST)))
        rows.append((f"(e) as (d) {lat:g} s, 2 of 3 keyframes video refreshes landing {dv} frames late "
                     f"(sim ids as the video model)", dict(propagator="flow", keyframe_interval=10,
                                                          keyframes="background", keyframe_video=2), (d, dv)))
    return rows


def _settings(items: list[str]) -> dict:
    """``["key=value", ...]`` -> TwinConfig overrides (true/false, numbers, else strings); a bad
    item or an unknown key raises ``SystemExit`` with the reason."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(TwinConfig)}
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY a TwinConfig field")
        low = raw.strip().lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        else:
            try:
                out[key] = int(raw) if re.fullmatch(r"-?\d+", raw.strip()) else float(raw)
            except ValueError:
                out[key] = raw
    return out


def run_jf(episodes: int, n_frames: int, split: str, width: int, height: int, latencies_s: tuple[float, ...],
           extra: Optional[dict] = None) -> list[dict]:
    """Every ``propagation_rows`` configuration on the same sim episodes; one dict per row
    (J, F in [0, 1], pairs, median per-frame ``Tracker.update`` wall time [ms]). ``extra``:
    ``TwinConfig`` values applied to every row (a row's own settings win)."""
    from frs_ros.sim import SimConfig, generate_episode
    from frs_ros.twin.keyframes import DelayedKeyframes

    sim_cfg = SimConfig(width=width, height=height)
    samples = [generate_episode(10_000 + s, split=split, n_frames=n_frames, config=sim_cfg) for s in range(episodes)]
    out = []
    for name, over, delay in propagation_rows(sim_cfg.fps, latencies_s):
        js, fs, pairs, ms, keys, found = [], [], 0, [], 0, 0
        for sample in samples:
            cfg = TwinConfig(**{**(extra or {}), **over})
            d, dv = delay if isinstance(delay, tuple) else (delay, None)
            runner = (lambda work, d=d, dv=dv: DelayedKeyframes(work, d, dv)) if d else None
            tracker = Tracker(cfg, keyframe_runner=runner)
            twins = []
            for f in sample.frames:
                t0 = time.perf_counter()
                twins.append(tracker.update(f))
                ms.append(1e3 * (time.perf_counter() - t0))
            tracker.close()
            keys += tracker.stats["keyframes"] + tracker.stats["video_refreshes"]  # every merged keyframe job
            found += tracker.stats["discovered"]
            r = track_jf(sample.frames, twins, cfg.min_mask_area_px)
            js.append(r["J"] * r["pairs"])
            fs.append(r["F"] * r["pairs"])
            pairs += r["pairs"]
        out.append({"config": name, "J": sum(js) / max(1, pairs), "F": sum(fs) / max(1, pairs), "pairs": pairs,
                    "update_ms_p50": float(np.median(ms)), "keyframes_per_episode": keys / max(1, len(samples)),
                    "discovered_per_episode": found / max(1, len(samples))})
    return out


def describe_accuracy(frames, twin: DigitalTwin) -> float:
    """Fraction of visible objects whose describe() colour equals the sim's colour word."""
    from frs_ros.reasoning.types import ToolCall
    from frs_ros.twin.tools import run_tool

    f = frames[-1]
    hits = n = 0
    for o in twin.objects:
        if not o.visible:
            continue
        ids, counts = np.unique(f.gt.instance_map[o.mask.decode()], return_counts=True)
        sim = f.gt.objects.get(int(ids[np.argmax(counts)]))
        if sim is None:
            continue
        run_tool(ToolCall("describe", (o.track_id,)), twin, f)
        n += 1
        hits += int(o.attributes.get("color") == sim.color)
    return hits / max(1, n)


def main(argv=None) -> int:
    from frs_ros.sim import SimConfig, generate_episode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--split", default="val")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--label-noise", type=float, default=0.0)
    ap.add_argument("--no-ego", action="store_true", help="assume a static camera (ablation)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="--jf: a TwinConfig value for every row, e.g. --set keyframe_events=true (repeatable)")
    ap.add_argument("--jf", action="store_true",
                    help="J/F of per-track masks vs sim instance masks: every-frame segmentation, keyframes + flow, "
                         "keyframes + held masks, late keyframes (a markdown table)")
    ap.add_argument("--latencies", default="0.1,0.33,0.67",
                    help="--jf: keyframe latencies to simulate [s], comma-separated (rounded up to frames)")
    args = ap.parse_args(argv)
    if args.jf:
        lats = tuple(float(x) for x in args.latencies.split(",") if x.strip())
        t0 = time.time()
        rows = run_jf(args.episodes, args.frames, args.split, args.width, args.height, lats, _settings(args.set))
        print("| configuration | J | F | J&F | keyframes / episode | discovered / episode | (frame, object) pairs | "
              "update p50, wall [ms] |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['config']} | {100 * r['J']:.1f} | {100 * r['F']:.1f} | {50 * (r['J'] + r['F']):.1f} | "
                  f"{r['keyframes_per_episode']:.1f} | {r['discovered_per_episode']:.1f} | {r['pairs']} | "
                  f"{r['update_ms_p50']:.1f} |")
        print(f"({args.episodes} {args.split} episodes x {args.frames} frames, {args.width}x{args.height}; "
              f"{time.time() - t0:.0f} s)")
        return 0
    cfg = TwinConfig(label_noise=args.label_noise, ego_motion=not args.no_ego)
    rows, all_twins, colour = [], [], []
    t0 = time.time()
    for seed in range(args.episodes):
        sample = generate_episode(seed, split=args.split, n_frames=args.frames,
                                  config=SimConfig(width=args.width, height=args.height))
        m, twins = episode_metrics(sample.frames, cfg)
        colour.append(describe_accuracy(sample.frames, twins[-1]))
        rows.append(m)
        all_twins.extend(twins)
    tok = token_report(all_twins)
    out = {
        "episodes": args.episodes,
        "frames_per_episode": args.frames,
        "sim_id_consistency_mean": float(np.mean([r["sim_id_consistency"] for r in rows])),
        "track_id_purity_mean": float(np.mean([r["track_id_purity"] for r in rows])),
        "depth_exact_mean": float(np.mean([r["depth_exact"] for r in rows])),
        "depth_pairs": int(sum(r["depth_pairs"] for r in rows)),
        "displacement_abs_err_m_mean": float(np.nanmean([r["displacement_abs_err_m"] for r in rows])),
        "moved_agreement_mean": float(np.nanmean([r["moved_agreement"] for r in rows])),
        "describe_colour_accuracy": float(np.mean(colour)),
        "tokens": tok,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
