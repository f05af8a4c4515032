"""``frs-sim``: generate simulated datasets, print their statistics, draw example sheets.

    frs-sim generate --kind image --n 500 --seed 0 --split test --out data/sim_img
    frs-sim generate --kind video --n 50 --seed 0 --split val --out data/sim_vid
    frs-sim stats data/sim_img
    frs-sim visualise data/sim_img --out docs/img/sim_examples.png --n 8
    frs-sim bench --n 60

Images are written in the ReasonSeg layout (``frs_ros.data.write_reasonseg``: ``<out>/<split>/``)
and videos in the ReVOS layout (``frs_ros.data.write_revos``); both keep depth (16-bit mm PNG),
intrinsics and the structured query (kind, difficulty, template, spec, target ids) in their
``frs_ros`` extension. A sidecar ``<out>/sim_index.jsonl`` (one line per sample: seed, split,
scene kind, events, per-object ground truth at the query frame, queries) carries what the
benchmark formats have no place for; ``stats`` reads it.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np
from tqdm import tqdm

from frs_ros.sim.generate import SimSample, generate_episode, generate_image
from frs_ros.sim.ontology import SPLITS, held_out_categories
from frs_ros.sim.queries import held_out_template_ids
from frs_ros.sim.world import SimConfig

INDEX_NAME = "sim_index.jsonl"
MANIFEST_NAME = "sim_manifest.json"
# ReVOS names its evaluation split 'valid'.
_REVOS_SPLIT = {"train": "train", "val": "valid", "test": "test"}


class SimDatasetError(RuntimeError):
    """A directory is not a dataset written by ``frs-sim generate``."""


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def index_record(sample: SimSample, name: str) -> dict:
    """The sidecar line of one sample (JSON-serialisable)."""
    n = len(sample.frames)
    query_frames = sorted({q.frame_index % n for q in sample.queries}) or [n - 1]
    objects = {}
    for f in query_frames:
        gt = sample.frames[f].gt
        objects[str(f)] = [
            {
                "instance_id": o.instance_id,
                "category": o.category,
                "color": o.color,
                "material": o.material,
                "size_m": round(o.size_m, 4),
                "visible_px": o.visible_px,
                "position_m": [round(float(v), 4) for v in o.position_m],
                "held_out": bool(o.extras.get("held_out", False)),
                "role": o.extras.get("role", "object"),
            }
            for o in gt.objects.values()
        ]
    queries = []
    for q in sample.queries:
        gt = sample.frames[q.frame_index % n].gt
        queries.append(
            {
                "text": q.text,
                "kind": q.kind,
                "difficulty": q.difficulty,
                "is_sentence": q.is_sentence,
                "template_id": q.template_id,
                "target_ids": q.target_ids,
                "frame_index": q.frame_index,
                "target_px": int(gt.union_mask(q.target_ids).sum()),
                "spec": _jsonable(q.spec),
            }
        )
    return {
        "name": name,
        "seed": sample.seed,
        "split": sample.split,
        "n_frames": n,
        "scene_kind": sample.scene_kind,
        "events": _jsonable(sample.events),
        "objects": objects,
        "queries": queries,
    }


def cmd_generate(args: argparse.Namespace) -> int:
    from frs_ros.data import sim_episode_to_sample, sim_image_to_sample, write_reasonseg, write_revos
    from frs_ros.data.sim_export import default_name

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = SimConfig(base_seed=args.base_seed)
    index_path = out / INDEX_NAME
    seeds = range(args.seed, args.seed + args.n)
    t0 = time.perf_counter()
    stats = {"frames": 0, "queries": 0}

    with open(index_path, "w") as index:

        def stream(pbar: tqdm) -> Iterator:
            for s in seeds:
                if args.kind == "image":
                    sample = generate_image(s, args.split, config)
                    name = default_name(sample, "sim")
                    converted = sim_image_to_sample(sample, name)
                else:
                    sample = generate_episode(s, args.split, args.n_frames, config)
                    name = default_name(sample, "simvid")
                    converted = sim_episode_to_sample(sample, name)
                stats["frames"] += len(sample.frames)
                stats["queries"] += len(sample.queries)
                index.write(json.dumps(index_record(sample, name)) + "\n")
                pbar.update(1)
                pbar.set_postfix(queries=stats["queries"])
                yield converted

        with tqdm(total=args.n, desc=f"frs-sim {args.kind} {args.split}", unit="sample") as pbar:
            if args.kind == "image":
                write_reasonseg(out, stream(pbar), split=args.split, image_ext=args.image_ext)
                data_path = str(out / args.split)
            else:
                data_path = str(write_revos(out, stream(pbar), split=_REVOS_SPLIT[args.split], image_ext=args.image_ext))
    elapsed = time.perf_counter() - t0
    manifest = {
        "kind": args.kind,
        "split": args.split,
        "seeds": [args.seed, args.seed + args.n - 1],
        "n_frames": args.n_frames if args.kind == "video" else 1,
        "config": _jsonable(SimConfig(base_seed=args.base_seed).__dict__ | {"sensor": config.sensor.__dict__}),
        "data": data_path,
        "index": INDEX_NAME,
        "format": "reasonseg" if args.kind == "image" else "revos",
        "revos_split": _REVOS_SPLIT[args.split] if args.kind == "video" else None,
        "samples": args.n,
        "frames": stats["frames"],
        "queries": stats["queries"],
        "seconds": round(elapsed, 2),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    print(
        f"wrote {args.n} {args.kind} samples ({stats['frames']} frames, {stats['queries']} queries) "
        f"to {out} in {elapsed:.1f} s ({stats['frames'] / max(elapsed, 1e-9):.1f} frames/s incl. writing)"
    )
    return 0


def read_index(root: Path) -> list[dict]:
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise SimDatasetError(f"{path} not found; is {root} a directory written by 'frs-sim generate'?")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def dataset_stats(records: list[dict]) -> dict:
    """Counts per kind / difficulty / template / category etc. from sidecar records."""
    held_cats = set(held_out_categories())
    held_tpl = held_out_template_ids()
    kinds, diffs, tpls, cats, scene_kinds, events = (collections.Counter() for _ in range(6))
    n_obj, n_vis, target_px = [], [], []
    n_q = n_none = n_sentence = n_held_tpl = n_held_cat_q = 0
    for r in records:
        scene_kinds[r["scene_kind"]] += 1
        for ev in r["events"]:
            events[ev["type"]] += 1
        frame_objs = next(iter(r["objects"].values()))
        objs = [o for o in frame_objs if o.get("role", "object") == "object"]
        n_obj.append(len(objs))
        n_vis.append(sum(o["visible_px"] > 0 for o in objs))
        for o in objs:
            cats[o["category"]] += 1
        for q in r["queries"]:
            n_q += 1
            kinds[q["kind"]] += 1
            diffs[q["difficulty"]] += 1
            tpls[q["template_id"]] += 1
            n_none += not q["target_ids"]
            n_sentence += q["is_sentence"]
            n_held_tpl += q["template_id"] in held_tpl
            n_held_cat_q += q["spec"].get("category") in held_cats
            if q["target_ids"]:
                target_px.append(q["target_px"])
    return {
        "samples": len(records),
        "frames": sum(r["n_frames"] for r in records),
        "queries": n_q,
        "queries_per_sample": n_q / max(len(records), 1),
        "mean_objects": float(np.mean(n_obj)) if n_obj else 0.0,
        "mean_visible_objects": float(np.mean(n_vis)) if n_vis else 0.0,
        "no_target_fraction": n_none / max(n_q, 1),
        "sentence_fraction": n_sentence / max(n_q, 1),
        "held_out_template_queries": n_held_tpl,
        "held_out_category_queries": n_held_cat_q,
        "held_out_category_instances": sum(v for k, v in cats.items() if k in held_cats),
        "median_target_px": float(np.median(target_px)) if target_px else 0.0,
        "scene_kinds": dict(scene_kinds),
        "events": dict(events),
        "kinds": dict(sorted(kinds.items())),
        "difficulty": dict(sorted(diffs.items())),
        "templates": dict(sorted(tpls.items())),
        "categories": dict(cats.most_common()),
    }


def cmd_stats(args: argparse.Namespace) -> int:
    st = dataset_stats(read_index(Path(args.dir)))
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    for k, v in st.items():
        if isinstance(v, dict):
            print(f"{k} ({len(v)}):")
            for kk, vv in v.items():
                print(f"  {kk:<40} {vv}")
        elif isinstance(v, float):
            print(f"{k:<30} {v:.3f}")
        else:
            print(f"{k:<30} {v}")
    return 0


# ----------------------------------------------------------------------------------------
# Visualisation
# ----------------------------------------------------------------------------------------
_TINT = np.array([255, 40, 200], dtype=np.float32)


def _tint(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """GT mask tinted magenta and outlined in yellow on a copy of ``rgb``."""
    img = rgb.astype(np.float32)
    img[mask] = 0.45 * img[mask] + 0.55 * _TINT
    img = img.astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, (255, 255, 0), 1)
    return img


def draw_query_tile(rgb: np.ndarray, mask: Optional[np.ndarray], title: str, text: str, scale: int = 2) -> np.ndarray:
    """RGB tile: image with the GT mask tinted (``mask=None``: already drawn), text below.

    Single images are upscaled by ``scale``; wide film strips are kept at their size."""
    if mask is not None:
        big = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        m = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        img = _tint(big, m.astype(bool))
    else:
        img = rgb
    w = img.shape[1]
    head = textwrap.wrap(title, width=max(20, w // 7))
    body = textwrap.wrap(text, width=max(20, w // 8))
    lines = [(t, (0, 0, 160), 0.38) for t in head] + [(t, (0, 0, 0), 0.45) for t in body]
    strip = np.full((16 * len(lines) + 8, w, 3), 255, dtype=np.uint8)
    for i, (line, color, size) in enumerate(lines):
        cv2.putText(strip, line, (5, 16 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, size, color, 1, cv2.LINE_AA)
    return np.concatenate([img, strip], axis=0)


def _tiles_from_dir(root: Path, n: int, scale: int = 2) -> list[np.ndarray]:
    from frs_ros.data import load_reasonseg, load_revos

    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise SimDatasetError(f"{manifest_path} not found; is {root} a directory written by 'frs-sim generate'?")
    manifest = json.loads(manifest_path.read_text())
    tiles: list[np.ndarray] = []
    used_kinds: collections.Counter = collections.Counter()
    if manifest["format"] == "reasonseg":
        samples = load_reasonseg(root, manifest["split"], limit=4 * n)
        items = [(s.name, s.rgb, q.mask, q) for s in samples for q in s.queries]

        def meta_of(q):
            return q.meta, q.text, q.is_sentence
    else:
        samples = load_revos(root, manifest["revos_split"], limit=4 * n)
        items = []
        for v in samples:
            for e in v.expressions:
                # The answer lives on the query's eval frames ('disappeared': before removal).
                f = int((e.meta.spec.get("eval_frames") or [e.meta.frame_index])[-1]) % len(v.frames)
                masks = v.expression_masks(e)
                if e.meta.kind == "temporal":
                    # Film strip: first frame, middle frame, answer frame (GT tinted in each).
                    mid = e.meta.spec.get("event_frame")
                    ks = [0, len(v.frames) // 2 if mid is None else int(mid), f]
                    rgb = np.concatenate([_tint(v.frames[k], masks[k]) for k in ks], axis=1)
                    items.append((f"{v.name} frames {ks}", rgb, None, e))
                else:
                    items.append((f"{v.name} frame {f}", v.frames[f], masks[f], e))

        def meta_of(e):
            return e.meta, e.text, e.is_sentence
    # Prefer a spread of kinds: take the least-used kind first.
    used_samples: set[str] = set()
    while len(tiles) < n and items:
        items.sort(key=lambda it: (used_kinds[meta_of(it[3])[0].kind], it[0] in used_samples))
        name, rgb, mask, q = items.pop(0)
        meta, text, is_sentence = meta_of(q)
        used_kinds[meta.kind] += 1
        used_samples.add(name)
        tgt = "no target" if not meta.target_ids else f"ids {meta.target_ids}"
        title = f"{name} | {meta.kind} d{meta.difficulty} {meta.template_id} | {tgt}"
        tiles.append(draw_query_tile(rgb, mask, title, text, scale=scale))
    return tiles


def tile_grid(tiles: list[np.ndarray], cols: int = 2) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    padded = [np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    while len(padded) % cols:
        padded.append(np.full((h, w, 3), 255, dtype=np.uint8))
    rows = [np.concatenate(padded[i : i + cols], axis=1) for i in range(0, len(padded), cols)]
    return np.concatenate(rows, axis=0)


def cmd_visualise(args: argparse.Namespace) -> int:
    tiles = _tiles_from_dir(Path(args.dir), args.n, args.scale)
    if not tiles:
        raise SimDatasetError(f"{args.dir} holds no queries to draw")
    grid = tile_grid(tiles, args.cols)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {len(tiles)} tiles to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Frames per second of the renderer alone and of full samples (scene + GT + queries)."""
    from frs_ros.sim.world import make_rng, render_frame, sample_scene

    config = SimConfig()
    scenes = [sample_scene(make_rng(config, "train", 1, s), "train", config) for s in range(args.n)]
    render_frame(scenes[0], 0, config, make_rng(config, "train", 3, 0, 0))  # warm caches
    rows = []
    for label, fn, frames in (
        ("render_frame", lambda: [render_frame(sc, 0, config, make_rng(config, "train", 3, i, 0)) for i, sc in enumerate(scenes)], args.n),
        ("generate_image", lambda: [generate_image(s, "train", config) for s in range(args.n)], args.n),
        ("generate_episode (30 f)", lambda: [generate_episode(s, "train", 30, config) for s in range(max(1, args.n // 30))], 30 * max(1, args.n // 30)),
    ):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        rows.append((label, frames, 1e3 * wall / frames, 1e3 * cpu / frames, frames / wall))
    print(f"{'stage':<26}{'frames':>8}{'wall ms/f':>11}{'cpu ms/f':>10}{'frames/s':>10}")
    for label, frames, wall_ms, cpu_ms, fps in rows:
        print(f"{label:<26}{frames:>8}{wall_ms:>11.1f}{cpu_ms:>10.1f}{fps:>10.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="frs-sim", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="generate a dataset split")
    g.add_argument("--kind", choices=("image", "video"), default="image")
    g.add_argument("--n", type=int, required=True, help="number of samples (images or episodes)")
    g.add_argument("--seed", type=int, default=0, help="first seed; samples use seed .. seed+n-1")
    g.add_argument("--split", choices=SPLITS, default="train")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--n-frames", type=int, default=30, help="frames per episode (video)")
    g.add_argument("--image-ext", default=".jpg", choices=(".jpg", ".png"), help=".png is lossless")
    g.add_argument("--base-seed", type=int, default=0, help="SimConfig.base_seed (a different world)")
    g.set_defaults(func=cmd_generate)
    s = sub.add_parser("stats", help="print dataset statistics")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)
    v = sub.add_parser("visualise", aliases=["visualize"], help="draw GT masks and query texts")
    v.add_argument("dir")
    v.add_argument("--out", required=True, help="PNG path")
    v.add_argument("--n", type=int, default=8)
    v.add_argument("--cols", type=int, default=2)
    v.add_argument("--scale", type=int, default=2, help="upscaling of single images (1 keeps files small)")
    v.set_defaults(func=cmd_visualise)
    b = sub.add_parser("bench", help="measure rendering / generation speed (single process)")
    b.add_argument("--n", type=int, default=60, help="frames per stage")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
        print("frs-sim: --n must be >= 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except SimDatasetError as exc:
        print(f"frs-sim: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head`: not an error
        return 0


if __name__ == "__main__":
    sys.exit(main())
