"""frs-bag-eval: offline evaluation of the twin + reasoner pipeline over a rosbag2 (no DDS).

    python -m frs_ros.bag_eval BAG --annotations ANN.json [--params-file config/frs.yaml]
        [--segmenter sam2] [--labeler owlv2] [--reasoner-backend hf] [--reasoner-model DIR] [--out report.json]

The bag's frames (``/frs/frame/*`` if recorded, else the camera topics; see ``docs/ros.md``) are
replayed in log order through ``Tracker.update`` — exactly what the digital twin node does — and
each annotated query is answered by ``ReasonSegEngine`` on the twin of the first frame at or after
its stamp. Metrics (``frs_ros.metrics``): gIoU / cIoU of the answer masks; J, F, J&F over the
frames that carry ground truth after the question (the answered track ids followed frame by frame,
as the reasoner node's tracking does).

Annotation file (JSON)::

    {"queries": [
      {"id": "q0", "query": "the thing I could pour hot tea into", "stamp_ns": 1500000000,
       "mask": {"size": [H, W], "counts": [...]},          # GT at the asked frame (RLE, frs_ros.masks)
       "frames": {"1600000000": {"size": ..., "counts": ...}, ...},  # optional: GT of later frames (J&F)
       "sim_query": {...}}                                   # optional: the simulator's Query (oracle)
    ]}

``sim_annotations`` builds such a file for a simulated episode written with ``write_sim_bag``.

A ReVOS / MeViS or ReasonSeg directory works as the annotation too (``--annotations DIR
--dataset revos|mevis|reasonseg [--split S] [--video NAME]``): the bag is then that dataset played
as a camera (``dataset_to_bag``: the i-th synchronised frame of the bag is the i-th video frame /
image), each expression is asked on its video's first frame (an image's queries on that image) and
scored on every later frame (J&F) / on the image (gIoU, cIoU). Real datasets need the real twin
models (``--segmenter sam2 --labeler owlv2``) and the hf reasoner; the oracle needs simulator
ground truth, which only sim bags carry.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from frs_ros.masks import RLE, rle_encode


def sim_annotations(sample: Any, stamps: list[int], track_frames: bool = True) -> dict:
    """Annotations for a simulated episode written as a bag with ``stamps`` (one per frame).

    Each query is asked at its ``frame_index`` (-1 = last frame); with ``track_frames`` the GT of
    every later frame is added for J&F.
    """
    from frs_ros.wire.sim_wire import query_to_dict

    out = []
    n = len(sample.frames)
    for i, q in enumerate(sample.queries):
        k = q.frame_index if q.frame_index >= 0 else n - 1
        k = min(k, n - 1)
        rec = {"id": f"q{i}", "query": q.text, "kind": q.kind, "stamp_ns": int(stamps[k]),
               "mask": rle_encode(sample.frames[k].gt.union_mask(q.target_ids)).to_json(),
               "sim_query": query_to_dict(q)}
        if track_frames and q.target_ids:
            rec["frames"] = {str(int(stamps[j])): rle_encode(sample.frames[j].gt.union_mask(q.target_ids)).to_json()
                             for j in range(k + 1, n)}
        out.append(rec)
    return {"queries": out}


def video_annotations(video: Any, stamps: list[int]) -> list[dict]:
    """Annotations of a ``VideoSample`` whose frames were played as bag frames with ``stamps``."""
    if len(stamps) < len(video.frames):
        raise ValueError(f"video {video.name} has {len(video.frames)} frames but the bag only {len(stamps)}")
    out = []
    shape = video.frames[0].shape[:2]
    for i, e in enumerate(video.expressions):
        def gt(t: int) -> np.ndarray:
            m = np.zeros(shape, bool)
            for oid in e.obj_ids:
                m |= np.asarray(video.tracks[oid][t], dtype=bool)
            return m

        out.append({"id": f"{video.name}/{e.exp_id or i}", "query": e.text, "stamp_ns": int(stamps[0]),
                    "mask": rle_encode(gt(0)).to_json(),
                    "frames": {str(int(stamps[t])): rle_encode(gt(t)).to_json() for t in range(1, len(video.frames))}})
    return out


def image_annotations(samples: list, stamps: list[int]) -> list[dict]:
    """Annotations of ``ImageSample`` s played one image per bag frame (in order)."""
    if len(stamps) < len(samples):
        raise ValueError(f"{len(samples)} images but the bag has only {len(stamps)} frames")
    return [{"id": f"{s.name}/{j}", "query": q.text, "stamp_ns": int(stamps[i]), "mask": rle_encode(q.mask).to_json()}
            for i, s in enumerate(samples) for j, q in enumerate(s.queries)]


def dataset_to_bag(path: str | Path, frames_rgb: list[np.ndarray], depth: Optional[list] = None, intrinsics: Any = None,
                   storage: str = "mcap", period_ns: int = 100_000_000, hfov_deg: float = 60.0) -> list[int]:
    """Play dataset frames as a camera bag (colour, depth when given, camera_info); returns the stamps.

    Datasets without intrinsics (ReasonSeg, ReVOS) get a nominal pinhole of ``hfov_deg``: 3-D
    positions are then only as good as that guess (say so when reporting them).
    """
    from frs_ros.camera import CameraIntrinsics, Frame
    from frs_ros.data.bags import write_sim_bag

    frames = []
    for i, rgb in enumerate(frames_rgb):
        h, w = rgb.shape[:2]
        k = intrinsics if intrinsics is not None and (intrinsics.width, intrinsics.height) == (w, h) else \
            CameraIntrinsics.from_fov(w, h, hfov_deg)
        d = None if depth is None else np.asarray(depth[i], dtype=np.float32)
        frames.append(Frame(rgb=np.ascontiguousarray(rgb), intrinsics=k, depth=d))
    return write_sim_bag(path, frames, storage=storage, period_ns=period_ns, ground_truth=False)


def _bag_stamps(bag: str | Path, topics: dict) -> list[int]:
    from frs_ros.data.bags import read_frames

    return [f.stamp_ns for f in read_frames(bag, topics.get("color"), topics.get("depth"), topics.get("info"))]


def dataset_annotations(root: str | Path, dataset: str, stamps: list[int], split: Optional[str] = None,
                        video: Optional[str] = None) -> list[dict]:
    """Annotations from a ReVOS / MeViS / ReasonSeg directory, matched to bag frames by order."""
    if dataset in ("revos", "mevis"):
        from frs_ros.data.video import load_mevis, load_revos

        loader = load_revos if dataset == "revos" else load_mevis
        videos = loader(root, split) if split else loader(root)
        if video is not None:
            videos = [v for v in videos if v.name == video]
        if len(videos) != 1:
            raise ValueError(f"{root}: pick one video of {[v.name for v in videos][:10]} with --video "
                             "(a bag is one video played as a camera)")
        return video_annotations(videos[0], stamps)
    if dataset == "reasonseg":
        from frs_ros.data.reasonseg import load_reasonseg

        return image_annotations(load_reasonseg(root, split), stamps)
    raise ValueError(f"--dataset must be revos, mevis or reasonseg, got {dataset!r}")


def _load_annotations(path: Path) -> list[dict]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    qs = doc.get("queries") if isinstance(doc, dict) else None
    if not isinstance(qs, list) or not qs:
        raise ValueError(f"{path}: expected {{'queries': [...]}} with at least one query (see frs_ros/bag_eval.py)")
    for i, q in enumerate(qs):
        for key in ("query", "stamp_ns", "mask"):
            if key not in q:
                raise ValueError(f"{path}: query {i} has no '{key}'")
        q.setdefault("id", f"q{i}")
    return sorted(qs, key=lambda q: int(q["stamp_ns"]))


def evaluate_bag(bag: str | Path, annotations: list[dict], twin_config: Any, engine: Any,
                 topics: Optional[dict[str, str]] = None, slop_s: float = 0.05) -> dict:
    """Replay ``bag`` through the twin and answer ``annotations``; returns the report dict."""
    from frs_ros.data.bags import read_frames
    from frs_ros.metrics import GIoUCIoU, video_jf
    from frs_ros.twin.tracker import Tracker
    from frs_ros.wire.sim_wire import query_from_dict

    topics = topics or {}
    tracker = Tracker(twin_config)
    pending = list(annotations)
    tracked: list[dict] = []  # answered queries with later-frame GT
    per_query: list[dict] = []
    acc = GIoUCIoU()
    frames = 0
    t_twin = 0.0
    for frame in read_frames(bag, topics.get("color"), topics.get("depth"), topics.get("info"), slop_s):
        t0 = time.perf_counter()
        twin = tracker.update(frame)
        t_twin += time.perf_counter() - t0
        frames += 1
        observe = getattr(getattr(engine, "reasoner", None), "observe", None)
        if observe is not None:  # the oracle remembers which track is which sim object (as in the node)
            observe(twin, frame)
        truth = getattr(getattr(engine, "reasoner", None), "truth", None)  # the oracle's ground-truth queries
        while pending and int(pending[0]["stamp_ns"]) <= frame.stamp_ns:
            q = pending.pop(0)
            if truth is not None and q.get("sim_query"):
                truth.update([query_from_dict(q["sim_query"])])
            gt = RLE.from_json(q["mask"]).decode()
            t0 = time.perf_counter()
            ans = engine.answer(q["query"], twin, frame)
            latency = time.perf_counter() - t0
            pred = ans.mask if ans.ok else np.zeros(twin.image_size, bool)
            if pred.shape != gt.shape:
                raise ValueError(f"query {q['id']}: GT mask {gt.shape} but frames are {pred.shape}")
            iou = acc.add(pred, gt)
            rec = {"id": q["id"], "query": q["query"], "stamp_ns": frame.stamp_ns, "status": ans.status,
                   "targets": ans.target_ids, "iou": iou, "latency_s": latency, "error": ans.error}
            per_query.append(rec)
            if q.get("frames") and ans.ok:
                tracked.append({"rec": rec, "ids": ans.target_ids, "gt": q["frames"], "pred_frames": [pred], "gt_frames": [gt]})
        for tq in tracked:
            g = tq["gt"].get(str(frame.stamp_ns))
            if g is None:
                continue
            pred = np.zeros(twin.image_size, bool)
            for o in twin.objects:
                if o.track_id in tq["ids"] and o.visible:
                    pred |= o.mask.decode()
            tq["pred_frames"].append(pred)
            tq["gt_frames"].append(RLE.from_json(g).decode())
    for q in pending:
        per_query.append({"id": q["id"], "query": q["query"], "status": "not_reached",
                          "error": f"the bag ends before stamp {q['stamp_ns']}"})
    report: dict = {"bag": str(bag), "frames": frames, "queries": len(annotations), "answered": acc.n,
                    "twin_update_mean_s": t_twin / frames if frames else float("nan"), "per_query": per_query}
    if acc.n:
        report.update(gIoU=acc.giou, cIoU=acc.ciou,
                      answer_latency_mean_s=float(np.mean([r["latency_s"] for r in per_query if "latency_s" in r])))
    if tracked:
        vj = video_jf([(t["pred_frames"], t["gt_frames"]) for t in tracked])
        report.update({"J": vj.j, "F": vj.f, "J&F": vj.jf, "video_queries": len(tracked)})
    return report


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="frs-bag-eval", description="Offline twin + reasoner evaluation over a rosbag2.")
    ap.add_argument("bag", help="rosbag2 directory (sqlite3 or mcap)")
    ap.add_argument("--annotations", required=True, help="annotation JSON, or a dataset directory with --dataset")
    ap.add_argument("--dataset", choices=("json", "revos", "mevis", "reasonseg"), default="json",
                    help="what --annotations is (default: the JSON format of the module docstring)")
    ap.add_argument("--split", default=None, help="dataset split (e.g. valid, val)")
    ap.add_argument("--video", default=None, help="ReVOS/MeViS video name the bag was played from")
    ap.add_argument("--params-file", default=None, help="parameters YAML (default: config/frs.yaml of the package)")
    ap.add_argument("--segmenter", default="", help="override twin.segmenter (sim | sam2)")
    ap.add_argument("--labeler", default="", help="override twin.labeler (sim | owlv2 | none)")
    ap.add_argument("--reasoner-backend", default="", help="override reasoner.backend (hf | oracle)")
    ap.add_argument("--reasoner-model", default="", help="override reasoner.model (local directory or hub id)")
    ap.add_argument("--color-topic", default=None)
    ap.add_argument("--depth-topic", default=None, help="'' for a colour-only bag")
    ap.add_argument("--camera-info-topic", default=None)
    ap.add_argument("--slop-s", type=float, default=0.05, help="synchronisation slop [s]")
    ap.add_argument("--out", default=None, help="write the report JSON here")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    from frs_ros.wire.params import (DigitalTwinParams, ParamError, ReasonerParams, load_params_file,
                                      resolve_reasoner_paths, resolve_values)

    opts = make_parser().parse_args(argv)
    try:
        from frs_ros.bringup import default_params_file

        loaded = load_params_file(opts.params_file or default_params_file())
        tv, rv = loaded["digital_twin_node"], loaded["reasoner_node"]
        for key, val in (("twin.segmenter", opts.segmenter), ("twin.labeler", opts.labeler)):
            if val:
                tv[key] = val
        for key, val in (("reasoner.backend", opts.reasoner_backend), ("reasoner.model", opts.reasoner_model)):
            if val:
                rv[key] = val
        twin_cfg = DigitalTwinParams.from_values(resolve_values("digital_twin_node", tv)).twin
        rcfg = ReasonerParams.from_values(resolve_values("reasoner_node", rv)).reasoner
        rcfg = resolve_reasoner_paths(rcfg)
        topics = {"color": opts.color_topic, "depth": opts.depth_topic, "info": opts.camera_info_topic}
        if opts.dataset == "json":
            annotations = _load_annotations(Path(opts.annotations))
        else:
            annotations = sorted(dataset_annotations(opts.annotations, opts.dataset, _bag_stamps(opts.bag, topics),
                                                     opts.split, opts.video), key=lambda q: int(q["stamp_ns"]))
    except (ParamError, ValueError, FileNotFoundError) as exc:
        print(f"frs-bag-eval: {exc}", file=sys.stderr)
        return 2
    from frs_ros.reasoning.api import ReasonSegEngine

    try:
        engine = ReasonSegEngine(rcfg)
    except Exception as exc:  # noqa: BLE001 - a model that cannot load: say so and stop
        print(f"frs-bag-eval: the reasoner could not load ({exc}); pass --reasoner-model DIR or --reasoner-backend oracle",
              file=sys.stderr)
        return 2
    report = evaluate_bag(opts.bag, annotations, twin_cfg, engine, topics, opts.slop_s)
    report["reasoner"] = {"backend": rcfg.backend, "model": rcfg.model if rcfg.backend == "hf" else ""}
    summary = {k: report[k] for k in ("frames", "queries", "answered", "gIoU", "cIoU", "J", "F", "J&F",
                                      "answer_latency_mean_s", "twin_update_mean_s") if k in report}
    print(json.dumps(summary, indent=2))
    if opts.out:
        Path(opts.out).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
