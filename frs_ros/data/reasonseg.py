"""ReasonSeg-style image datasets (LISA, CVPR 2024): reader and writer.

Layout (``ReasonSeg/<split>/``)::

    <name>.jpg
    <name>.json      {"text": [phrasings..], "is_sentence": bool,
                      "shapes": [{"label": "target" | "ignore" | "flag",
                                  "labels": [label], "shape_type": "polygon",
                                  "image_name": "<name>.jpg",
                                  "points": [[x, y], ...]}, ...]}

Rasterisation follows LISA ``utils/data_processing.py::get_mask_from_json``:
``"flag"`` shapes are skipped (LISA calls them "meaningless deprecated
annotations"; they are *not* 255), points are cast to int32 (truncation),
shapes are drawn in decreasing order of their own rasterised area
(``np.argsort(area)[::-1]``), each with ``cv2.polylines(.., thickness 1)`` and
``cv2.fillPoly``, value 255 when ``"ignore"`` is in the label, else 1. LISA's
validation uses only ``text[0]``.

frs_ros extensions (real ReasonSeg files simply lack them; LISA ignores unknown keys):

- shape label ``"background"`` (value 0) marks holes and over-drawn pixels so that
  a mask with holes survives the polygon round trip exactly. LISA's own reader
  would draw these as target (1), i.e. it sees the hole-filled mask; pass
  ``exact=False`` to the writer to emit only ``target``/``ignore`` shapes.
- top-level key ``"frs_ros"``: ``image_name``, ``query_index``, ``query``
  (``QueryMeta``: kind, difficulty, template_id, spec, target ids, ...),
  ``intrinsics`` and ``depth`` (file name of a 16-bit millimetre PNG, 0 = invalid).
- several queries per image: ReasonSeg has one JSON per image (its ``text`` list
  holds paraphrases of one target). Query 0 is written to ``<name>.json`` (what
  LISA's loader finds), query k > 0 to ``<name>__q<k>.json``; all name the same
  image in ``frs_ros.image_name`` and in each shape's ``image_name``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

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
from frs_ros.data.types import DatasetFormatError, ImageSample, QueryGT, QueryMeta

EXT_KEY = "frs_ros"
LABEL_TARGET = "target"
LABEL_IGNORE = "ignore"
LABEL_FLAG = "flag"
LABEL_BACKGROUND = "background"  # frs_ros extension, value 0
_VALUE_OF_LABEL = {LABEL_TARGET: 1, LABEL_IGNORE: 255, LABEL_BACKGROUND: 0}
_LABEL_OF_VALUE = {1: LABEL_TARGET, 255: LABEL_IGNORE, 0: LABEL_BACKGROUND}
_QUERY_SUFFIX = re.compile(r"__q\d+$")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def _shape_value(label: str, lisa_compatible: bool) -> Optional[int]:
    """Label -> raster value; None = skipped ('flag'), as LISA."""
    low = label.lower()
    if low == LABEL_FLAG:
        return None
    if LABEL_IGNORE in low:
        return 255
    if low == LABEL_BACKGROUND and not lisa_compatible:
        return 0
    return 1


def _draw(mask: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.polylines(mask, pts, True, int(value), 1)
    cv2.fillPoly(mask, pts, int(value))


def rasterise_shapes(
    shapes: Sequence[dict], height: int, width: int, lisa_compatible: bool = False, where: str = "shapes"
) -> np.ndarray:
    """ReasonSeg shapes -> ``(H, W)`` uint8 label map (0 bg, 1 target, 255 ignore).

    lisa_compatible: treat ``"background"`` shapes as target, exactly as LISA's
    ``get_mask_from_json`` does (for measuring what the original loader sees).
    """
    drawn = []
    areas = []
    for k, shape in enumerate(shapes):
        try:
            label = str(shape["label"])
            pts = np.array([np.asarray(shape["points"], dtype=np.float64).astype(np.int32)])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{where}: shape {k} needs 'label' and 'points' [[x, y], ...] ({exc})") from exc
        if pts.ndim != 3 or pts.shape[2] != 2 or pts.shape[1] == 0:
            raise DatasetFormatError(f"{where}: shape {k} points must be a non-empty [[x, y], ...] list")
        value = _shape_value(label, lisa_compatible)
        if value is None:
            continue
        tmp = np.zeros((height, width), dtype=np.uint8)
        _draw(tmp, pts, 1)
        areas.append(tmp.sum())
        drawn.append((pts, value))
    mask = np.zeros((height, width), dtype=np.uint8)
    for idx in np.argsort(areas)[::-1].astype(np.int32):  # LISA: larger shapes first
        pts, value = drawn[idx]
        _draw(mask, pts, value)
    return mask


def _contour_shapes(region: np.ndarray, label: str) -> list[dict]:
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [{"label": label, "points": c[:, 0, :].tolist()} for c in contours]


def label_map_to_shapes(label: np.ndarray, exact: bool = True, max_rounds: int = 8) -> list[dict]:
    """``(H, W)`` label map (0/1/255) -> polygon shapes that rasterise back to it.

    Outer contours (``cv2.findContours``, ``RETR_EXTERNAL``, ``CHAIN_APPROX_NONE``)
    of the target and ignore regions first; then, up to ``max_rounds`` times, the
    pixels that ``rasterise_shapes`` gets wrong become further (smaller, hence
    later-drawn) polygons with the wanted label, ``"background"`` for holes. Any
    pixel still wrong becomes a one-pixel polygon. With ``exact=False`` no
    ``"background"`` shapes are written (holes stay filled, LISA-compatible).
    """
    lab = np.asarray(label)
    h, w = lab.shape
    shapes: list[dict] = []
    for value in (1, 255):
        shapes += _contour_shapes(lab == value, _LABEL_OF_VALUE[value])
    wanted_values = (0, 1, 255) if exact else (1, 255)

    def wrong_pixels() -> np.ndarray:
        got = rasterise_shapes(shapes, h, w)
        bad = got != lab
        if not exact:
            bad &= lab != 0
        return bad

    for _ in range(max_rounds):
        bad = wrong_pixels()
        if not bad.any():
            return shapes
        for value in wanted_values:
            shapes += _contour_shapes(bad & (lab == value), _LABEL_OF_VALUE[value])
    bad = wrong_pixels()
    for y, x in zip(*np.nonzero(bad)):
        shapes.append({"label": _LABEL_OF_VALUE[int(lab[y, x])], "points": [[int(x), int(y)]] * 3})
    return shapes


@dataclass(frozen=True)
class RoundTripStats:
    """Polygon round-trip quality of one written query.

    iou_frs: IoU of the target mask read back by ``load_reasonseg`` (1.0 when exact).
    iou_lisa: IoU of the target mask LISA's ``get_mask_from_json`` would read
        (``"background"`` drawn as target). n_shapes: polygons written.
    """

    file: str
    iou_frs: float
    iou_lisa: float
    exact: bool
    n_shapes: int


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


def query_json_name(image_stem: str, query_index: int) -> str:
    return f"{image_stem}.json" if query_index == 0 else f"{image_stem}__q{query_index}.json"


def write_reasonseg(
    out_dir: Path | str,
    samples: Iterable[ImageSample],
    split: str = "val",
    image_ext: str = ".jpg",
    exact: bool = True,
    write_depth: bool = True,
) -> list[RoundTripStats]:
    """Write samples as ``<out_dir>/<split>/<name><image_ext>`` + one JSON per query.

    image_ext: ``.jpg`` as ReasonSeg (lossy colour) or ``.png`` (lossless).
    Returns the measured polygon round-trip quality of every query.
    """
    if image_ext.lower() not in _IMAGE_EXTS:
        raise ValueError(f"image_ext must be one of {_IMAGE_EXTS}, got {image_ext!r}")
    split_dir = Path(out_dir) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    stats: list[RoundTripStats] = []
    for sample in samples:
        if "/" in sample.name or _QUERY_SUFFIX.search(sample.name):
            raise ValueError(f"sample name {sample.name!r} may not contain '/' or end in '__q<k>'")
        image_name = sample.name + image_ext
        write_rgb(split_dir / image_name, sample.rgb)
        ext_common: dict = {"image_name": image_name}
        if sample.intrinsics is not None:
            ext_common["intrinsics"] = intrinsics_to_json(sample.intrinsics)
        if sample.depth is not None and write_depth:
            depth_name = f"{sample.name}_depth.png"
            write_depth_png(split_dir / depth_name, sample.depth)
            ext_common["depth"] = depth_name
        h, w = sample.rgb.shape[:2]
        for k, q in enumerate(sample.queries):
            label = q.label_map()
            raw = label_map_to_shapes(label, exact=exact)
            shapes = [
                {
                    "label": s["label"],
                    "labels": [s["label"]],
                    "shape_type": "polygon",
                    "image_name": image_name,
                    "points": s["points"],
                }
                for s in raw
            ]
            ext = dict(ext_common, query_index=k)
            if q.meta is not None:
                ext["query"] = q.meta.to_json()
            doc = {"text": list(q.texts), "is_sentence": bool(q.is_sentence), "shapes": shapes, EXT_KEY: ext}
            name = query_json_name(sample.name, k)
            write_json(split_dir / name, doc)
            back = rasterise_shapes(shapes, h, w)
            lisa = rasterise_shapes(shapes, h, w, lisa_compatible=True)
            stats.append(
                RoundTripStats(
                    file=name,
                    iou_frs=_iou(back == 1, q.mask & (label == 1)),
                    iou_lisa=_iou(lisa == 1, q.mask & (label == 1)),
                    exact=bool(np.array_equal(back, label)),
                    n_shapes=len(shapes),
                )
            )
    return stats


def _find_image(split_dir: Path, json_path: Path, doc: dict) -> Path:
    ext = doc.get(EXT_KEY) or {}
    if "image_name" in ext:
        p = split_dir / ext["image_name"]
        if not p.is_file():
            raise DatasetFormatError(f"{json_path}: image {p.name} named in '{EXT_KEY}.image_name' not found")
        return p
    stem = _QUERY_SUFFIX.sub("", json_path.stem)
    for e in _IMAGE_EXTS:
        if (split_dir / (stem + e)).is_file():
            return split_dir / (stem + e)
    names = {s.get("image_name") for s in doc.get("shapes", []) if isinstance(s, dict)} - {None}
    for n in names:
        if (split_dir / n).is_file():
            return split_dir / n
    raise DatasetFormatError(f"{json_path}: no image {stem}.jpg/.png next to it")


def load_reasonseg(root: Path | str, split: Optional[str] = None, limit: Optional[int] = None) -> list[ImageSample]:
    """Read a ReasonSeg-style split directory (``root/split`` or ``root`` itself).

    Returns one ``ImageSample`` per image with one ``QueryGT`` per JSON (query order
    from ``frs_ros.query_index`` when present, else file name). ``ignore_mask`` is
    ``None`` when no pixel is labelled 255. Depth/intrinsics/query meta come back
    when the frs_ros extension is present. limit: stop after that many images.
    """
    split_dir = Path(root) / split if split else Path(root)
    if not split_dir.is_dir():
        raise DatasetFormatError(f"{split_dir}: ReasonSeg split directory not found")
    json_paths = sorted(split_dir.glob("*.json"))
    if not json_paths:
        raise DatasetFormatError(f"{split_dir}: no *.json annotation files")
    groups: "OrderedDict[Path, list[tuple[int, str, dict, Path]]]" = OrderedDict()
    for jp in json_paths:
        doc = read_json(jp)
        if not isinstance(doc, dict) or "shapes" not in doc or "text" not in doc:
            raise DatasetFormatError(f"{jp}: expected keys 'text', 'is_sentence', 'shapes'")
        img = _find_image(split_dir, jp, doc)
        if img not in groups and limit is not None and len(groups) >= limit:
            continue
        qi = int((doc.get(EXT_KEY) or {}).get("query_index", 0))
        groups.setdefault(img, []).append((qi, jp.name, doc, jp))
    samples = []
    for img, entries in groups.items():
        rgb = read_rgb(img)
        h, w = rgb.shape[:2]
        ext0 = entries[0][2].get(EXT_KEY) or {}
        depth = read_depth_png(split_dir / ext0["depth"]) if "depth" in ext0 else None
        intr = intrinsics_from_json(ext0.get("intrinsics"), str(entries[0][3]))
        queries = []
        for _, _, doc, jp in sorted(entries, key=lambda e: (e[0], e[1])):
            label = rasterise_shapes(doc["shapes"], h, w, where=str(jp))
            texts = doc["text"] if isinstance(doc["text"], list) else [doc["text"]]
            if not texts:
                raise DatasetFormatError(f"{jp}: 'text' is empty")
            ext = doc.get(EXT_KEY) or {}
            ignore = label == 255
            queries.append(
                QueryGT(
                    texts=[str(t) for t in texts],
                    mask=label == 1,
                    ignore_mask=ignore if ignore.any() else None,
                    is_sentence=bool(doc.get("is_sentence", False)),
                    meta=QueryMeta.from_json(ext["query"]) if "query" in ext else None,
                    source_id=jp.name,
                )
            )
        samples.append(ImageSample(name=img.stem, rgb=rgb, queries=queries, depth=depth, intrinsics=intr))
    return samples
