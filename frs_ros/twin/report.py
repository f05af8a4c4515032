"""Measure the twin on simulator episodes: track-id consistency, depth-stat exactness, text size.

    python -m frs_ros.twin.report --episodes 10 --frames 30

Evaluation code: it reads ``frame.gt`` to *score* the twin, never to build it (the twin is
built by whichever backends the config names).
"""

from __future__ import annotations

import argparse
import json
import math
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
    args = ap.parse_args(argv)
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
