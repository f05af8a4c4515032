"""ReVOS / MeViS-style referring & reasoning video datasets: reader and writer.

Layouts (as the official releases and the VISA / MeViS loaders use them)::

    ReVOS/                                   MeViS/<split>/   (train, valid_u)
      JPEGImages/<video>/<frame>.jpg           JPEGImages/<video>/<frame>.jpg
      meta_expressions_<split>_.json           meta_expressions.json
      mask_dict.json                           mask_dict.json

``meta_expressions``: ``{"videos": {<video>: {"vid_id": int (ReVOS),
"expressions": {<exp_id>: {"exp": str, "obj_id": [int], "anno_id": [int]}},
"frames": [<frame name without extension>, ...]}}}``; ``obj_id`` and ``anno_id``
are parallel lists (empty = no-object expression). ``mask_dict``:
``{str(anno_id): [COCO RLE | null per frame]}`` with pycocotools compressed RLE
(column-major; see ``coco_rle``); ``null`` where the object is absent. An
expression's ground truth in frame t is the union of its ``anno_id`` masks (MeViS
``eval_mevis.py``). ReVOS also ships ``mask_dict_foreground.json`` (used only by
its robustness score); it is not written or read here.

frs_ros extensions (ignored by other loaders): per video ``"frs_ros":
{"intrinsics": {...}, "depth_dir": "Depth"}`` with depth as 16-bit millimetre PNGs
``<depth_dir>/<video>/<frame>.png`` (0 = invalid); per expression ``"frs_ros":
{"is_sentence": bool, "query": QueryMeta}``. Masks round-trip exactly (RLE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from frs_ros.data import coco_rle
from frs_ros.data.io import (
    intrinsics_from_json,
    intrinsics_to_json,
    read_depth_png,
    read_json,
    read_rgb,
    write_depth_png,
    write_json,
    write_rgb,
)
from frs_ros.data.types import DatasetFormatError, QueryMeta, VideoExpression, VideoSample

EXT_KEY = "frs_ros"
DEPTH_DIR = "Depth"


def revos_meta_name(split: str) -> str:
    """ReVOS names its expression files ``meta_expressions_<split>_.json``."""
    return f"meta_expressions_{split}_.json"


def _write_rvos(
    root: Path,
    meta_path: Path,
    mask_dict_path: Path,
    samples: Iterable[VideoSample],
    image_ext: str,
    write_depth: bool,
    with_vid_id: bool,
) -> dict:
    mask_dict: dict = read_json(mask_dict_path) if mask_dict_path.is_file() else {}
    next_anno = 1 + max((int(k) for k in mask_dict), default=-1)
    videos: dict = {}
    for vid_idx, s in enumerate(samples):
        if s.name in videos:
            raise ValueError(f"duplicate video name {s.name!r}")
        for name, rgb in zip(s.frame_names, s.frames):
            write_rgb(root / "JPEGImages" / s.name / f"{name}{image_ext}", rgb)
        anno_of_obj: dict[int, int] = {}
        for oid in sorted(s.tracks):
            anno_of_obj[oid] = next_anno
            mask_dict[str(next_anno)] = [coco_rle.encode(m) if m.any() else None for m in s.tracks[oid]]
            next_anno += 1
        exps = {}
        for k, e in enumerate(s.expressions):
            eid = e.exp_id or str(k)
            if eid in exps:
                raise ValueError(f"{s.name}: duplicate expression id {eid!r}")
            ext: dict = {"is_sentence": bool(e.is_sentence)}
            if e.meta is not None:
                ext["query"] = e.meta.to_json()
            exps[eid] = {
                "exp": e.text,
                "obj_id": [int(o) for o in e.obj_ids],
                "anno_id": [anno_of_obj[o] for o in e.obj_ids],
                EXT_KEY: ext,
            }
        entry: dict = {"expressions": exps, "frames": list(s.frame_names)}
        if with_vid_id:
            entry = {"vid_id": vid_idx, **entry}
        vext: dict = {}
        if s.intrinsics is not None:
            vext["intrinsics"] = intrinsics_to_json(s.intrinsics)
        if s.depth is not None and write_depth:
            for name, d in zip(s.frame_names, s.depth):
                write_depth_png(root / DEPTH_DIR / s.name / f"{name}.png", d)
            vext["depth_dir"] = DEPTH_DIR
        if vext:
            entry[EXT_KEY] = vext
        videos[s.name] = entry
    meta = {"videos": videos}
    write_json(meta_path, meta)
    write_json(mask_dict_path, mask_dict)
    return meta


def write_revos(
    out_dir: Path | str,
    samples: Iterable[VideoSample],
    split: str = "valid",
    image_ext: str = ".jpg",
    write_depth: bool = True,
) -> Path:
    """Write a ReVOS layout under ``out_dir``; returns the meta-expressions path.

    ``mask_dict.json`` is shared by all splits (as in ReVOS): an existing one is
    extended with fresh anno ids, so write each split once.
    """
    root = Path(out_dir)
    meta_path = root / revos_meta_name(split)
    _write_rvos(root, meta_path, root / "mask_dict.json", samples, image_ext, write_depth, with_vid_id=True)
    return meta_path


def write_mevis(
    out_dir: Path | str,
    samples: Iterable[VideoSample],
    split: str = "valid_u",
    image_ext: str = ".jpg",
    write_depth: bool = True,
) -> Path:
    """Write a MeViS layout ``out_dir/<split>/``; returns the meta-expressions path."""
    root = Path(out_dir) / split
    meta_path = root / "meta_expressions.json"
    mask_path = root / "mask_dict.json"
    if mask_path.exists():
        mask_path.unlink()  # one mask_dict per MeViS split
    _write_rvos(root, meta_path, mask_path, samples, image_ext, write_depth, with_vid_id=False)
    return meta_path


def _find_frame(frame_dir: Path, name: str) -> Path:
    for ext in (".jpg", ".png", ".jpeg"):
        p = frame_dir / f"{name}{ext}"
        if p.is_file():
            return p
    raise DatasetFormatError(f"{frame_dir}: frame {name}.jpg/.png listed in meta_expressions not found")


def load_rvos(
    image_root: Path | str,
    meta_path: Path | str,
    mask_dict_path: Path | str,
    limit: Optional[int] = None,
    videos: Optional[Iterable[str]] = None,
) -> list[VideoSample]:
    """Generic reader of the ``meta_expressions`` + ``mask_dict`` layout.

    image_root: directory holding ``JPEGImages`` (and the ``Depth`` extension).
    videos: optional subset of video names; limit: at most that many videos.
    Track keys are the per-video ``obj_id``s; their masks come from ``anno_id``.
    """
    image_root, meta_path, mask_dict_path = Path(image_root), Path(meta_path), Path(mask_dict_path)
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DatasetFormatError(f"{meta_path}: expected {{'videos': {{<video>: ...}}}}")
    if not mask_dict_path.is_file():
        raise DatasetFormatError(
            f"{mask_dict_path}: not found; this split has no public ground-truth masks (e.g. MeViS 'valid')"
        )
    mask_dict = read_json(mask_dict_path)
    wanted = None if videos is None else set(videos)
    out: list[VideoSample] = []
    for vid, entry in meta["videos"].items():
        if wanted is not None and vid not in wanted:
            continue
        if limit is not None and len(out) >= limit:
            break
        where = f"{meta_path} video {vid!r}"
        try:
            frame_names = [str(f) for f in entry["frames"]]
            expressions = entry["expressions"]
        except (KeyError, TypeError) as exc:
            raise DatasetFormatError(f"{where}: needs 'frames' and 'expressions'") from exc
        frame_dir = image_root / "JPEGImages" / vid
        frames = [read_rgb(_find_frame(frame_dir, n)) for n in frame_names]
        h, w = frames[0].shape[:2]
        t = len(frames)
        tracks: dict[int, np.ndarray] = {}
        anno_of_obj: dict[int, str] = {}
        exps: list[VideoExpression] = []
        for eid, e in expressions.items():
            obj_ids = [int(o) for o in e.get("obj_id", [])]
            anno_ids = [str(a) for a in e.get("anno_id", [])]
            if len(obj_ids) != len(anno_ids):
                raise DatasetFormatError(f"{where} expression {eid}: obj_id and anno_id lengths differ")
            for oid, aid in zip(obj_ids, anno_ids):
                if oid in anno_of_obj:
                    if anno_of_obj[oid] != aid:
                        raise DatasetFormatError(
                            f"{where}: obj_id {oid} has anno_id {anno_of_obj[oid]} and {aid} in different expressions"
                        )
                    continue
                if aid not in mask_dict:
                    raise DatasetFormatError(f"{mask_dict_path}: anno_id {aid} (video {vid!r}) missing")
                rles = mask_dict[aid]
                if len(rles) != t:
                    raise DatasetFormatError(f"{mask_dict_path}: anno_id {aid} has {len(rles)} frames, video has {t}")
                track = np.zeros((t, h, w), dtype=bool)
                for fi, rle in enumerate(rles):
                    if rle is not None:
                        try:
                            m = coco_rle.decode(rle)
                        except coco_rle.CocoMaskError as exc:
                            raise DatasetFormatError(f"{mask_dict_path}: anno_id {aid} frame {fi}: {exc}") from exc
                        if m.shape != (h, w):
                            raise DatasetFormatError(
                                f"{mask_dict_path}: anno_id {aid} frame {fi} is {m.shape}, frames are {(h, w)}"
                            )
                        track[fi] = m
                tracks[oid] = track
                anno_of_obj[oid] = aid
            ext = e.get(EXT_KEY) or {}
            text = str(e.get("exp", ""))
            exps.append(
                VideoExpression(
                    text=text,
                    obj_ids=obj_ids,
                    exp_id=str(eid),
                    is_sentence=bool(ext.get("is_sentence", text.strip().endswith("?"))),
                    meta=QueryMeta.from_json(ext["query"]) if "query" in ext else None,
                )
            )
        vext = entry.get(EXT_KEY) or {}
        depth = None
        if "depth_dir" in vext:
            depth = [read_depth_png(image_root / vext["depth_dir"] / vid / f"{n}.png") for n in frame_names]
        out.append(
            VideoSample(
                name=vid,
                frames=frames,
                frame_names=frame_names,
                tracks=tracks,
                expressions=exps,
                depth=depth,
                intrinsics=intrinsics_from_json(vext.get("intrinsics"), where),
            )
        )
    return out


def load_revos(root: Path | str, split: str = "valid", **kw) -> list[VideoSample]:
    """Read ``root/meta_expressions_<split>_.json`` + ``root/mask_dict.json`` + ``root/JPEGImages``."""
    root = Path(root)
    return load_rvos(root, root / revos_meta_name(split), root / "mask_dict.json", **kw)


def load_mevis(root: Path | str, split: str = "valid_u", **kw) -> list[VideoSample]:
    """Read ``root/<split>/{meta_expressions.json, mask_dict.json, JPEGImages}``."""
    d = Path(root) / split
    return load_rvos(d, d / "meta_expressions.json", d / "mask_dict.json", **kw)
